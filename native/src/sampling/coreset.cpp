// Greedy coreset subsampling, see anomalens/sampling/coreset.h.
//
// Each selection step streams every projected row once (distance to the new centre, min
// into the row's distance, farthest row). Rows are packed 16 to a block so one vector
// instruction handles 16 rows (knn_coreset_kernels.cpp); in float16 the stream is half as
// long, which is what bounds a step on a machine with more cores than memory bandwidth.
// Threads own fixed ranges of blocks for the whole run and meet at one barrier per step.
#include "anomalens/sampling/coreset.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "anomalens/core/error.h"
#include "sampling/coreset_kernels.h"

namespace anomalens {

using coreset_detail::Farthest;
using coreset_detail::kLanes;

namespace {

// xoshiro256** seeded through splitmix64: fast, and the same stream on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (uint64_t& s : s_) {
      seed += 0x9E3779B97F4A7C15ULL;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
      s = z ^ (z >> 31);
    }
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n) { return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64); }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// Independent streams, so that changing the projection never changes the starting rows.
constexpr uint64_t kProjectionStream = 0x50524f4a45435431ULL;  // "PROJECT1"
constexpr uint64_t kStartStream = 0x5354415254535431ULL;       // "STARTST1"

// One barrier per selection step. libgomp's barrier spins for a long time before sleeping,
// which on a machine shared with other busy processes burns the time slice the late
// thread needs (a 20k x 128 test ran 4.5x slower than with OMP_WAIT_POLICY=passive); this
// one spins briefly, then yields.
class StepBarrier {
 public:
  // Sets the number of participating threads; call while no thread waits.
  void reset(int threads) { threads_ = threads; }
  void wait() {
    const int gen = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == threads_ - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
      return;
    }
    for (int spins = 0; generation_.load(std::memory_order_acquire) == gen; ++spins) {
      if (spins < 2000) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  int threads_ = 1;
  std::atomic<int> arrived_{0};
  std::atomic<int> generation_{0};
};

bool projects(int64_t d, const CoresetOptions& o) { return o.projectionDim > 0 && o.projectionDim != d; }

// Projected rows, packed in blocks of 16 (see knn_coreset_kernels.h).
struct Packed {
  int64_t n = 0, p = 0, blocks = 0;
  bool half = false;
  float scale = 1.0f;  // float16 storage holds value * scale (a power of two)
  std::vector<float> f32;
  std::vector<uint16_t> f16;

  const void* data() const { return half ? static_cast<const void*>(f16.data()) : f32.data(); }
  // Row i as the kernels see it (scaled for float16).
  void row(int64_t i, float* out) const {
    const int64_t b = i / kLanes, l = i % kLanes, base = b * p * kLanes + l;
    for (int64_t t = 0; t < p; ++t)
      out[t] = half ? coreset_detail::halfToFloat(f16[base + t * kLanes]) : f32[base + t * kLanes];
  }
};

Packed pack(const float* features, int64_t n, int64_t d, const CoresetOptions& o) {
  Packed P;
  P.n = n;
  P.p = coresetWorkingDim(d, o);
  P.blocks = (n + kLanes - 1) / kLanes;
  P.half = o.precision == CoresetPrecision::Float16;
  const int64_t p = P.p;
  P.f32.assign(static_cast<size_t>(P.blocks * p * kLanes), 0.0f);

  std::vector<float> matrix;
  if (projects(d, o)) {
    matrix.resize(static_cast<size_t>(d * p));
    coresetProjectionMatrix(d, o, matrix.data());
  }
  // Project (or copy) 4096 rows at a time, then scatter them into the block layout.
  constexpr int64_t kChunk = 4096;
  std::vector<float> tmp(matrix.empty() ? 0 : static_cast<size_t>(std::min(n, kChunk) * p));
  for (int64_t r0 = 0; r0 < n; r0 += kChunk) {
    const int64_t rows = std::min(kChunk, n - r0);
    const float* src = features + r0 * d;
    if (!matrix.empty()) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(p),
                  static_cast<int>(d), 1.0f, src, static_cast<int>(d), matrix.data(), static_cast<int>(p), 0.0f,
                  tmp.data(), static_cast<int>(p));
      src = tmp.data();
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r0 + r, b = i / kLanes, l = i % kLanes;
      float* dst = P.f32.data() + b * p * kLanes + l;
      for (int64_t t = 0; t < p; ++t) dst[t * kLanes] = src[r * p + t];
    }
  }
  if (P.half) {
    float maxAbs = 0;
#pragma omp parallel for reduction(max : maxAbs) schedule(static)
    for (int64_t i = 0; i < static_cast<int64_t>(P.f32.size()); ++i) maxAbs = std::max(maxAbs, std::fabs(P.f32[i]));
    // A power of two bringing the largest value into [2^14, 2^15): no overflow (max 65504),
    // full relative precision, and exactly undone by the hook.
    if (maxAbs > 0) P.scale = std::ldexp(1.0f, 14 - std::ilogb(maxAbs));
    P.f16.resize(P.f32.size());
    const int64_t total = static_cast<int64_t>(P.f32.size());
    constexpr int64_t kPart = 1 << 16;
#pragma omp parallel for schedule(static)
    for (int64_t s = 0; s < total; s += kPart) {
      const int64_t e = std::min(total, s + kPart);
      for (int64_t i = s; i < e; ++i) P.f32[i] *= P.scale;
      coreset_detail::floatsToHalves(P.f32.data() + s, P.f16.data() + s, e - s);
    }
    std::vector<float>().swap(P.f32);
  }
  return P;
}

