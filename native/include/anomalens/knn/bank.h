// MemoryBank: a growable set of d-dimensional float32 rows with exact kNN search (knnSearch
// with cached per-row norms) and a checksummed file format (see native/src/knn/file.h).
//
// Not internally synchronised: concurrent search() and save() calls are safe with each
// other, but add() must not overlap any other call (the Node binding enforces this and
// answers ERR_BUSY).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "anomalens/knn/knn.h"

namespace anomalens {

namespace knn_detail {
struct ScreenedDatabase;
}

class MemoryBank {
 public:
  // An empty bank of `dim`-dimensional rows searched with `metric`. With `screening` (and an
  // l2 / l2sq metric on a CPU with AVX512-BF16) the bank also keeps a bfloat16 copy of its
  // rows, +50% memory, for the screened exact search (see knnSearch).
  MemoryBank(int64_t dim, Metric metric, bool screening = true);
  ~MemoryBank();
  MemoryBank(MemoryBank&&) noexcept;
  MemoryBank& operator=(MemoryBank&&) noexcept;

  int64_t size() const { return size_; }
  int64_t dim() const { return dim_; }
  Metric metric() const { return metric_; }
  // Whether searches may use the bf16-screened path (a bf16 copy of the rows is kept).
  bool screened() const { return screened_ != nullptr; }
  // size() x dim() rows, row-major.
  const float* data() const { return rows_.data(); }

  // Appends `n` rows (n x dim(), copied). Throws InvalidArgument when the bank would exceed
  // 2^31 - 1 rows.
  void add(const float* rows, int64_t n);
  // Reserves room for `rows` rows in total, so that a known number of adds never reallocates.
  void reserve(int64_t rows);

  // The k nearest rows of each query: queries m x dim(), distances / indices m x k
  // (caller-allocated). Same conventions as knnSearch; `screening` applies when the bank keeps
  // its bf16 copy (screened()).
  void search(const float* queries, int64_t m, int64_t k, float* distances, int32_t* indices,
              KnnScreening screening = KnnScreening::Auto) const;

  // Writes the bank atomically (temporary file + rename). Throws Error(Io).
  void save(const std::string& path) const;
  // Reads a bank written by save(). Throws Error(Io) when the file cannot be read and
  // Error(InvalidFile) when it is not a bank, is truncated or fails its checksums.
  static MemoryBank load(const std::string& path, bool screening = true);

 private:
  int64_t dim_;
  Metric metric_;
  int64_t size_ = 0;
  std::vector<float> rows_;
  std::vector<float> norms_;  // knnDatabaseNorms of rows_ (empty for ip)
  std::unique_ptr<knn_detail::ScreenedDatabase> screened_;  // null when not screening
};

}  // namespace anomalens
