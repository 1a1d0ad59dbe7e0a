// Per-pixel distance maps between two feature maps [n, c, h, w]: 1 - cosine similarity (as
// torch 1.13's F.cosine_similarity, bit for bit) and the Euclidean distance.
//
// torch 1.13 computes cosine_similarity(a, b, dim=1, eps) as
//   na = max(sqrt(sum_c a^2), eps), nb likewise;  sum_c (a / na) * (b / nb)
// with every product rounded to float and every sum over c done by its CPU sum kernel
// (aten/src/ATen/native/cpu/SumKernel.cpp), whose order depends on where a pixel sits in its
// map. With the pixel index p in [0, h * w) of its image:
//   - h * w >= 8: pixels below 32 * floor(hw / 32) are summed by multi_row_sum (a cascade:
//     runs of 16 channels into level 0, level j flushed into level j + 1 every 16^j runs),
//     the rest by row_sum (four interleaved cascades over channel groups of four, the leftover
//     channels added to the first, then the four added in order);
//   - 1 < h * w < 8: pixels below 4 * floor(hw / 4) by multi_row_sum, the rest by row_sum;
//   - h * w == 1: row_sum, or for c >= 8 its 8-lane vector form plus a sequential tail.
// Reproducing that costs nothing (the order is fixed per tile of pixels) and makes the maps
// identical to the Python reference code's. It holds for torch's AVX2 kernels on one thread;
// with more threads torch splits the pixels differently and its last bits change.
#include <omp.h>

// Every product is rounded before it is added, as in the reference code: no FMA contraction,
// which AVX-512F (one of the clones below) would otherwise allow.
#pragma GCC optimize("fp-contract=off")

#include <algorithm>
#include <cmath>
#include <vector>

#include "anomalens/maps/distance.h"

#define ANOMALENS_INLINE inline __attribute__((always_inline))

