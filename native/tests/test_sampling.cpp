// sampling: greedy coreset subsampling against a naive greedy loop over the rows exactly as the
// loop sees them (coresetProjectedFeatures), from the same start rows (coresetStartRows).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "anomalens/core/error.h"
#include "anomalens/sampling/coreset.h"
#include "harness.h"

namespace anomalens::tests {
namespace {

std::vector<int32_t> naiveGreedy(const std::vector<float>& x, int64_t n, int64_t d, const std::vector<int32_t>& start,
                                 int64_t count) {
  auto dist = [&](int64_t a, int64_t b) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) {
      const double t = static_cast<double>(x[a * d + j]) - x[b * d + j];
      s += t * t;
    }
    return std::sqrt(s);
  };
  std::vector<double> minDist(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int32_t s : start) minDist[i] += dist(i, s);
    minDist[i] /= static_cast<double>(start.size());
  }
  std::vector<int32_t> out;
  for (int64_t c = 0; c < count; ++c) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
      if (minDist[i] > minDist[best]) best = i;
    out.push_back(static_cast<int32_t>(best));
    for (int64_t i = 0; i < n; ++i) minDist[i] = std::min(minDist[i], dist(i, best));
  }
  return out;
}

}  // namespace

TEST(sampling_coreset_vs_naive_greedy) {
  Rng rng(31);
  const int64_t n = 97, d = 13;
  std::vector<float> x = rng.floats(static_cast<size_t>(n * d));
  struct Case { int64_t projectionDim; CoresetPrecision precision; CoresetProjection projection; int64_t count; };
  for (Case k : {Case{0, CoresetPrecision::Float32, CoresetProjection::Uniform, 13},
                 Case{5, CoresetPrecision::Float32, CoresetProjection::Uniform, 1},
                 Case{7, CoresetPrecision::Float16, CoresetProjection::Gaussian, 31},
                 Case{13, CoresetPrecision::Float16, CoresetProjection::Uniform, 61}}) {
    CoresetOptions o;
    o.count = k.count;
    o.seed = 7;
    o.projectionDim = k.projectionDim;
    o.precision = k.precision;
    o.projection = k.projection;
    o.startPoints = 10;
    const int64_t wd = coresetWorkingDim(d, o);
    CHECK(wd == (k.projectionDim == 0 ? d : k.projectionDim));
    std::vector<float> seen(static_cast<size_t>(n * wd));
    coresetProjectedFeatures(x.data(), n, d, o, seen.data());
    std::vector<int32_t> start(10);
    coresetStartRows(n, o, start.data());
    std::vector<int32_t> sorted = start;
    std::sort(sorted.begin(), sorted.end());
    CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end() && sorted.front() >= 0 && sorted.back() < n);
    std::vector<int32_t> got(static_cast<size_t>(k.count));
    CHECK(coresetSubsample(x.data(), n, d, o, got.data()) == k.count);
    CHECK_MSG(got == naiveGreedy(seen, n, wd, start, k.count), "projectionDim " << k.projectionDim << " count " << k.count);
  }
  // count == n: every row in order, without selection.
  CoresetOptions all;
  all.count = n;
  std::vector<int32_t> every(static_cast<size_t>(n)), iota(static_cast<size_t>(n));
  std::iota(iota.begin(), iota.end(), 0);
  coresetSubsample(x.data(), n, d, all, every.data());
  CHECK(every == iota);
}

TEST(sampling_projection_matrix_is_the_projection) {
  Rng rng(32);
  const int64_t n = 13, d = 29, p = 7;
  std::vector<float> x = rng.floats(static_cast<size_t>(n * d));
  CoresetOptions o;
  o.count = 1;
  o.seed = 3;
  o.projectionDim = p;
  o.precision = CoresetPrecision::Float32;
  std::vector<float> mat(static_cast<size_t>(d * p)), seen(static_cast<size_t>(n * p));
  coresetProjectionMatrix(d, o, mat.data());
  coresetProjectedFeatures(x.data(), n, d, o, seen.data());
  std::vector<double> ref(static_cast<size_t>(n * p), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < p; ++j)
      for (int64_t t = 0; t < d; ++t) ref[i * p + j] += static_cast<double>(x[i * d + t]) * mat[t * p + j];
  CHECK(relError(seen.data(), ref.data(), ref.size()) < 1e-5);
  const float bound = 1.0f / std::sqrt(static_cast<float>(d));
  CHECK(std::all_of(mat.begin(), mat.end(), [&](float v) { return std::abs(v) <= bound; }));
}

}  // namespace anomalens::tests
