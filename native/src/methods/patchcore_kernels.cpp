#include "anomalens/methods/patchcore_kernels.h"

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
namespace {

// Adaptive average pooling bins of PyTorch: [floor(i * len / out), ceil((i + 1) * len / out)).
struct Bins {
  std::vector<int64_t> start, end;
  Bins(int64_t len, int64_t out) : start(out), end(out) {
    for (int64_t i = 0; i < out; ++i) {
      start[i] = (i * len) / out;
      end[i] = ((i + 1) * len + out - 1) / out;
    }
  }
};

// Pools the 3x3-neighbourhood vectors of one layer to `dim` values per position.
// out: [n, h, w, dim]
void poolPatches(const float* f, int64_t n, int64_t c, int64_t h, int64_t w, int64_t dim, float* out) {
  const int64_t len = c * 9;
  Bins bins(len, dim);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y < h; ++y) {
      std::vector<float> vec(len);
      for (int64_t x = 0; x < w; ++x) {
        // The zero-padded neighbourhood, in unfold's order (c, ky, kx).
        for (int64_t ch = 0; ch < c; ++ch) {
          const float* plane = f + ((i * c + ch) * h) * w;
          for (int64_t ky = 0; ky < 3; ++ky) {
            const int64_t yy = y + ky - 1;
            for (int64_t kx = 0; kx < 3; ++kx) {
              const int64_t xx = x + kx - 1;
              vec[ch * 9 + ky * 3 + kx] = (yy >= 0 && yy < h && xx >= 0 && xx < w) ? plane[yy * w + xx] : 0.f;
            }
          }
        }
        float* o = out + ((i * h + y) * w + x) * dim;
        for (int64_t b = 0; b < dim; ++b) {
          float s = 0;
          for (int64_t j = bins.start[b]; j < bins.end[b]; ++j) s += vec[j];
          o[b] = s / static_cast<float>(bins.end[b] - bins.start[b]);
        }
      }
    }
}

// PyTorch's bilinear source index (align_corners false), float arithmetic as its CPU kernel.
void linearIndex(int64_t in, int64_t out, std::vector<int64_t>& i0, std::vector<int64_t>& i1, std::vector<float>& l1) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  i0.resize(out);
  i1.resize(out);
  l1.resize(out);
  for (int64_t d = 0; d < out; ++d) {
    float src = scale * (static_cast<float>(d) + 0.5f) - 0.5f;
    if (src < 0) src = 0;
    int64_t k = static_cast<int64_t>(src);
    i0[d] = k;
    i1[d] = k + (k < in - 1 ? 1 : 0);
    l1[d] = src - static_cast<float>(k);
  }
}

}  // namespace

void patchcoreEmbed(const float* a, int64_t n, int64_t ca, int64_t ha, int64_t wa, const float* b, int64_t cb,
                    int64_t hb, int64_t wb, int64_t layerDim, int64_t outDim, float* out) {
  require(n >= 1 && ca >= 1 && cb >= 1 && ha >= 1 && wa >= 1 && hb >= 1 && wb >= 1, "patchcoreEmbed: empty input");
  require(layerDim >= 1 && outDim >= 1 && layerDim <= ca * 9 && layerDim <= cb * 9,
          "patchcoreEmbed: layerDim must be in [1, 9 * channels], received " + std::to_string(layerDim));
  require(outDim <= 2 * layerDim, "patchcoreEmbed: outDim must be <= 2 * layerDim");
  std::vector<float> pa(static_cast<size_t>(n * ha * wa * layerDim)), pb(static_cast<size_t>(n * hb * wb * layerDim));
  poolPatches(a, n, ca, ha, wa, layerDim, pa.data());
  poolPatches(b, n, cb, hb, wb, layerDim, pb.data());
  std::vector<int64_t> y0, y1, x0, x1;
  std::vector<float> ly, lx;
  linearIndex(hb, ha, y0, y1, ly);
  linearIndex(wb, wa, x0, x1, lx);
  Bins bins(2 * layerDim, outDim);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y < ha; ++y) {
      std::vector<float> cat(2 * layerDim);
      for (int64_t x = 0; x < wa; ++x) {
        const float* va = pa.data() + ((i * ha + y) * wa + x) * layerDim;
        std::copy(va, va + layerDim, cat.begin());
        const float wy1 = ly[y], wy0 = 1.f - wy1, wx1 = lx[x], wx0 = 1.f - wx1;
        const float* p00 = pb.data() + ((i * hb + y0[y]) * wb + x0[x]) * layerDim;
        const float* p01 = pb.data() + ((i * hb + y0[y]) * wb + x1[x]) * layerDim;
        const float* p10 = pb.data() + ((i * hb + y1[y]) * wb + x0[x]) * layerDim;
        const float* p11 = pb.data() + ((i * hb + y1[y]) * wb + x1[x]) * layerDim;
        for (int64_t k = 0; k < layerDim; ++k)
          cat[layerDim + k] = wy0 * (wx0 * p00[k] + wx1 * p01[k]) + wy1 * (wx0 * p10[k] + wx1 * p11[k]);
        float* o = out + ((i * ha + y) * wa + x) * outDim;
        for (int64_t bidx = 0; bidx < outDim; ++bidx) {
          float s = 0;
          for (int64_t j = bins.start[bidx]; j < bins.end[bidx]; ++j) s += cat[j];
          o[bidx] = s / static_cast<float>(bins.end[bidx] - bins.start[bidx]);
        }
      }
    }
}

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
