// PaDiM's embedding gather and per-position Gaussian, see anomalens/methods/padim_kernels.h.
#include "anomalens/methods/padim_kernels.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "anomalens/core/error.h"

extern "C" {
void spotrf_(const char* uplo, const int* n, float* a, const int* lda, int* info);
void spotri_(const char* uplo, const int* n, float* a, const int* lda, int* info);
}

namespace anomalens {

void padimEmbed(const std::vector<const float*>& layers, int64_t n, const std::vector<int64_t>& c,
                const std::vector<int64_t>& h, const std::vector<int64_t>& w, const std::vector<int64_t>& channels,
                float* out) {
  const size_t L = layers.size();
  require(L >= 1 && c.size() == L && h.size() == L && w.size() == L, "padimEmbed: inconsistent layer lists");
  int64_t total = 0;
  for (int64_t cl : c) total += cl;
  const int64_t h0 = h[0], w0 = w[0], d = static_cast<int64_t>(channels.size());
  // Resolve each selected channel to (layer, channel).
  std::vector<size_t> layerOf(d);
  std::vector<int64_t> chanOf(d);
  for (int64_t j = 0; j < d; ++j) {
    int64_t ch = channels[j];
    require(ch >= 0 && ch < total, "padimEmbed: channel index " + std::to_string(ch) + " outside [0, " + std::to_string(total) + ")");
    size_t l = 0;
    while (ch >= c[l]) ch -= c[l++];
    layerOf[j] = l;
    chanOf[j] = ch;
  }
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      const size_t l = layerOf[j];
      const float* plane = layers[l] + ((i * c[l] + chanOf[j]) * h[l]) * w[l];
      float* o = out + ((i * d + j) * h0) * w0;
      for (int64_t y = 0; y < h0; ++y) {
        const int64_t sy = std::min(h[l] - 1, (y * h[l]) / h0);
        for (int64_t x = 0; x < w0; ++x) o[y * w0 + x] = plane[sy * w[l] + std::min(w[l] - 1, (x * w[l]) / w0)];
      }
    }
}

void padimFit(const float* emb, int64_t n, int64_t d, int64_t p, float reg, float* mean, float* precision) {
  require(n >= 2, "PaDiM needs at least 2 training images to estimate a covariance, received " + std::to_string(n));
  std::string failure;
#pragma omp parallel
  {
    std::vector<float> x(static_cast<size_t>(n * d));
    std::vector<double> mu(d);
#pragma omp for schedule(dynamic)
    for (int64_t pos = 0; pos < p; ++pos) {
      // Gather the n vectors of this position and centre them (mean in float64).
      std::fill(mu.begin(), mu.end(), 0.0);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < d; ++j) {
          float v = emb[(i * d + j) * p + pos];
          x[i * d + j] = v;
          mu[j] += v;
        }
      float* m = mean + pos * d;
      for (int64_t j = 0; j < d; ++j) m[j] = static_cast<float>(mu[j] / static_cast<double>(n));
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < d; ++j) x[i * d + j] = static_cast<float>(x[i * d + j] - mu[j] / static_cast<double>(n));
      float* s = precision + pos * d * d;
      // Upper triangle (row-major) of X^T X / (n - 1) + reg I.
      cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(d), static_cast<int>(n),
                  1.f / static_cast<float>(n - 1), x.data(), static_cast<int>(d), 0.f, s, static_cast<int>(d));
      for (int64_t j = 0; j < d; ++j) s[j * d + j] += reg;
      // Row-major upper == column-major lower for LAPACK.
      int dn = static_cast<int>(d), info = 0;
      spotrf_("L", &dn, s, &dn, &info);
      if (info == 0) spotri_("L", &dn, s, &dn, &info);
      if (info != 0) {
#pragma omp critical
        failure = "the covariance at position " + std::to_string(pos) + " is not positive definite (LAPACK info " +
                  std::to_string(info) + "); increase the regularisation";
      }
      for (int64_t r = 0; r < d; ++r)  // mirror the upper triangle (row-major) into the lower
        for (int64_t q = r + 1; q < d; ++q) s[q * d + r] = s[r * d + q];
    }
  }
  if (!failure.empty()) throw Error(ErrorCode::InvalidArgument, failure);
}

void padimScore(const float* emb, int64_t n, int64_t d, int64_t p, const float* mean, const float* precision, float* out) {
#pragma omp parallel
  {
    std::vector<float> x(static_cast<size_t>(n * d)), y(static_cast<size_t>(n * d));
#pragma omp for schedule(dynamic)
    for (int64_t pos = 0; pos < p; ++pos) {
      const float* m = mean + pos * d;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < d; ++j) x[i * d + j] = emb[(i * d + j) * p + pos] - m[j];
      cblas_ssymm(CblasRowMajor, CblasRight, CblasUpper, static_cast<int>(n), static_cast<int>(d), 1.f,
                  precision + pos * d * d, static_cast<int>(d), x.data(), static_cast<int>(d), 0.f, y.data(),
                  static_cast<int>(d));
      for (int64_t i = 0; i < n; ++i) {
        double s = 0;
        for (int64_t j = 0; j < d; ++j) s += static_cast<double>(x[i * d + j]) * y[i * d + j];
        out[i * p + pos] = static_cast<float>(std::sqrt(std::max(0.0, s)));
      }
    }
  }
}

}  // namespace anomalens
