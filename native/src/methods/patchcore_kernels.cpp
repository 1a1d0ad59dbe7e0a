// PatchCore's locally aware patch features, see anomalens/methods/patchcore_kernels.h.
#include "anomalens/methods/patchcore_kernels.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "anomalens/core/error.h"

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

}  // namespace anomalens
