// Gaussian blur as scipy.ndimage.gaussian_filter(x, sigma, mode='reflect', truncate) on 2-D
// maps, fused per output row: the axis-0 pass of one row (float64) lands in a reflect-padded
// row buffer and the axis-1 pass reads it at once, so no intermediate map is stored and the
// work splits into independent runs of rows. Both passes use scipy's symmetric form
// w0 * x[i] + sum_j wj * (x[i - j] + x[i + j]), in float64, and the result is rounded once.
// Input rows are converted to float64 once, into a ring of the rows around the current ones,
// rather than once per tap.
#include <omp.h>

// Every product is rounded before it is added, as in the reference code: no FMA contraction,
// which AVX-512F (one of the clones below) would otherwise allow.
#pragma GCC optimize("fp-contract=off")
// The vector helpers below are always inlined, so the AVX-512 calling-convention note is moot.
#pragma GCC diagnostic ignored "-Wpsabi"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "anomalens/core/error.h"
#include "anomalens/maps/blur.h"

namespace anomalens {
namespace {

// scipy's 'reflect' (half-sample symmetric), periodic with period 2n: any integer index maps
// into [0, n), however far outside it lies.
inline int64_t reflectIndex(int64_t i, int64_t n) {
  const int64_t period = 2 * n;
  int64_t m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - 1 - m;
}

// Both passes keep a block of 32 outputs in registers (four vectors of eight doubles; GCC's
// vector extensions, lowered to whatever each clone has) across all taps, instead of reading
// and writing a row of sums once per tap. Every output still sums its taps in scipy's order.
typedef double v8d __attribute__((vector_size(64)));
constexpr int kVectors = 4;
constexpr int64_t kBlock = 8 * kVectors;
constexpr int64_t kStrip = 2 * kBlock;  // columns per axis-0 strip
constexpr int64_t kGroup = 8;           // output rows per axis-0 group

inline __attribute__((always_inline)) v8d load8(const double* p) {
  v8d d;
  std::memcpy(&d, p, sizeof d);
  return d;
}

// Axis 0 at one row, columns [begin, end): acc[x] = k[0] * row[x] + sum_j k[j] * (up[j][x] +
// down[j][x]), j from r down to 1 as scipy's correlate1d; up[j] / down[j] are the (reflected)
// rows j above / below.
__attribute__((target_clones("avx512f", "avx2", "default")))
void verticalRow(const double* row, const double* const* up, const double* const* down, int64_t begin, int64_t end,
                 const double* k, int64_t r, double* acc) {
  int64_t x0 = begin;
  for (; x0 + kBlock <= end; x0 += kBlock) {
    v8d a[kVectors];
    for (int v = 0; v < kVectors; ++v) a[v] = k[0] * load8(row + x0 + 8 * v);
    for (int64_t j = r; j >= 1; --j) {
      const double* u = up[j] + x0;
      const double* d = down[j] + x0;
      const double kj = k[j];
      for (int v = 0; v < kVectors; ++v) a[v] += (load8(u + 8 * v) + load8(d + 8 * v)) * kj;
    }
    for (int v = 0; v < kVectors; ++v) std::memcpy(acc + x0 + 8 * v, &a[v], sizeof a[v]);
  }
  for (int64_t x = x0; x < end; ++x) {
    double a = k[0] * row[x];
    for (int64_t j = r; j >= 1; --j) a += (up[j][x] + down[j][x]) * k[j];
    acc[x] = a;
  }
}

// Axis 1: out[x] = k[0] * e[x] + sum_j k[j] * (e[x - j] + e[x + j]), e = ext + r (padded).
__attribute__((target_clones("avx512f", "avx2", "default")))
void horizontalRow(const double* ext, int64_t w, const double* k, int64_t r, float* out) {
  const double* e = ext + r;
  int64_t x0 = 0;
  for (; x0 + kBlock <= w; x0 += kBlock) {
    v8d a[kVectors];
    for (int v = 0; v < kVectors; ++v) a[v] = k[0] * load8(e + x0 + 8 * v);
    for (int64_t j = r; j >= 1; --j) {
      const double kj = k[j];
      for (int v = 0; v < kVectors; ++v) a[v] += (load8(e + x0 + 8 * v - j) + load8(e + x0 + 8 * v + j)) * kj;
    }
    for (int v = 0; v < kVectors; ++v)
      for (int l = 0; l < 8; ++l) out[x0 + 8 * v + l] = static_cast<float>(a[v][l]);
  }
  for (int64_t x = x0; x < w; ++x) {
    double a = k[0] * e[x];
    for (int64_t j = r; j >= 1; --j) a += (e[x - j] + e[x + j]) * k[j];
    out[x] = static_cast<float>(a);
  }
}

// numpy's pairwise summation (what phi_x.sum() does), so the kernel has scipy's exact bits.
double numpySum(const double* v, int64_t n) {
  if (n < 8) {
    double s = 0;  // numpy starts from -0.0; the same for these positive values
    for (int64_t i = 0; i < n; ++i) s += v[i];
    return s;
  }
  if (n <= 128) {
    double r[8];
    for (int i = 0; i < 8; ++i) r[i] = v[i];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += v[i + j];
    double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) s += v[i];
    return s;
  }
  int64_t half = n / 2;
  half -= half % 8;
  return numpySum(v, half) + numpySum(v + half, n - half);
}

}  // namespace

int64_t gaussianRadius(double sigma, double truncate) { return static_cast<int64_t>(truncate * sigma + 0.5); }

