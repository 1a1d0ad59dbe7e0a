// bf16-screened exact L2 search (internal to native/src).
//
// The distance products are first computed in bfloat16 (oneDNN's AVX512-BF16 matmul, twice
// the float32 rate) on centred rows, then every row that could still be among the k nearest
// is re-scored exactly in float32 from the original data. "Could" is decided by a rigorous
// bound, so the result is the exact kNN, not an approximation:
//
//   With q~, x~ the bf16 roundings of the centred rows, the true distance D = ||q - x||
//   satisfies | D - ||q~ - x~|| | <= Eq + Ex (triangle inequality; Eq = ||(q - mean) - q~||,
//   measured per row). ||q~ - x~||^2 is computed as s = na + key, key = ||x~||^2 - 2 q~.x~,
//   whose float32 accumulation error is at most delta = (2d + 160) 2^-24 (||q~|| + max||x~||)^2.
//   If s_k is the k-th smallest s seen so far, the k-th nearest true distance is at most
//   U = sqrt(s_k + delta) + E (E = Eq + max Ex plus centring slack), and a row with
//   sqrt(s - delta) - E > U cannot be among the k nearest. Every other row is a candidate.
//
// A query whose candidate list outgrows its budget (data where bf16 cannot separate rows,
// e.g. far from the mean) is left to the float32 path. Centring by the database mean keeps
// ||q~||, ||x~|| and hence the bound small for features with a large common offset (ReLU).
#pragma once
#include <cstdint>
#include <vector>

#include "anomalens/knn/knn.h"

namespace anomalens::knn_detail {

struct ScreenedDatabase {
  int64_t d = 0;
  int64_t n = 0;
  std::vector<float> mean;      // d: centring vector, fixed by the first append()
  std::vector<uint16_t> rows;   // n x d: bf16(fl(x - mean)), round to nearest even
  std::vector<float> norms;     // n: ||x~||^2
  double maxNorm = 0;           // max ||x~||
  double maxError = 0;          // max ||fl(x - mean) - x~||
  double maxCentred = 0;        // max ||fl(x - mean)||

  // Appends `count` rows (count x d). The first call also sets the mean from these rows.
  void append(const float* x, int64_t count, int64_t dim);
  void clear() { *this = ScreenedDatabase(); }
};

// True when this CPU runs oneDNN's bf16 matmul natively (AVX512-BF16 or AMX).
bool screeningSupported();

// Whether screening pays off for a search of m queries against n rows of d values, k
// neighbours, on an already prepared database (`prepared`) or one that must be converted
// first. Only l2 / l2sq are screened.
bool screeningWorthIt(int64_t n, int64_t m, int64_t d, int64_t k, Metric metric, bool prepared);

// Exact l2 / l2sq search of queries (m x d) in the screened database whose original rows are
// `database` (n x d). Fills distances / indices (m x k) except for the queries it returns,
// whose candidates outgrew the budget: the caller searches those with the float32 path.
std::vector<int64_t> screenedSearch(const ScreenedDatabase& db, const float* database, const float* queries,
                                    int64_t m, int64_t k, Metric metric, float* distances, int32_t* indices);

// The plain path: SGEMM tiles + top-k (knn.cpp). databaseNorms may be null.
void searchFloat32(const float* database, int64_t n, const float* queries, int64_t m, int64_t d, int64_t k,
                   Metric metric, const float* databaseNorms, float* distances, int32_t* indices);

// Exact search, screened when `screening` allows it (Auto: and it pays off): with `screened` (a prepared database,
// e.g. a MemoryBank's) or, without, one converted for this call. Queries the screen gives up
// on go through searchFloat32. Sizes must have been checked.
void searchExact(const float* database, int64_t n, const float* queries, int64_t m, int64_t d, int64_t k,
                 Metric metric, const float* databaseNorms, const ScreenedDatabase* screened, KnnScreening screening,
                 float* distances, int32_t* indices);

}  // namespace anomalens::knn_detail
