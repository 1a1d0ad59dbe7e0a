// Exact k-nearest-neighbour search over float32 row vectors.
//
// The CPU backend computes distance blocks with OpenBLAS SGEMM (queries x database tile,
// plus cached norms), then keeps a per-query top-k while the block is still in cache. Work is
// split over OpenMP threads by query blocks, and over database ranges when there are too few
// queries to keep every thread busy.
//
// A backend implements exactly the signature of knnSearch below on its own memory (a CUDA
// twin, anomalens::cuda::knnSearch in native/src/cuda/knn/knn.cu, takes device pointers of the
// same shapes); the CPU results are the reference every backend is tested against.
//
// Result conventions, for every backend:
//   - row i of `distances` / `indices` holds the k nearest database rows of query i, nearest
//     first; equal distances are ordered by lower database index;
//   - l2sq: squared Euclidean distance (>= 0);  l2: Euclidean distance;
//     ip: inner product, LARGEST first (a similarity, as faiss' METRIC_INNER_PRODUCT);
//     cosine: cosine distance 1 - cos(q, x) in [0, 2]; a zero vector has cosine 0 to anything.
//   - on the float32 path, squared distances come from ||x||^2 - 2 q.x + ||q||^2, so they carry
//     an absolute error of about 1e-7 * (||q||^2 + ||x||^2) (like faiss' IndexFlatL2); on the
//     bf16-screened path (l2 / l2sq on CPUs with AVX512-BF16, see native/src/knn/screen.h)
//     the products are screened in bfloat16 with a rigorous error bound and every surviving
//     row is re-scored as sum((q - x)^2) in float32, which is more accurate. Both return the
//     exact neighbours, up to float rounding at near-ties.
#pragma once
#include <cstdint>
#include <string>

namespace anomalens {

enum class Metric { L2Squared, L2, InnerProduct, Cosine };

// "l2sq", "l2", "ip", "cosine".
const char* metricName(Metric metric);
// The inverse of metricName; throws Error(InvalidArgument) naming the accepted values.
Metric parseMetric(const std::string& name);

// Largest k any backend accepts.
constexpr int64_t kKnnMaxK = 1024;

// Whether an l2 / l2sq search may take the bf16-screened exact path (see above).
enum class KnnScreening {
  Auto,   // when the CPU has AVX512-BF16 and the problem is large enough to pay off
  Off,    // always the float32 SGEMM path
  Force,  // whenever the CPU has AVX512-BF16, whatever the size (tests, benchmarks)
};

struct KnnOptions {
  Metric metric = Metric::L2Squared;
  int64_t k = 1;
  // Optional per-database-row values from knnDatabaseNorms(metric) (size n), so that a
  // caller searching the same database repeatedly (a MemoryBank) computes them once.
  const float* databaseNorms = nullptr;
  KnnScreening screening = KnnScreening::Auto;
};

// True when this CPU and build can take the bf16-screened path.
bool knnScreeningSupported();
// The top-k scan kernel chosen for this CPU: "avx512", "avx2" or "scalar".
const char* knnScanKernel();

// The k nearest database rows of every query.
//   database:  n x d, row-major, float32 (n >= 1, d >= 1)
//   queries:   m x d, row-major (m >= 0)
//   distances: m x k, written by this call (caller-allocated)
//   indices:   m x k, written by this call (caller-allocated), values in [0, n)
// Requires 1 <= k <= min(n, kKnnMaxK) and n < 2^31; throws Error(InvalidArgument) otherwise.
// Inputs must be finite (lib/ checks); NaN rows are never returned as neighbours.
// Example:
//   std::vector<float> dist(m * 5); std::vector<int32_t> idx(m * 5);
//   knnSearch(db, n, q, m, d, {Metric::L2Squared, 5}, dist.data(), idx.data());
void knnSearch(const float* database, int64_t n, const float* queries, int64_t m, int64_t d,
               const KnnOptions& options, float* distances, int32_t* indices);

// What knnSearch needs per database row for `metric` (size n, caller-allocated):
// squared L2 norms for l2sq / l2, inverse L2 norms (0 for a zero row) for cosine, nothing
// for ip (out may be null). Must be recomputed whenever the rows change.
void knnDatabaseNorms(const float* database, int64_t n, int64_t d, Metric metric, float* out);

// True when knnSearch needs databaseNorms for this metric.
bool knnUsesNorms(Metric metric);

}  // namespace anomalens