void validate(int64_t n, int64_t d, const CoresetOptions& o) {
  require(n >= 1 && n <= std::numeric_limits<int32_t>::max(),
          "coresetSubsample: n must be in [1, 2^31 - 1], received " + std::to_string(n));
  require(d >= 1, "coresetSubsample: d must be >= 1, received " + std::to_string(d));
  require(o.count >= 1 && o.count <= n, "coresetSubsample: count must be in [1, n = " + std::to_string(n) +
                                            "], received " + std::to_string(o.count));
  require(o.projectionDim >= 0 && o.projectionDim <= 65536,
          "coresetSubsample: projectionDim must be in [0, 65536], received " + std::to_string(o.projectionDim));
  require(o.startPoints >= 1 && o.startPoints <= 65536,
          "coresetSubsample: startPoints must be in [1, 65536], received " + std::to_string(o.startPoints));
}

}  // namespace

int64_t coresetWorkingDim(int64_t d, const CoresetOptions& options) {
  return projects(d, options) ? options.projectionDim : d;
}

void coresetProjectionMatrix(int64_t d, const CoresetOptions& options, float* out) {
  require(projects(d, options), "coresetProjectionMatrix: no projection for d = " + std::to_string(d) +
                                    " and projectionDim = " + std::to_string(options.projectionDim));
  const int64_t p = options.projectionDim;
  Rng rng(options.seed ^ kProjectionStream);
  if (options.projection == CoresetProjection::Uniform) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(d));
    for (int64_t i = 0; i < d * p; ++i) out[i] = static_cast<float>((2.0 * rng.uniform() - 1.0) * bound);
  } else {
    const double sd = 1.0 / std::sqrt(static_cast<double>(p));
    for (int64_t i = 0; i < d * p; i += 2) {  // Box-Muller, two values per draw
      const double u1 = 1.0 - rng.uniform(), u2 = rng.uniform();
      const double r = std::sqrt(-2.0 * std::log(u1)) * sd;
      out[i] = static_cast<float>(r * std::cos(2 * M_PI * u2));
      if (i + 1 < d * p) out[i + 1] = static_cast<float>(r * std::sin(2 * M_PI * u2));
    }
  }
}

void coresetProjectedFeatures(const float* features, int64_t n, int64_t d, const CoresetOptions& options,
                              float* out) {
  validate(n, d, CoresetOptions{1, options.seed, options.projectionDim, options.projection, options.precision,
                                options.startPoints, nullptr, nullptr});
  Packed P = pack(features, n, d, options);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    P.row(i, out + i * P.p);
    for (int64_t t = 0; t < P.p; ++t) out[i * P.p + t] /= P.scale;
  }
}

