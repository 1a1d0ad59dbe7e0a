// Exact kNN on the CPU: blocked SGEMM (OpenBLAS) + per-query top-k, see anomalens/knn/knn.h.
//
// Why this shape: a query block (<= 256 rows) times a database tile (kDbTile rows) gives a
// distance block small enough to stay in the core's L2 cache, and each thread scans its
// block right after its own single-threaded SGEMM (OpenBLAS runs single-threaded inside an
// OpenMP parallel region). The block is therefore never written to memory, and ||q||^2 is
// only added to the k survivors. faiss' IndexFlatL2 instead makes one multithreaded SGEMM
// per 4096 x 1024 block, then separate passes for distances and heaps over a block that
// has left the cache.
#include "anomalens/knn/knn.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "anomalens/core/error.h"
#include "knn/screen.h"
#include "knn/select.h"

namespace anomalens {

using knn_detail::KeyMode;
using knn_detail::TopK;

namespace {

constexpr int64_t kQueryBlock = 256;
constexpr int64_t kDbTile = 512;
// Below this many queries per thread, threads split the database instead of the queries.
constexpr int64_t kMinQueriesPerThread = 32;

double sumSquares(const float* x, int64_t d) {
  // Four chains: faster than one, and the same order for equal rows (ties stay ties).
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t j = 0;
  for (; j + 4 <= d; j += 4) {
    s0 += static_cast<double>(x[j]) * x[j];
    s1 += static_cast<double>(x[j + 1]) * x[j + 1];
    s2 += static_cast<double>(x[j + 2]) * x[j + 2];
    s3 += static_cast<double>(x[j + 3]) * x[j + 3];
  }
  for (; j < d; ++j) s0 += static_cast<double>(x[j]) * x[j];
  return (s0 + s1) + (s2 + s3);
}

void checkSizes(const float* database, int64_t n, const float* queries, int64_t m, int64_t d, int64_t k) {
  require(n >= 1, "knnSearch: the database must have at least one row, received n = " + std::to_string(n));
  require(n <= std::numeric_limits<int32_t>::max(),
          "knnSearch: at most 2^31 - 1 database rows are supported, received n = " + std::to_string(n));
  require(d >= 1, "knnSearch: d must be >= 1, received " + std::to_string(d));
  require(m >= 0, "knnSearch: m must be >= 0, received " + std::to_string(m));
  require(k >= 1 && k <= kKnnMaxK, "knnSearch: k must be in [1, " + std::to_string(kKnnMaxK) + "], received " +
                                        std::to_string(k));
  require(k <= n, "knnSearch: k = " + std::to_string(k) + " exceeds the number of database rows n = " +
                      std::to_string(n));
  require(database != nullptr && (m == 0 || queries != nullptr), "knnSearch: null data pointer");
}

// Turns the sorted keys of one query into distances, then restores the (distance, index)
// order the rounding of that conversion may have disturbed among near-equal keys.
void finalizeRow(float* dist, int32_t* idx, int64_t k, Metric metric, float qnorm) {
  for (int64_t j = 0; j < k; ++j) {
    float key = dist[j];
    switch (metric) {
      case Metric::L2Squared: dist[j] = std::max(0.0f, key + qnorm); break;
      case Metric::L2: dist[j] = std::sqrt(std::max(0.0f, key + qnorm)); break;
      case Metric::InnerProduct: dist[j] = -key; break;
      case Metric::Cosine:
        dist[j] = qnorm > 0 ? std::min(2.0f, std::max(0.0f, 1.0f + key / qnorm)) : 1.0f;
        break;
    }
  }
  if (metric == Metric::InnerProduct) return;  // -key is exact: the order is already right
  for (int64_t j = 1; j < k; ++j) {  // insertion sort: at most a few pairs are out of place
    float dv = dist[j];
    int32_t iv = idx[j];
    int64_t p = j;
    while (p > 0 && (dist[p - 1] > dv || (dist[p - 1] == dv && idx[p - 1] > iv))) {
      dist[p] = dist[p - 1];
      idx[p] = idx[p - 1];
      --p;
    }
    dist[p] = dv;
    idx[p] = iv;
  }
}

struct Plan {
  int64_t qblock;   // queries per block
  int64_t qblocks;  // number of query blocks
  int64_t ranges;   // database ranges searched independently and merged
};

Plan makePlan(int64_t m, int64_t n, int threads) {
  Plan p{};
  if (m >= threads * kMinQueriesPerThread || threads == 1) {
    int64_t blocks = (m + kQueryBlock - 1) / kQueryBlock;
    blocks = (blocks + threads - 1) / threads * threads;  // a multiple of the thread count
    p.qblock = (m + blocks - 1) / blocks;
    p.qblocks = (m + p.qblock - 1) / p.qblock;
    p.ranges = 1;
  } else {
    p.qblock = std::min<int64_t>(m, kQueryBlock);
    p.qblocks = (m + p.qblock - 1) / p.qblock;
    p.ranges = std::max<int64_t>(1, std::min<int64_t>(threads, (n + kDbTile - 1) / kDbTile));
  }
  return p;
}

}  // namespace

const char* metricName(Metric metric) {
  switch (metric) {
    case Metric::L2Squared: return "l2sq";
    case Metric::L2: return "l2";
    case Metric::InnerProduct: return "ip";
    case Metric::Cosine: return "cosine";
  }
  return "l2sq";
}

Metric parseMetric(const std::string& name) {
  if (name == "l2sq") return Metric::L2Squared;
  if (name == "l2") return Metric::L2;
  if (name == "ip") return Metric::InnerProduct;
  if (name == "cosine") return Metric::Cosine;
  throw Error(ErrorCode::InvalidArgument,
              "metric must be one of 'l2sq', 'l2', 'ip', 'cosine', received '" + name + "'");
}

bool knnUsesNorms(Metric metric) { return metric != Metric::InnerProduct; }

const char* knnScanKernel() { return knn_detail::scanKernelName(); }

void knnDatabaseNorms(const float* database, int64_t n, int64_t d, Metric metric, float* out) {
  if (!knnUsesNorms(metric)) return;
  bool inverse = metric == Metric::Cosine;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    double s = sumSquares(database + i * d, d);
    out[i] = inverse ? (s > 0 ? static_cast<float>(1.0 / std::sqrt(s)) : 0.0f) : static_cast<float>(s);
  }
}

