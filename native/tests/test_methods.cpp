// methods: PatchCore's locally aware patch features and PaDiM's embedding, Gaussian fit and
// Mahalanobis score against naive loops in float64 following the original code's order of
// operations (unfold, resize, then pool; mean, covariance, then Gauss-Jordan inverse).
#include <cmath>

#include "anomalens/core/error.h"
#include "anomalens/methods/padim_kernels.h"
#include "anomalens/methods/patchcore_kernels.h"
#include "harness.h"

namespace anomalens::tests {
namespace {

// torch's adaptive_avg_pool1d over v[0, len) to `out` bins.
std::vector<double> adaptivePool(const std::vector<double>& v, int64_t out) {
  const int64_t len = static_cast<int64_t>(v.size());
  std::vector<double> r(static_cast<size_t>(out));
  for (int64_t i = 0; i < out; ++i) {
    const int64_t a = i * len / out, b = ((i + 1) * len + out - 1) / out;
    double s = 0;
    for (int64_t j = a; j < b; ++j) s += v[j];
    r[i] = s / static_cast<double>(b - a);
  }
  return r;
}

// The 3x3 neighbourhood (zero padded) of (y, x), channel-major: c * 9 values.
std::vector<double> unfold(const float* f, int64_t c, int64_t h, int64_t w, int64_t y, int64_t x) {
  std::vector<double> v;
  for (int64_t ci = 0; ci < c; ++ci)
    for (int64_t dy = -1; dy <= 1; ++dy)
      for (int64_t dx = -1; dx <= 1; ++dx) {
        const int64_t sy = y + dy, sx = x + dx;
        v.push_back(sy >= 0 && sy < h && sx >= 0 && sx < w ? f[(ci * h + sy) * w + sx] : 0.0);
      }
  return v;
}

void bilinearSource(int64_t in, int64_t out, int64_t dst, int64_t& i0, int64_t& i1, double& l1) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const double src = std::max(0.0, static_cast<double>(scale) * (static_cast<double>(dst) + 0.5) - 0.5);
  i0 = std::min(static_cast<int64_t>(src), in - 1);
  i1 = std::min(i0 + 1, in - 1);
  l1 = std::min(1.0, src - static_cast<double>(i0));
}

}  // namespace

TEST(methods_patchcore_embed_vs_naive) {
  Rng rng(61);
  const int64_t n = 2, ca = 5, ha = 13, wa = 9, cb = 7, hb = 7, wb = 5, layerDim = 11, outDim = 13;
  std::vector<float> a = rng.floats(static_cast<size_t>(n * ca * ha * wa)), b = rng.floats(static_cast<size_t>(n * cb * hb * wb));
  std::vector<float> out(static_cast<size_t>(n * ha * wa * outDim));
  patchcoreEmbed(a.data(), n, ca, ha, wa, b.data(), cb, hb, wb, layerDim, outDim, out.data());
  std::vector<double> ref;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y < ha; ++y)
      for (int64_t x = 0; x < wa; ++x) {
        std::vector<double> fa = adaptivePool(unfold(&a[i * ca * ha * wa], ca, ha, wa, y, x), layerDim);
        // Layer b: its unfolded maps resized to a's grid (bilinear, align_corners false), then pooled.
        int64_t y0, y1, x0, x1;
        double ly, lx;
        bilinearSource(hb, ha, y, y0, y1, ly);
        bilinearSource(wb, wa, x, x0, x1, lx);
        const float* fb = &b[i * cb * hb * wb];
        auto u00 = unfold(fb, cb, hb, wb, y0, x0), u01 = unfold(fb, cb, hb, wb, y0, x1);
        auto u10 = unfold(fb, cb, hb, wb, y1, x0), u11 = unfold(fb, cb, hb, wb, y1, x1);
        std::vector<double> ub(u00.size());
        for (size_t j = 0; j < ub.size(); ++j)
          ub[j] = (1 - ly) * ((1 - lx) * u00[j] + lx * u01[j]) + ly * ((1 - lx) * u10[j] + lx * u11[j]);
        std::vector<double> both = fa, pb = adaptivePool(ub, layerDim);
        both.insert(both.end(), pb.begin(), pb.end());
        for (double v : adaptivePool(both, outDim)) ref.push_back(v);
      }
  const double err = relError(out.data(), ref.data(), ref.size());
  CHECK_MSG(err < 1e-5, "relative error " << err);
}