std::vector<double> gaussianKernel1d(double sigma, int64_t radius) {
  // As scipy's _gaussian_kernel1d: exp(-0.5 / sigma^2 * x^2), normalised by its sum.
  const double sigma2 = sigma * sigma;
  std::vector<double> k(static_cast<size_t>(2 * radius + 1));
  for (int64_t x = -radius; x <= radius; ++x) k[x + radius] = std::exp(-0.5 / sigma2 * static_cast<double>(x * x));
  const double sum = numpySum(k.data(), static_cast<int64_t>(k.size()));
  for (double& v : k) v /= sum;
  return k;
}

void gaussianBlur(const float* in, int64_t n, int64_t h, int64_t w, double sigma, double truncate, float* out) {
  require(sigma > 0 && std::isfinite(sigma), "gaussianBlur: sigma must be a finite number > 0");
  require(truncate >= 0 && std::isfinite(truncate), "gaussianBlur: truncate must be a finite number >= 0");
  const int64_t r = gaussianRadius(sigma, truncate);
  // Scratch grows with the radius (about 150 bytes per unit per thread): keep it bounded.
  require(r <= (int64_t(1) << 16), "gaussianBlur: the kernel radius int(truncate * sigma + 0.5) = " +
                                       std::to_string(r) + " exceeds 65536");
  const std::vector<double> full = gaussianKernel1d(sigma, r);
  const double* k = full.data() + r;  // k[j], j = 0..r (symmetric)

  // In place (or any overlap): blur from a copy, since row y reads rows y - r .. y + r.
  const size_t count = static_cast<size_t>(n * h * w);
  std::vector<float> copy;
  if (in < out + count && out < in + count) {
    copy.resize(count);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) std::memcpy(copy.data() + i * h * w, in + i * h * w, sizeof(float) * h * w);
    in = copy.data();
  }

  const int64_t wanted = 4 * static_cast<int64_t>(std::max(1, omp_get_max_threads()));
  const int64_t chunksPerMap = std::min(h, std::max<int64_t>(1, (wanted + n - 1) / n));
  const int64_t rowsPerChunk = (h + chunksPerMap - 1) / chunksPerMap;
  const int64_t tasks = n * chunksPerMap;
#pragma omp parallel
  {
    // Output rows go in groups of kGroup: the axis-0 pass of a group runs strip by strip of
    // kStrip columns, so the 2r + kGroup input rows of a strip stay in L1 for the whole group.
    // ring[slot(L)]: logical input row L (reflected into the map) as float64, converted once.
    // When the ring would hold the map's h rows or more (a kernel wider than the map), it is
    // the whole map instead, indexed through the reflection.
    const int64_t ringRows = 2 * r + kGroup;
    const bool wholeMap = ringRows >= h;
    std::vector<double> ring(static_cast<size_t>((wholeMap ? h : ringRows) * w));
    auto slot = [&](int64_t L) {
      return ring.data() + (wholeMap ? reflectIndex(L, h) : ((L % ringRows) + ringRows) % ringRows) * w;
    };
    // The group's axis-0 results, each row padded by r on both sides for the axis-1 pass.
    const int64_t padded = w + 2 * r;
    std::vector<double> rows(static_cast<size_t>(kGroup * padded));
    std::vector<const double*> up(static_cast<size_t>(kGroup * (r + 1))), down(up.size());
    std::vector<int64_t> pad(static_cast<size_t>(2 * r));  // reflect-pad sources, shared by every row
    for (int64_t i = 0; i < r; ++i) {
      pad[i] = reflectIndex(i - r, w);
      pad[r + i] = reflectIndex(w + i, w);
    }
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t m = t / chunksPerMap, chunk = t % chunksPerMap;
      const int64_t y0 = chunk * rowsPerChunk, y1 = std::min(h, y0 + rowsPerChunk);
      const float* map = in + m * h * w;
      auto convert = [&](int64_t L) {
        const float* src = map + reflectIndex(L, h) * w;
        double* dst = slot(L);
        for (int64_t x = 0; x < w; ++x) dst[x] = src[x];
      };
      auto load = [&](int64_t L) {
        if (!wholeMap) convert(L);
      };
      if (wholeMap) {
        for (int64_t L = 0; L < h; ++L) convert(L);
      } else {
        for (int64_t L = y0 - r; L < y0 + r; ++L) convert(L);
      }
      for (int64_t g0 = y0; g0 < y1; g0 += kGroup) {
        const int64_t count = std::min(kGroup, y1 - g0);
        for (int64_t g = 0; g < count; ++g) {
          load(g0 + g + r);
          for (int64_t j = 1; j <= r; ++j) {
            up[g * (r + 1) + j] = slot(g0 + g - j);
            down[g * (r + 1) + j] = slot(g0 + g + j);
          }
        }
        for (int64_t x = 0; x < w; x += kStrip)
          for (int64_t g = 0; g < count; ++g)
            verticalRow(slot(g0 + g), &up[g * (r + 1)], &down[g * (r + 1)], x, std::min(w, x + kStrip), k, r,
                        rows.data() + g * padded + r);
        for (int64_t g = 0; g < count; ++g) {
          double* e = rows.data() + g * padded;
          double* mid = e + r;
          for (int64_t i = 0; i < r; ++i) {
            e[i] = mid[pad[i]];
            mid[w + i] = mid[pad[r + i]];
          }
          horizontalRow(e, w, k, r, out + (m * h + g0 + g) * w);
        }
      }
    }
  }
}

}  // namespace anomalens
