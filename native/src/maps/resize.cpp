// Bilinear resize, bit-identical to PyTorch 1.13's CPU kernels (AVX2 build) for
// F.interpolate(mode='bilinear', align_corners=False, antialias=False).
//
// PyTorch runs one of two kernels, chosen by the input's memory format, and they round
// differently:
//  - a contiguous NCHW input that is also "channels-last contiguous" (c == 1, or ih * iw == 1;
//    an anomaly map [n, 1, h, w] is the common case) takes the channels-last kernel: weights
//    float(ly * lx), the four products summed in float64, rounded once;
//  - any other NCHW input takes the generic kernel, compiled with FMA contraction:
//    h = fma(v0, lx0, v1 * lx1) per source row, out = fma(h0, ly0, h1 * ly1).
// Both are separable over rows: the per-row part (gathered values, or h) depends only on the
// source row, so each task keeps the last two source rows it computed and output rows that
// share them (upsampling) reuse them.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "anomalens/maps/resize.h"

namespace anomalens {
namespace {

// Source indices and weights of one axis, as PyTorch's compute_source_index_and_lambda:
// the scale is float, the source index is formed in double from it, the weights are float.
struct AxisTaps {
  std::vector<int64_t> i0, i1;
  std::vector<float> l0, l1;
};

AxisTaps axisTaps(int64_t in, int64_t out) {
  AxisTaps t;
  t.i0.resize(out);
  t.i1.resize(out);
  t.l0.resize(out);
  t.l1.resize(out);
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t d = 0; d < out; ++d) {
    if (in == out) {
      t.i0[d] = t.i1[d] = d;
      t.l0[d] = 1.0f;
      t.l1[d] = 0.0f;
      continue;
    }
    double src = static_cast<double>(scale) * (static_cast<double>(d) + 0.5) - 0.5;
    if (src < 0) src = 0;
    const int64_t i0 = static_cast<int64_t>(src);
    t.i0[d] = i0;
    t.i1[d] = i0 + (i0 < in - 1 ? 1 : 0);
    t.l1[d] = static_cast<float>(std::min(std::max(src - static_cast<double>(i0), 0.0), 1.0));
    t.l0[d] = 1.0f - t.l1[d];
  }
  return t;
}

// ---- row kernels -----------------------------------------------------------------------------
// Gathers row[i0[x]] and row[i1[x]] (channels-last arithmetic needs the values themselves).
void gatherRow(const float* row, const int64_t* i0, const int64_t* i1, int64_t ow, float* v0, float* v1) {
  for (int64_t x = 0; x < ow; ++x) {
    v0[x] = row[i0[x]];
    v1[x] = row[i1[x]];
  }
}

// out = float(w00 * a0 + w01 * b0 + w10 * a1 + w11 * b1) in float64, w = float(ly * lx).
// Products of two floats are exact in float64, so FMA contraction cannot change the result.
__attribute__((target_clones("avx512f", "avx2", "default")))
void blendChannelsLast(const float* a0, const float* b0, const float* a1, const float* b1, const float* lx0,
                       const float* lx1, float ly0, float ly1, int64_t ow, float* out) {
  for (int64_t x = 0; x < ow; ++x) {
    const double w00 = ly0 * lx0[x], w01 = ly0 * lx1[x], w10 = ly1 * lx0[x], w11 = ly1 * lx1[x];
    double s = static_cast<double>(static_cast<float>(w00)) * a0[x];
    s += static_cast<double>(static_cast<float>(w01)) * b0[x];
    s += static_cast<double>(static_cast<float>(w10)) * a1[x];
    s += static_cast<double>(static_cast<float>(w11)) * b1[x];
    out[x] = static_cast<float>(s);
  }
}

// The generic kernel's two steps; std::fma is one rounding whatever the target, so every
// variant below gives the same bits (the FMA ones are just faster).
inline __attribute__((always_inline)) void horizontalFmaBody(const float* row, const int64_t* i0, const int64_t* i1,
                                                             const float* l0, const float* l1, int64_t ow, float* h) {
  for (int64_t x = 0; x < ow; ++x) h[x] = std::fma(row[i0[x]], l0[x], row[i1[x]] * l1[x]);
}
inline __attribute__((always_inline)) void verticalFmaBody(const float* h0, const float* h1, float ly0, float ly1,
                                                           int64_t ow, float* out) {
  for (int64_t x = 0; x < ow; ++x) out[x] = std::fma(h0[x], ly0, h1[x] * ly1);
}

__attribute__((target("avx512f,fma"))) void horizontalFma512(const float* row, const int64_t* i0, const int64_t* i1,
                                                              const float* l0, const float* l1, int64_t ow, float* h) {
  horizontalFmaBody(row, i0, i1, l0, l1, ow, h);
}
__attribute__((target("avx512f,fma"))) void verticalFma512(const float* h0, const float* h1, float ly0, float ly1,
                                                            int64_t ow, float* out) {
  verticalFmaBody(h0, h1, ly0, ly1, ow, out);
}
__attribute__((target("avx2,fma"))) void horizontalFma256(const float* row, const int64_t* i0, const int64_t* i1,
                                                           const float* l0, const float* l1, int64_t ow, float* h) {
  horizontalFmaBody(row, i0, i1, l0, l1, ow, h);
}
__attribute__((target("avx2,fma"))) void verticalFma256(const float* h0, const float* h1, float ly0, float ly1,
                                                         int64_t ow, float* out) {
  verticalFmaBody(h0, h1, ly0, ly1, ow, out);
}
// Without hardware FMA std::fma is glibc's exact software fmaf: slow, still bit-identical.
void horizontalFmaPlain(const float* row, const int64_t* i0, const int64_t* i1, const float* l0, const float* l1,
                        int64_t ow, float* h) {
  horizontalFmaBody(row, i0, i1, l0, l1, ow, h);
}
void verticalFmaPlain(const float* h0, const float* h1, float ly0, float ly1, int64_t ow, float* out) {
  verticalFmaBody(h0, h1, ly0, ly1, ow, out);
}

using HorizontalFn = void (*)(const float*, const int64_t*, const int64_t*, const float*, const float*, int64_t, float*);
using VerticalFn = void (*)(const float*, const float*, float, float, int64_t, float*);

struct FmaKernels {
  HorizontalFn horizontal;
  VerticalFn vertical;
};

const FmaKernels& fmaKernels() {
  static const FmaKernels k = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"))
      return FmaKernels{horizontalFma512, verticalFma512};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return FmaKernels{horizontalFma256, verticalFma256};
    return FmaKernels{horizontalFmaPlain, verticalFmaPlain};
  }();
  return k;
}

