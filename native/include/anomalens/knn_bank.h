// MemoryBank: a growable set of d-dimensional float32 rows with exact kNN search (knnSearch
// with cached per-row norms) and a checksummed file format (see native/src/knn_file.h).
//
// Not internally synchronised: concurrent search() and save() calls are safe with each
// other, but add() must not overlap any other call (the Node binding enforces this and
// answers ERR_BUSY).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "anomalens/knn.h"

namespace anomalens {

class MemoryBank {
 public:
  // An empty bank of `dim`-dimensional rows searched with `metric`.
  MemoryBank(int64_t dim, Metric metric);

  int64_t size() const { return size_; }
  int64_t dim() const { return dim_; }
  Metric metric() const { return metric_; }
  // size() x dim() rows, row-major.
  const float* data() const { return rows_.data(); }

  // Appends `n` rows (n x dim(), copied). Throws InvalidArgument when the bank would exceed
  // 2^31 - 1 rows.
  void add(const float* rows, int64_t n);
  // Reserves room for `rows` rows in total, so that a known number of adds never reallocates.
  void reserve(int64_t rows);

  // The k nearest rows of each query: queries m x dim(), distances / indices m x k
  // (caller-allocated). Same conventions as knnSearch.
  void search(const float* queries, int64_t m, int64_t k, float* distances, int32_t* indices) const;

  // Writes the bank atomically (temporary file + rename). Throws Error(Io).
  void save(const std::string& path) const;
  // Reads a bank written by save(). Throws Error(Io) when the file cannot be read and
  // Error(InvalidFile) when it is not a bank, is truncated or fails its checksums.
  static MemoryBank load(const std::string& path);

 private:
  int64_t dim_;
  Metric metric_;
  int64_t size_ = 0;
  std::vector<float> rows_;
  std::vector<float> norms_;  // knnDatabaseNorms of rows_ (empty for ip)
};

}  // namespace anomalens
