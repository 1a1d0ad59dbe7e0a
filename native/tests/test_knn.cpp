// knn: exact search (every metric, both engines), MemoryBank and faiss' Flat index against a
// brute-force float64 scan.
#include <algorithm>
#include <cstdio>
#include <numeric>

#include "anomalens/core/error.h"
#include "anomalens/knn/bank.h"
#include "anomalens/knn/faiss.h"
#include "anomalens/knn/knn.h"
#include "harness.h"

namespace anomalens::tests {
namespace {

double distanceOf(const float* q, const float* x, int64_t d, Metric metric) {
  double dot = 0, qq = 0, xx = 0, l2 = 0;
  for (int64_t j = 0; j < d; ++j) {
    dot += static_cast<double>(q[j]) * x[j];
    qq += static_cast<double>(q[j]) * q[j];
    xx += static_cast<double>(x[j]) * x[j];
    l2 += (static_cast<double>(q[j]) - x[j]) * (static_cast<double>(q[j]) - x[j]);
  }
  switch (metric) {
    case Metric::L2Squared: return l2;
    case Metric::L2: return std::sqrt(l2);
    case Metric::InnerProduct: return dot;
    case Metric::Cosine: return qq > 0 && xx > 0 ? 1 - dot / std::sqrt(qq * xx) : 1;
  }
  return 0;
}

// Brute force: every distance, sorted (nearest first; ip largest first; ties by index).
void bruteForce(const std::vector<float>& db, int64_t n, const std::vector<float>& q, int64_t m, int64_t d, int64_t k,
                Metric metric, std::vector<double>& dist, std::vector<int32_t>& idx) {
  dist.assign(static_cast<size_t>(m * k), 0);
  idx.assign(static_cast<size_t>(m * k), 0);
  for (int64_t i = 0; i < m; ++i) {
    std::vector<double> all(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) all[r] = distanceOf(&q[i * d], &db[r * d], d, metric);
    std::vector<int32_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
      return metric == Metric::InnerProduct ? all[a] > all[b] : all[a] < all[b];
    });
    for (int64_t j = 0; j < k; ++j) idx[i * k + j] = order[j], dist[i * k + j] = all[order[j]];
  }
}

// Indices equal to the brute force's, distances within float32 rounding of its scale.
void expectNeighbours(const std::string& what, const std::vector<float>& gotD, const std::vector<int32_t>& gotI,
                      const std::vector<double>& refD, const std::vector<int32_t>& refI) {
  CHECK_MSG(gotI == refI, what << ": indices differ");
  double err = relError(gotD.data(), refD.data(), refD.size(), 1.0);
  CHECK_MSG(err < 1e-5, what << ": distance error " << err);
}

}  // namespace

TEST(knn_search_vs_brute_force) {
  Rng rng(21);
  const int64_t n = 97, d = 13, m = 13;
  std::vector<float> db = rng.floats(static_cast<size_t>(n * d)), q = rng.floats(static_cast<size_t>(m * d));
  for (Metric metric : {Metric::L2Squared, Metric::L2, Metric::InnerProduct, Metric::Cosine})
    for (int64_t k : {int64_t(1), int64_t(5), n})
      for (KnnScreening s : {KnnScreening::Off, KnnScreening::Force}) {
        std::vector<float> dist(static_cast<size_t>(m * k));
        std::vector<int32_t> idx(static_cast<size_t>(m * k));
        KnnOptions o{metric, k, nullptr, s};
        knnSearch(db.data(), n, q.data(), m, d, o, dist.data(), idx.data());
        std::vector<double> rd;
        std::vector<int32_t> ri;
        bruteForce(db, n, q, m, d, k, metric, rd, ri);
        expectNeighbours(std::string(metricName(metric)) + " k " + std::to_string(k) +
                             (s == KnnScreening::Force ? " bf16" : ""), dist, idx, rd, ri);
      }
  std::vector<float> dist(1);
  std::vector<int32_t> idx(1);
  CHECK_THROWS_CODE(knnSearch(db.data(), n, q.data(), 1, d, {Metric::L2, n + 1}, dist.data(), idx.data()),
                    ErrorCode::InvalidArgument);
  CHECK(parseMetric("cosine") == Metric::Cosine);
  CHECK_THROWS_CODE(parseMetric("l1"), ErrorCode::InvalidArgument);
}

TEST(knn_memory_bank_vs_brute_force_and_file) {
  Rng rng(22);
  const int64_t d = 13, m = 7, k = 3;
  MemoryBank bank(d, Metric::L2Squared);
  std::vector<float> all;
  for (int64_t chunk : {int64_t(40), int64_t(1), int64_t(56)}) {
    std::vector<float> rows = rng.floats(static_cast<size_t>(chunk * d));
    bank.add(rows.data(), chunk);
    all.insert(all.end(), rows.begin(), rows.end());
  }
  CHECK(bank.size() == 97);
  std::vector<float> q = rng.floats(static_cast<size_t>(m * d)), dist(m * k);
  std::vector<int32_t> idx(m * k);
  bank.search(q.data(), m, k, dist.data(), idx.data());
  std::vector<double> rd;
  std::vector<int32_t> ri;
  bruteForce(all, 97, q, m, d, k, Metric::L2Squared, rd, ri);
  expectNeighbours("bank", dist, idx, rd, ri);
  const std::string path = tempPath("bank.bin");
  bank.save(path);
  MemoryBank loaded = MemoryBank::load(path);
  std::remove(path.c_str());
  CHECK(loaded.size() == 97 && loaded.dim() == d && loaded.metric() == Metric::L2Squared);
  CHECK(std::equal(all.begin(), all.end(), loaded.data()));
  std::vector<float> dist2(m * k);
  std::vector<int32_t> idx2(m * k);
  loaded.search(q.data(), m, k, dist2.data(), idx2.data());
  CHECK(idx2 == idx && dist2 == dist);
  CHECK_THROWS_CODE(MemoryBank::load(path), ErrorCode::Io);
}

TEST(knn_faiss_flat_vs_brute_force) {
  Rng rng(23);
  const int64_t n = 97, d = 13, m = 13, k = 4;
  std::vector<float> db = rng.floats(static_cast<size_t>(n * d)), q = rng.floats(static_cast<size_t>(m * d));
  for (Metric metric : {Metric::L2Squared, Metric::InnerProduct}) {
    FaissIndex index(d, "Flat", metric);
    CHECK(index.isTrained());
    index.add(db.data(), n);
    std::vector<float> dist(m * k);
    std::vector<int32_t> idx(m * k);
    index.search(q.data(), m, k, dist.data(), idx.data());
    std::vector<double> rd;
    std::vector<int32_t> ri;
    bruteForce(db, n, q, m, d, k, metric, rd, ri);
    expectNeighbours(std::string("faiss ") + metricName(metric), dist, idx, rd, ri);
  }
  CHECK_THROWS_CODE(FaissIndex(d, "NotAnIndex", Metric::L2Squared), ErrorCode::InvalidArgument);
}

}  // namespace anomalens::tests