namespace anomalens {
namespace {

constexpr int kLevels = 4;
// Pixels per task. Channel rows are h * w apart, so a task reads c short runs per input; long
// runs (4 KiB) keep the hardware prefetchers useful, and the cosine's second pass over the same
// c * kTile values (2 MiB for c = 256) is still served from cache. A multiple of 32, so tiles
// never straddle two summation orders.
constexpr int64_t kTile = 1024;
constexpr int64_t kL2Tile = 4096;  // one pass only: longer runs, nothing to keep in cache

// torch's c10::utils::CeilLog2.
ANOMALENS_INLINE int64_t ceilLog2(int64_t x) {
  if (x <= 2) return 1;
  return 64 - __builtin_clzll(static_cast<unsigned long long>(x - 1));
}

// Sums rows [0, size) in multi_row_sum's order into out[0, width); add(i, acc) adds row i's
// values to acc[0, width). levels: kLevels * width floats of scratch.
template <class Add>
ANOMALENS_INLINE void cascadeSum(int64_t size, int64_t width, const Add& add, float* levels, float* out) {
  const int64_t power = std::max<int64_t>(4, ceilLog2(size) / kLevels);
  const int64_t step = int64_t(1) << power, mask = step - 1;
  std::fill(levels, levels + kLevels * width, 0.0f);
  int64_t i = 0;
  while (i + step <= size) {
    for (int64_t j = 0; j < step; ++j, ++i) add(i, levels);
    for (int j = 1; j < kLevels; ++j) {
      float* hi = levels + j * width;
      float* lo = hi - width;
      for (int64_t p = 0; p < width; ++p) {
        hi[p] += lo[p];
        lo[p] = 0.0f;
      }
      if (i & (mask << (j * power))) break;
    }
  }
  for (; i < size; ++i) add(i, levels);
  for (int j = 1; j < kLevels; ++j)
    for (int64_t p = 0; p < width; ++p) levels[p] += levels[j * width + p];
  std::copy(levels, levels + width, out);
}

// row_sum's order: four interleaved cascades over size / 4 groups, the leftover rows added to
// the first, then the four added in order. scratch: (kLevels + 3) * width floats.
template <class Add>
ANOMALENS_INLINE void rowSum(int64_t size, int64_t width, const Add& add, float* scratch, float* out) {
  const int64_t groups = size / 4;
  float* levels = scratch;
  float* partial = scratch + kLevels * width;  // partials 1..3
  cascadeSum(groups, width, [&](int64_t i, float* acc) __attribute__((always_inline)) { add(4 * i, acc); }, levels, out);
  for (int k = 1; k < 4; ++k)
    cascadeSum(
        groups, width, [&](int64_t i, float* acc) __attribute__((always_inline)) { add(4 * i + k, acc); }, levels,
        partial + (k - 1) * width);
  for (int64_t i = 4 * groups; i < size; ++i) add(i, out);
  for (int k = 1; k < 4; ++k)
    for (int64_t p = 0; p < width; ++p) out[p] += partial[(k - 1) * width + p];
}

enum class Order { Cascade, RowSum };

// One tile of `lanes` pixels at offset p0 of image planes a, b (channel stride hw).
__attribute__((target_clones("avx512f", "avx2", "default")))
void cosineTile(const float* a, const float* b, int64_t c, int64_t hw, int64_t lanes, Order order, float eps,
                float* scratch, float* out) {
  float* norms = scratch;               // [2][lanes]: sum a^2, sum b^2, then the clamped norms
  float* dot = norms + 2 * lanes;       // [lanes]
  float* work = dot + lanes;            // reduction scratch
  auto squares = [&](int64_t ch, float* acc) __attribute__((always_inline)) {
    const float* ra = a + ch * hw;
    const float* rb = b + ch * hw;
    for (int64_t p = 0; p < lanes; ++p) {
      const float x = ra[p] * ra[p], y = rb[p] * rb[p];
      acc[p] += x;
      acc[lanes + p] += y;
    }
  };
  if (order == Order::Cascade) cascadeSum(c, 2 * lanes, squares, work, norms);
  else rowSum(c, 2 * lanes, squares, work, norms);
  for (int64_t p = 0; p < 2 * lanes; ++p) norms[p] = std::max(std::sqrt(norms[p]), eps);
  const float* na = norms;
  const float* nb = norms + lanes;
  auto products = [&](int64_t ch, float* acc) __attribute__((always_inline)) {
    const float* ra = a + ch * hw;
    const float* rb = b + ch * hw;
    for (int64_t p = 0; p < lanes; ++p) acc[p] += (ra[p] / na[p]) * (rb[p] / nb[p]);
  };
  if (order == Order::Cascade) cascadeSum(c, lanes, products, work, dot);
  else rowSum(c, lanes, products, work, dot);
  for (int64_t p = 0; p < lanes; ++p) out[p] = 1.0f - dot[p];
}

// A 1 x 1 map: h * w == 1, channels contiguous. torch's vectorized_inner_sum for c >= 8
// (8 lanes over channel v * 8 + l, each a row_sum, then the tail channels, then the lanes),
// row_sum otherwise.
float innerSum(int64_t c, const std::vector<float>& v, float* scratch) {
  if (c < 8) {
    float s;
    rowSum(c, 1, [&](int64_t i, float* acc) { acc[0] += v[i]; }, scratch, &s);
    return s;
  }
  const int64_t rows = c / 8;
  float lanes[8];
  rowSum(rows, 8, [&](int64_t i, float* acc) {
    for (int l = 0; l < 8; ++l) acc[l] += v[8 * i + l];
  }, scratch, lanes);
  float s = 0.0f;
  for (int64_t k = 8 * rows; k < c; ++k) s += v[k];
  for (int l = 0; l < 8; ++l) s += lanes[l];
  return s;
}

float cosineDistanceOnePixel(const float* a, const float* b, int64_t c, float eps, float* scratch) {
  std::vector<float> v(static_cast<size_t>(c));
  for (int64_t k = 0; k < c; ++k) v[k] = a[k] * a[k];
  const float na = std::max(std::sqrt(innerSum(c, v, scratch)), eps);
  for (int64_t k = 0; k < c; ++k) v[k] = b[k] * b[k];
  const float nb = std::max(std::sqrt(innerSum(c, v, scratch)), eps);
  for (int64_t k = 0; k < c; ++k) v[k] = (a[k] / na) * (b[k] / nb);
  return 1.0f - innerSum(c, v, scratch);
}

// sqrt(sum_c (a - b)^2) or its square, accumulated in float64 in channel order.
__attribute__((target_clones("avx512f", "avx2", "default")))
void l2Tile(const float* a, const float* b, int64_t c, int64_t hw, int64_t lanes, bool squared, double* acc,
            float* out) {
  std::fill(acc, acc + lanes, 0.0);
  for (int64_t ch = 0; ch < c; ++ch) {
    const float* ra = a + ch * hw;
    const float* rb = b + ch * hw;
    for (int64_t p = 0; p < lanes; ++p) {
      const double d = static_cast<double>(ra[p]) - static_cast<double>(rb[p]);
      acc[p] += d * d;
    }
  }
  for (int64_t p = 0; p < lanes; ++p) out[p] = static_cast<float>(squared ? acc[p] : std::sqrt(acc[p]));
}

// Tiles of one image's pixels: [begin, begin + lanes) with the order torch uses there.
struct Tile {
  int64_t begin, lanes;
  Order order;
};

std::vector<Tile> tilesOf(int64_t hw) {
  std::vector<Tile> tiles;
  const int64_t cascadeEnd = hw >= 8 ? 32 * (hw / 32) : 4 * (hw / 4);
  for (int64_t p = 0; p < cascadeEnd; p += kTile) tiles.push_back({p, std::min(kTile, cascadeEnd - p), Order::Cascade});
  if (cascadeEnd < hw) tiles.push_back({cascadeEnd, hw - cascadeEnd, Order::RowSum});
  return tiles;
}

}  // namespace

void cosineDistanceMap(const float* a, const float* b, int64_t n, int64_t c, int64_t h, int64_t w, float eps,
                       float* out) {
  const int64_t hw = h * w;
  // Scratch per task: norms 2L + dot L + reduction (kLevels + 3) * 2L, L = kTile (or 8 lanes).
  const size_t scratchSize = static_cast<size_t>(3 * kTile + (kLevels + 3) * 2 * kTile);
  if (hw == 1) {
#pragma omp parallel
    {
      std::vector<float> scratch(scratchSize);
#pragma omp for schedule(static)
      for (int64_t i = 0; i < n; ++i) out[i] = cosineDistanceOnePixel(a + i * c, b + i * c, c, eps, scratch.data());
    }
    return;
  }
  const std::vector<Tile> tiles = tilesOf(hw);
  const int64_t perImage = static_cast<int64_t>(tiles.size());
#pragma omp parallel
  {
    std::vector<float> scratch(scratchSize);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n * perImage; ++t) {
      const int64_t i = t / perImage;
      const Tile& tile = tiles[t % perImage];
      const int64_t offset = i * c * hw + tile.begin;
      cosineTile(a + offset, b + offset, c, hw, tile.lanes, tile.order, eps, scratch.data(), out + i * hw + tile.begin);
    }
  }
}

void l2DistanceMap(const float* a, const float* b, int64_t n, int64_t c, int64_t h, int64_t w, bool squared,
                   float* out) {
  const int64_t hw = h * w;
  const int64_t perImage = (hw + kL2Tile - 1) / kL2Tile;
#pragma omp parallel
  {
    std::vector<double> acc(kL2Tile);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n * perImage; ++t) {
      const int64_t i = t / perImage, p0 = (t % perImage) * kL2Tile;
      const int64_t offset = i * c * hw + p0;
      l2Tile(a + offset, b + offset, c, hw, std::min(kL2Tile, hw - p0), squared, acc.data(), out + i * hw + p0);
    }
  }
}

}  // namespace anomalens
