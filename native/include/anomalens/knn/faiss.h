// Approximate nearest-neighbour indexes through faiss (Debian's static libfaiss), built from a
// faiss factory string: "IVF256,Flat" (IVF-Flat), "IVF256,PQ16" (IVF-PQ), "HNSW32" (HNSW),
// "Flat" (exact, faiss' IndexFlatL2 / IndexFlatIP). faiss exceptions become anomalens errors:
// bad factory strings and misuse are InvalidArgument, unreadable files InvalidFile.
//
// Results follow knnSearch's conventions (l2sq: squared distances, ascending; ip: inner
// products, descending), except that an approximate index may find fewer than k neighbours:
// missing entries have index -1.
//
// Thread safety: concurrent search() calls are safe; train/add/set* must not overlap anything
// (the Node binding refuses them with ERR_BUSY).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "anomalens/knn/knn.h"

namespace faiss {
struct Index;
}

namespace anomalens {

class FaissIndex {
 public:
  // `metric` is L2Squared or InnerProduct.
  // Example: FaissIndex index(128, "IVF1024,PQ16", Metric::L2Squared);
  FaissIndex(int64_t d, const std::string& factory, Metric metric);
  ~FaissIndex();
  FaissIndex(FaissIndex&&) noexcept;
  FaissIndex& operator=(FaissIndex&&) noexcept;

  int64_t dim() const;
  int64_t size() const;
  bool isTrained() const;
  Metric metric() const { return metric_; }
  const std::string& factory() const { return factory_; }

  // Trains on x (n x d). IVF needs at least nlist rows (faiss warns below 39 * nlist).
  void train(const float* x, int64_t n);
  // Adds x (n x d); the index must be trained. Rows get consecutive ids from size().
  void add(const float* x, int64_t n);
  // queries m x d; distances / indices m x k, caller-allocated. 1 <= k <= kKnnMaxK.
  void search(const float* queries, int64_t m, int64_t k, float* distances, int32_t* indices) const;

  // IVF cells probed per query (-1 when the index has no IVF level).
  int64_t nprobe() const;
  void setNprobe(int64_t nprobe);
  // HNSW candidate list size at search time (-1 when the index is not HNSW).
  int64_t efSearch() const;
  void setEfSearch(int64_t efSearch);

  // Writes the index atomically in the anomalens container (checksummed), see native/src/knn/file.h.
  void save(const std::string& path) const;
  static FaissIndex load(const std::string& path);

 private:
  FaissIndex() = default;
  std::unique_ptr<faiss::Index> index_;
  std::string factory_;
  Metric metric_ = Metric::L2Squared;
};

}  // namespace anomalens