namespace knn_detail {

void searchFloat32(const float* database, int64_t n, const float* queries, int64_t m, int64_t d, int64_t k,
                   Metric metric, const float* databaseNorms, float* distances, int32_t* indices) {
  if (m == 0) return;
  std::vector<float> ownNorms;
  const float* norms = databaseNorms;
  if (knnUsesNorms(metric) && !norms) {
    ownNorms.resize(static_cast<size_t>(n));
    knnDatabaseNorms(database, n, d, metric, ownNorms.data());
    norms = ownNorms.data();
  }
  // Per query: ||q||^2 for l2 metrics, ||q|| for cosine (applied to the k survivors only).
  std::vector<float> qnorms(static_cast<size_t>(m), 0.0f);
  if (metric != Metric::InnerProduct) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; ++i) {
      double s = sumSquares(queries + i * d, d);
      qnorms[i] = static_cast<float>(metric == Metric::Cosine ? std::sqrt(s) : s);
    }
  }

  const bool l2 = metric == Metric::L2Squared || metric == Metric::L2;
  const float alpha = l2 ? -2.0f : -1.0f;
  const KeyMode mode = l2 ? KeyMode::Add : (metric == Metric::Cosine ? KeyMode::Scale : KeyMode::Plain);
  const int threads = std::max(1, omp_get_max_threads());
  const Plan plan = makePlan(m, n, threads);

  // With one range the output buffers themselves hold the heaps; with several, each range
  // has its own heaps, merged below.
  std::vector<float> scratchKeys;
  std::vector<int32_t> scratchIds;
  if (plan.ranges > 1) {
    scratchKeys.resize(static_cast<size_t>(plan.ranges * m * k));
    scratchIds.resize(static_cast<size_t>(plan.ranges * m * k));
  }
  std::vector<int32_t> sizes(static_cast<size_t>(plan.ranges * m), 0);
  auto heapKeys = [&](int64_t r, int64_t i) {
    return plan.ranges > 1 ? scratchKeys.data() + (r * m + i) * k : distances + i * k;
  };
  auto heapIds = [&](int64_t r, int64_t i) {
    return plan.ranges > 1 ? scratchIds.data() + (r * m + i) * k : indices + i * k;
  };

  const int64_t items = plan.qblocks * plan.ranges;
  // Allocated here: an allocation failure inside the OpenMP region would terminate the process.
  std::vector<float> blocks(static_cast<size_t>(threads * plan.qblock * kDbTile));
#pragma omp parallel
  {
    float* block = blocks.data() + static_cast<int64_t>(omp_get_thread_num()) * plan.qblock * kDbTile;
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t b = item / plan.ranges, r = item % plan.ranges;
      const int64_t i0 = b * plan.qblock, i1 = std::min(m, i0 + plan.qblock);
      const int64_t rows = i1 - i0;
      const int64_t j0 = n * r / plan.ranges, j1 = n * (r + 1) / plan.ranges;
      for (int64_t t0 = j0; t0 < j1; t0 += kDbTile) {
        const int64_t cols = std::min(kDbTile, j1 - t0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(cols),
                    static_cast<int>(d), alpha, queries + i0 * d, static_cast<int>(d), database + t0 * d,
                    static_cast<int>(d), 0.0f, block, static_cast<int>(cols));
        for (int64_t i = i0; i < i1; ++i) {
          TopK top{heapKeys(r, i), heapIds(r, i), static_cast<int32_t>(k), sizes[r * m + i]};
          knn_detail::scanRow(block + (i - i0) * cols, norms ? norms + t0 : nullptr, cols,
                              static_cast<int32_t>(t0), mode, top);
          sizes[r * m + i] = top.size;
        }
      }
    }

    // Merge (several ranges), sort, and turn keys into distances.
#pragma omp for schedule(static)
    for (int64_t i = 0; i < m; ++i) {
      float* dist = distances + i * k;
      int32_t* idx = indices + i * k;
      if (plan.ranges > 1) {
        TopK merged{dist, idx, static_cast<int32_t>(k), 0};
        for (int64_t r = 0; r < plan.ranges; ++r) {
          const float* keys = heapKeys(r, i);
          const int32_t* ids = heapIds(r, i);
          for (int32_t j = 0; j < sizes[r * m + i]; ++j) merged.offerAny(keys[j], ids[j]);
        }
        merged.sort();
      } else {
        TopK top{dist, idx, static_cast<int32_t>(k), sizes[i]};
        top.sort();
      }
      finalizeRow(dist, idx, k, metric, qnorms[i]);
    }
  }
}

}  // namespace knn_detail

void knnSearch(const float* database, int64_t n, const float* queries, int64_t m, int64_t d,
               const KnnOptions& options, float* distances, int32_t* indices) {
  checkSizes(database, n, queries, m, d, options.k);
  require(m == 0 || (distances != nullptr && indices != nullptr), "knnSearch: null output pointer");
  knn_detail::searchExact(database, n, queries, m, d, options.k, options.metric, options.databaseNorms, nullptr,
                          options.screening, distances, indices);
}

}  // namespace anomalens
