// Gaussian blur as scipy.ndimage.gaussian_filter(x, sigma, mode='reflect', truncate) on 2-D
// maps, fused per output row: the axis-0 pass of one row (float64) lands in a reflect-padded
// row buffer and the axis-1 pass reads it at once, so no intermediate map is stored and the
// work splits into independent runs of rows. Both passes use scipy's symmetric form
// w0 * x[i] + sum_j wj * (x[i - j] + x[i + j]), in float64, and the result is rounded once.
#include <omp.h>

// Every product is rounded before it is added, as in the reference code: no FMA contraction,
// which AVX-512F (one of the clones below) would otherwise allow.
#pragma GCC optimize("fp-contract=off")

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "anomalens/error.h"
#include "anomalens/maps.h"

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

// Axis 0 at row y: acc[x] = k[0] * in[y][x] + sum_j k[j] * (in[y - j][x] + in[y + j][x]), j from r
// down to 1 as scipy's correlate1d.
__attribute__((target_clones("avx512f", "avx2", "default")))
void verticalRow(const float* map, int64_t h, int64_t w, int64_t y, const double* k, int64_t r, double* acc) {
  const float* row = map + y * w;
  for (int64_t x = 0; x < w; ++x) acc[x] = k[0] * static_cast<double>(row[x]);
  for (int64_t j = r; j >= 1; --j) {
    const float* up = map + reflectIndex(y - j, h) * w;
    const float* down = map + reflectIndex(y + j, h) * w;
    const double kj = k[j];
    for (int64_t x = 0; x < w; ++x) acc[x] += (static_cast<double>(up[x]) + static_cast<double>(down[x])) * kj;
  }
}

// Axis 1: out[x] = k[0] * e[x] + sum_j k[j] * (e[x - j] + e[x + j]), e = ext + r (padded).
__attribute__((target_clones("avx512f", "avx2", "default")))
void horizontalRow(const double* ext, int64_t w, const double* k, int64_t r, double* acc, float* out) {
  const double* e = ext + r;
  for (int64_t x = 0; x < w; ++x) acc[x] = k[0] * e[x];
  for (int64_t j = r; j >= 1; --j) {
    const double kj = k[j];
    for (int64_t x = 0; x < w; ++x) acc[x] += (e[x - j] + e[x + j]) * kj;
  }
  for (int64_t x = 0; x < w; ++x) out[x] = static_cast<float>(acc[x]);
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
  require(r <= (int64_t(1) << 20), "gaussianBlur: the kernel radius int(truncate * sigma + 0.5) = " +
                                       std::to_string(r) + " exceeds 1048576");
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
    std::vector<double> ext(static_cast<size_t>(w + 2 * r)), acc(static_cast<size_t>(w));
    // Reflect-pad positions of the row buffer, shared by every row.
    std::vector<int64_t> pad(static_cast<size_t>(2 * r));
    for (int64_t i = 0; i < r; ++i) {
      pad[i] = reflectIndex(i - r, w);
      pad[r + i] = reflectIndex(w + i, w);
    }
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t m = t / chunksPerMap, chunk = t % chunksPerMap;
      const int64_t y0 = chunk * rowsPerChunk, y1 = std::min(h, y0 + rowsPerChunk);
      const float* map = in + m * h * w;
      for (int64_t y = y0; y < y1; ++y) {
        double* mid = ext.data() + r;
        verticalRow(map, h, w, y, k, r, mid);
        for (int64_t i = 0; i < r; ++i) {
          ext[i] = mid[pad[i]];
          mid[w + i] = mid[pad[r + i]];
        }
        horizontalRow(ext.data(), w, k, r, acc.data(), out + (m * h + y) * w);
      }
    }
  }
}

}  // namespace anomalens