TEST(methods_padim_embed_vs_naive) {
  Rng rng(62);
  const int64_t n = 2;
  const std::vector<int64_t> c = {3, 5, 2}, h = {12, 6, 3}, w = {9, 3, 1};
  std::vector<std::vector<float>> data;
  std::vector<const float*> layers;
  for (size_t l = 0; l < c.size(); ++l) {
    data.push_back(rng.floats(static_cast<size_t>(n * c[l] * h[l] * w[l])));
    layers.push_back(data.back().data());
  }
  const std::vector<int64_t> channels = {9, 0, 4, 2, 7};
  std::vector<float> out(static_cast<size_t>(n * channels.size() * h[0] * w[0]));
  padimEmbed(layers, n, c, h, w, channels, out.data());
  bool same = true;
  const int64_t cs = static_cast<int64_t>(channels.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < cs; ++j) {
      int64_t l = 0, ch = channels[j];
      while (ch >= c[l]) ch -= c[l++];
      for (int64_t y = 0; y < h[0]; ++y)
        for (int64_t x = 0; x < w[0]; ++x) {
          const float want = data[l][((i * c[l] + ch) * h[l] + y * h[l] / h[0]) * w[l] + x * w[l] / w[0]];
          same = same && out[((i * cs + j) * h[0] + y) * w[0] + x] == want;
        }
    }
  CHECK(same);
}

TEST(methods_padim_fit_and_score_vs_naive) {
  Rng rng(63);
  const int64_t n = 13, d = 5, p = 7;
  const float reg = 0.01f;
  std::vector<float> emb = rng.floats(static_cast<size_t>(n * d * p));
  std::vector<float> mean(static_cast<size_t>(p * d)), prec(static_cast<size_t>(p * d * d));
  padimFit(emb.data(), n, d, p, reg, mean.data(), prec.data());
  std::vector<double> refMean(mean.size()), refPrec(prec.size());
  for (int64_t q = 0; q < p; ++q) {
    auto at = [&](int64_t i, int64_t k) { return static_cast<double>(emb[(i * d + k) * p + q]); };
    std::vector<double> mu(static_cast<size_t>(d), 0.0);
    for (int64_t k = 0; k < d; ++k) {
      for (int64_t i = 0; i < n; ++i) mu[k] += at(i, k);
      mu[k] /= static_cast<double>(n);
      refMean[q * d + k] = mu[k];
    }
    // [cov + reg I | I] -> [I | inverse] by Gauss-Jordan with partial pivoting.
    std::vector<double> m(static_cast<size_t>(d * 2 * d), 0.0);
    for (int64_t r = 0; r < d; ++r) {
      for (int64_t s = 0; s < d; ++s) {
        double v = 0;
        for (int64_t i = 0; i < n; ++i) v += (at(i, r) - mu[r]) * (at(i, s) - mu[s]);
        m[r * 2 * d + s] = v / static_cast<double>(n - 1) + (r == s ? reg : 0.0);
      }
      m[r * 2 * d + d + r] = 1;
    }
    for (int64_t col = 0; col < d; ++col) {
      int64_t piv = col;
      for (int64_t r = col + 1; r < d; ++r)
        if (std::abs(m[r * 2 * d + col]) > std::abs(m[piv * 2 * d + col])) piv = r;
      for (int64_t s = 0; s < 2 * d; ++s) std::swap(m[col * 2 * d + s], m[piv * 2 * d + s]);
      const double diag = m[col * 2 * d + col];
      for (int64_t s = 0; s < 2 * d; ++s) m[col * 2 * d + s] /= diag;
      for (int64_t r = 0; r < d; ++r)
        if (r != col) {
          const double f = m[r * 2 * d + col];
          for (int64_t s = 0; s < 2 * d; ++s) m[r * 2 * d + s] -= f * m[col * 2 * d + s];
        }
    }
    for (int64_t r = 0; r < d; ++r)
      for (int64_t s = 0; s < d; ++s) refPrec[(q * d + r) * d + s] = m[r * 2 * d + d + s];
  }
  CHECK_MSG(relError(mean.data(), refMean.data(), refMean.size()) < 1e-6, "mean");
  const double precErr = relError(prec.data(), refPrec.data(), refPrec.size());
  CHECK_MSG(precErr < 1e-4, "precision error " << precErr);

  // Score fresh embeddings with the float64 mean / precision.
  const int64_t m2 = 3;
  std::vector<float> test = rng.floats(static_cast<size_t>(m2 * d * p));
  std::vector<float> score(static_cast<size_t>(m2 * p));
  padimScore(test.data(), m2, d, p, mean.data(), prec.data(), score.data());
  std::vector<double> ref(score.size());
  for (int64_t i = 0; i < m2; ++i)
    for (int64_t q = 0; q < p; ++q) {
      double s = 0;
      for (int64_t r = 0; r < d; ++r)
        for (int64_t t = 0; t < d; ++t)
          s += (test[(i * d + r) * p + q] - static_cast<double>(mean[q * d + r])) * prec[(q * d + r) * d + t] *
               (test[(i * d + t) * p + q] - static_cast<double>(mean[q * d + t]));
      ref[i * p + q] = std::sqrt(s);
    }
  const double scoreErr = relError(score.data(), ref.data(), ref.size());
  CHECK_MSG(scoreErr < 1e-5, "score error " << scoreErr);
  // n < 2 has no covariance.
  CHECK_THROWS_CODE(padimFit(emb.data(), 1, d, p, reg, mean.data(), prec.data()), ErrorCode::InvalidArgument);
}

}  // namespace anomalens::tests