void coresetStartRows(int64_t n, const CoresetOptions& options, int32_t* out) {
  require(n >= 1 && options.startPoints >= 1, "coresetStartRows: n and startPoints must be >= 1");
  const int64_t S = std::min(options.startPoints, n);
  Rng rng(options.seed ^ kStartStream);
  for (int64_t drawn = 0; drawn < S;) {
    int32_t r = static_cast<int32_t>(rng.below(static_cast<uint64_t>(n)));
    if (std::find(out, out + drawn, r) == out + drawn) out[drawn++] = r;
  }
}

int64_t coresetSubsample(const float* features, int64_t n, int64_t d, const CoresetOptions& o, int32_t* indices) {
  validate(n, d, o);
  const int64_t count = o.count;
  const int64_t S = std::min(o.startPoints, n);
  std::vector<int32_t> startRows(static_cast<size_t>(S));
  coresetStartRows(n, o, startRows.data());
  if (count == n) {  // the original returns every row unchanged for percentage 1
    for (int64_t i = 0; i < n; ++i) indices[i] = static_cast<int32_t>(i);
    if (o.progress) o.progress(n, n);
    return n;
  }

  const Packed P = pack(features, n, d, o);
  const int64_t p = P.p;
  const coreset_detail::Kernels& K = coreset_detail::coresetKernels(P.half);
  std::vector<float> centres(static_cast<size_t>(S * p));
  for (int64_t s = 0; s < S; ++s) P.row(startRows[s], centres.data() + s * p);
  std::vector<float> mind(static_cast<size_t>(P.blocks * kLanes));

  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), P.blocks)));
  // Double-buffered per-thread results: step `it` reads slot[it & 1], writes slot[~it & 1].
  std::vector<Farthest> slot[2] = {std::vector<Farthest>(threads), std::vector<Farthest>(threads)};
  int32_t stop[2] = {o.cancel && o.cancel->load() ? 1 : 0, 0};
  int64_t selected = 0;
  StepBarrier barrier;
  const int64_t progressEvery = std::max<int64_t>(1, std::min<int64_t>(64, count / 100));

#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t b0 = P.blocks * t / nt, b1 = P.blocks * (t + 1) / nt;
#pragma omp single
    barrier.reset(nt);

    // Initial distance of each row: the mean of its distances to the starting rows.
    Farthest local;
    float dist[kLanes];
    for (int64_t b = b0; b < b1; ++b) {
      float sum[kLanes] = {};
      for (int64_t s = 0; s < S; ++s) {
        K.blockDistances(P.data(), p, b, centres.data() + s * p, dist);
        for (int64_t l = 0; l < kLanes; ++l) sum[l] += std::sqrt(dist[l]);
      }
      for (int64_t l = 0; l < kLanes; ++l) {
        const int64_t i = b * kLanes + l;
        const float mean = sum[l] / static_cast<float>(S);
        mind[i] = i < n ? mean * mean : -1.0f;
        if (i < n) local.offer(mind[i], i);
      }
    }
    slot[0][t] = local;
#pragma omp barrier

    std::vector<float> centre(static_cast<size_t>(p));
    for (int64_t it = 0; it < count; ++it) {
      const int parity = static_cast<int>(it & 1);
      if (stop[parity]) break;
      Farthest next;
      for (int u = 0; u < nt; ++u) next.offer(slot[parity][u].dist, slot[parity][u].index);
      if (t == 0) {
        indices[it] = static_cast<int32_t>(next.index);
        selected = it + 1;
        if (o.progress && (selected % progressEvery == 0 || selected == count)) o.progress(selected, count);
      }
      if (it + 1 == count) break;
      P.row(next.index, centre.data());
      slot[parity ^ 1][t] = K.update(P.data(), p, b0, b1, centre.data(), mind.data());
      if (t == 0) stop[parity ^ 1] = o.cancel && o.cancel->load() ? 1 : 0;
      barrier.wait();
    }
  }
  return selected;
}

}  // namespace anomalens
