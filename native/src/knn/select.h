// Per-query top-k selection for the exact kNN kernels (internal to native/src).
//
// A distance block arrives from SGEMM as c = alpha * q.x for one query and a run of database
// rows; scanRow turns each c into a key (smaller is nearer) and offers it to the query's
// top-k. Almost every key is worse than the current k-th best, so the scan is a vector
// compare against that threshold and only the rare survivors touch the heap.
#pragma once
#include <cstdint>
#include <limits>

namespace anomalens::knn_detail {

// How a GEMM value c becomes a key: c + v[j] (l2: c = -2 q.x, v = ||x||^2), c (ip: c = -q.x)
// or c * v[j] (cosine: c = -q.x, v = 1 / ||x||).
enum class KeyMode { Add, Plain, Scale };

// One query's k best (key, id) pairs, kept as a max-heap ordered by (key, id) so that the
// root is the pair to evict next. Storage belongs to the caller.
struct TopK {
  float* keys;
  int32_t* ids;
  int32_t k;
  int32_t size;

  float threshold() const { return size < k ? std::numeric_limits<float>::infinity() : keys[0]; }
  // Inserts (key, id) when it beats the root. Ids must be offered in increasing order, so a
  // key equal to the root loses (the root has the lower id): ties keep the lower index.
  void offer(float key, int32_t id);
  // Inserts with the full (key, id) comparison, for merging heaps offered out of order.
  void offerAny(float key, int32_t id);
  // Sorts the held pairs ascending by (key, id) in place (destroys the heap order).
  void sort();
};

// Offers the keys of c[0, count) for database rows base .. base + count - 1.
// v: per-row values for KeyMode Add / Scale (indexed like c), ignored for Plain.
void scanRow(const float* c, const float* v, int64_t count, int32_t base, KeyMode mode, TopK& top);

// Name of the scan kernel chosen for this CPU ("avx512", "avx2" or "scalar"), for tests/benches.
const char* scanKernelName();

}  // namespace anomalens::knn_detail