// Per-task cache of the two most recently used source rows' horizontal results.
struct RowCache {
  int64_t row[2] = {-1, -1};
  std::vector<float> data[2];
  int lru = 0;  // the slot to overwrite next: never the one just returned
};

}  // namespace

void resizeMapsBilinear(const float* in, int64_t n, int64_t c, int64_t ih, int64_t iw, int64_t oh, int64_t ow,
                    float* out) {
  const AxisTaps ty = axisTaps(ih, oh), tx = axisTaps(iw, ow);
  const bool channelsLast = c == 1 || ih * iw == 1;
  const int64_t planes = n * c;
  // Enough tasks for every thread, each a run of output rows of one plane (long runs keep the
  // row cache useful when upsampling).
  const int64_t wanted = 8 * static_cast<int64_t>(std::max(1, omp_get_max_threads()));
  const int64_t chunksPerPlane = std::min(oh, std::max<int64_t>(1, (wanted + planes - 1) / planes));
  const int64_t rowsPerChunk = (oh + chunksPerPlane - 1) / chunksPerPlane;
  const int64_t tasks = planes * chunksPerPlane;
  const FmaKernels& fk = fmaKernels();
  // Channels-last rows hold two gathered vectors (values at i0 and at i1); generic rows one.
  const int64_t slot = channelsLast ? 2 * ow : ow;

#pragma omp parallel
  {
    RowCache cache;
    cache.data[0].resize(slot);
    cache.data[1].resize(slot);
    // Returns the cached horizontal result of source row `r` of `plane`, computing it if needed.
    auto rowOf = [&](const float* plane, int64_t r) -> const float* {
      for (int s = 0; s < 2; ++s) {
        if (cache.row[s] == r) {
          cache.lru = 1 - s;
          return cache.data[s].data();
        }
      }
      const int s = cache.lru;
      cache.lru = 1 - s;
      cache.row[s] = r;
      float* d = cache.data[s].data();
      if (channelsLast) gatherRow(plane + r * iw, tx.i0.data(), tx.i1.data(), ow, d, d + ow);
      else fk.horizontal(plane + r * iw, tx.i0.data(), tx.i1.data(), tx.l0.data(), tx.l1.data(), ow, d);
      return d;
    };
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t p = t / chunksPerPlane, chunk = t % chunksPerPlane;
      const int64_t y0 = chunk * rowsPerChunk, y1 = std::min(oh, y0 + rowsPerChunk);
      const float* plane = in + p * ih * iw;
      cache.row[0] = cache.row[1] = -1;
      for (int64_t y = y0; y < y1; ++y) {
        float* o = out + (p * oh + y) * ow;
        const float* r0 = rowOf(plane, ty.i0[y]);
        const float* r1 = rowOf(plane, ty.i1[y]);
        if (channelsLast)
          blendChannelsLast(r0, r0 + ow, r1, r1 + ow, tx.l0.data(), tx.l1.data(), ty.l0[y], ty.l1[y], ow, o);
        else
          fk.vertical(r0, r1, ty.l0[y], ty.l1[y], ow, o);
      }
    }
  }
}

}  // namespace anomalens
