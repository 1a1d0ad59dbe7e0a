// maps: resize (torch's bilinear, align_corners false and true), Gaussian blur (scipy's reflect mode),
// cosine and L2 distance maps, each against a naive loop in float64.
#include <cmath>

#include "anomalens/maps/blur.h"
#include "anomalens/maps/distance.h"
#include "anomalens/maps/resize.h"
#include "anomalens/maps/resize_aligned.h"
#include "harness.h"

namespace anomalens::tests {
namespace {

// PyTorch's source coordinate for align_corners=False: scale = float(in) / out (a float),
// source = scale * (dst + 0.5) - 0.5 clamped at 0; the weight l1 is rounded to float.
void sourceIndex(int64_t in, int64_t out, int64_t dst, int64_t& i0, int64_t& i1, double& l1) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const double src = std::max(0.0, static_cast<double>(scale) * (static_cast<double>(dst) + 0.5) - 0.5);
  i0 = std::min(static_cast<int64_t>(src), in - 1);
  i1 = std::min(i0 + 1, in - 1);
  l1 = static_cast<float>(std::min(1.0, std::max(0.0, src - static_cast<double>(i0))));
}

// scipy.ndimage 'reflect': d c b a | a b c d | d c b a.
int64_t reflect(int64_t i, int64_t n) {
  if (n == 1) return 0;
  const int64_t period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

}  // namespace

TEST(maps_resize_vs_naive) {
  Rng rng(41);
  struct Case { int64_t n, c, ih, iw, oh, ow; };
  for (Case k : {Case{2, 1, 13, 7, 97, 29}, Case{1, 3, 7, 13, 5, 31}, Case{3, 2, 1, 1, 4, 9}, Case{1, 5, 9, 9, 9, 9},
                 Case{1, 1, 97, 13, 13, 97}}) {
    std::vector<float> in = rng.floats(static_cast<size_t>(k.n * k.c * k.ih * k.iw));
    std::vector<float> out(static_cast<size_t>(k.n * k.c * k.oh * k.ow));
    resizeMapsBilinear(in.data(), k.n, k.c, k.ih, k.iw, k.oh, k.ow, out.data());
    std::vector<double> ref(out.size());
    for (int64_t p = 0; p < k.n * k.c; ++p)
      for (int64_t y = 0; y < k.oh; ++y)
        for (int64_t x = 0; x < k.ow; ++x) {
          int64_t y0, y1, x0, x1;
          double ly, lx;
          sourceIndex(k.ih, k.oh, y, y0, y1, ly);
          sourceIndex(k.iw, k.ow, x, x0, x1, lx);
          const float* s = &in[p * k.ih * k.iw];
          ref[(p * k.oh + y) * k.ow + x] = (1 - ly) * ((1 - lx) * s[y0 * k.iw + x0] + lx * s[y0 * k.iw + x1]) +
                                           ly * ((1 - lx) * s[y1 * k.iw + x0] + lx * s[y1 * k.iw + x1]);
        }
    const double err = relError(out.data(), ref.data(), ref.size());
    CHECK_MSG(err < 1e-6, k.ih << "x" << k.iw << " -> " << k.oh << "x" << k.ow << ": " << err);
  }
}

// align_corners = true: source = dst * (in - 1) / (out - 1) in exact arithmetic (0 for a single
// output); the corners of input and output coincide.
TEST(maps_resize_align_corners_vs_naive) {
  Rng rng(43);
  struct Case { int64_t n, c, ih, iw, oh, ow; };
  for (Case k : {Case{2, 1, 16, 16, 256, 256}, Case{1, 3, 7, 13, 5, 31}, Case{3, 2, 1, 1, 4, 9}, Case{1, 2, 9, 5, 1, 1},
                 Case{1, 1, 97, 13, 13, 97}}) {
    std::vector<float> in = rng.floats(static_cast<size_t>(k.n * k.c * k.ih * k.iw));
    std::vector<float> out(static_cast<size_t>(k.n * k.c * k.oh * k.ow));
    resizeMapsBilinearAlignCorners(in.data(), k.n, k.c, k.ih, k.iw, k.oh, k.ow, out.data());
    auto source = [](int64_t in, int64_t out, int64_t d, int64_t& i0, int64_t& i1, double& l1) {
      const double src = out > 1 ? static_cast<double>(d) * static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0;
      i0 = std::min(static_cast<int64_t>(src), in - 1);
      i1 = std::min(i0 + 1, in - 1);
      l1 = src - static_cast<double>(i0);
    };
    std::vector<double> ref(out.size());
    for (int64_t p = 0; p < k.n * k.c; ++p)
      for (int64_t y = 0; y < k.oh; ++y)
        for (int64_t x = 0; x < k.ow; ++x) {
          int64_t y0, y1, x0, x1;
          double ly, lx;
          source(k.ih, k.oh, y, y0, y1, ly);
          source(k.iw, k.ow, x, x0, x1, lx);
          const float* s = &in[p * k.ih * k.iw];
          ref[(p * k.oh + y) * k.ow + x] = (1 - ly) * ((1 - lx) * s[y0 * k.iw + x0] + lx * s[y0 * k.iw + x1]) +
                                           ly * ((1 - lx) * s[y1 * k.iw + x0] + lx * s[y1 * k.iw + x1]);
        }
    const double err = relError(out.data(), ref.data(), ref.size());
    CHECK_MSG(err < 1e-6, k.ih << "x" << k.iw << " -> " << k.oh << "x" << k.ow << ": " << err);
    if (k.oh > 1 && k.ow > 1) {
      const int64_t last = (k.oh - 1) * k.ow + k.ow - 1;
      CHECK_MSG(out[0] == in[0] && out[last] == in[(k.ih - 1) * k.iw + k.iw - 1], "corners of plane 0");
    }
  }
}

TEST(maps_gaussian_blur_vs_naive) {
  Rng rng(42);
  struct Case { int64_t n, h, w; double sigma, truncate; };
  for (Case k : {Case{2, 13, 97, 4.0, 4.0}, Case{1, 5, 3, 2.0, 4.0}, Case{3, 1, 13, 1.5, 3.0}, Case{1, 31, 17, 0.7, 0.0}}) {
    std::vector<float> in = rng.floats(static_cast<size_t>(k.n * k.h * k.w));
    std::vector<float> out(in.size());
    gaussianBlur(in.data(), k.n, k.h, k.w, k.sigma, k.truncate, out.data());
    const int64_t r = static_cast<int64_t>(k.truncate * k.sigma + 0.5);
    std::vector<double> wts;
    double sum = 0;
    for (int64_t i = -r; i <= r; ++i) wts.push_back(std::exp(-0.5 * i * i / (k.sigma * k.sigma))), sum += wts.back();
    for (double& v : wts) v /= sum;
    std::vector<double> ref(in.size());
    for (int64_t m = 0; m < k.n; ++m)
      for (int64_t y = 0; y < k.h; ++y)
        for (int64_t x = 0; x < k.w; ++x) {
          double s = 0;  // the separable filter written as one 2-D sum
          for (int64_t a = -r; a <= r; ++a)
            for (int64_t b = -r; b <= r; ++b)
              s += wts[a + r] * wts[b + r] * in[(m * k.h + reflect(y + a, k.h)) * k.w + reflect(x + b, k.w)];
          ref[(m * k.h + y) * k.w + x] = s;
        }
    const double err = relError(out.data(), ref.data(), ref.size());
    CHECK_MSG(err < 1e-6, k.h << "x" << k.w << " sigma " << k.sigma << ": " << err);
  }
  // In place gives the same result.
  std::vector<float> a = rng.floats(13 * 29), b(a.size());
  gaussianBlur(a.data(), 1, 13, 29, 3.0, 4.0, b.data());
  gaussianBlur(a.data(), 1, 13, 29, 3.0, 4.0, a.data());
  CHECK(a == b);
}

TEST(maps_cosine_and_l2_distance_vs_naive) {
  Rng rng(43);
  const int64_t n = 2, c = 13, h = 7, w = 5;
  std::vector<float> a = rng.floats(static_cast<size_t>(n * c * h * w)), b = rng.floats(a.size());
  for (int64_t i = 0; i < c; ++i) a[(i * h + 2) * w + 3] = 0.f;  // one zero vector: cosine 1 - 0 / eps
  std::vector<float> cos(static_cast<size_t>(n * h * w)), l2(cos.size()), l2sq(cos.size());
  const float eps = 1e-8f;
  cosineDistanceMap(a.data(), b.data(), n, c, h, w, eps, cos.data());
  l2DistanceMap(a.data(), b.data(), n, c, h, w, false, l2.data());
  l2DistanceMap(a.data(), b.data(), n, c, h, w, true, l2sq.data());
  std::vector<double> rc(cos.size()), rl(cos.size()), rs(cos.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t p = 0; p < h * w; ++p) {
      double dot = 0, na = 0, nb = 0, sq = 0;
      for (int64_t k = 0; k < c; ++k) {
        const double x = a[(i * c + k) * h * w + p], y = b[(i * c + k) * h * w + p];
        dot += x * y, na += x * x, nb += y * y, sq += (x - y) * (x - y);
      }
      rc[i * h * w + p] = 1 - dot / (std::max(std::sqrt(na), double(eps)) * std::max(std::sqrt(nb), double(eps)));
      rl[i * h * w + p] = std::sqrt(sq);
      rs[i * h * w + p] = sq;
    }
  CHECK_MSG(relError(cos.data(), rc.data(), rc.size()) < 1e-6, relError(cos.data(), rc.data(), rc.size()));
  CHECK(relError(l2.data(), rl.data(), rl.size()) < 1e-6);
  CHECK(relError(l2sq.data(), rs.data(), rs.size()) < 1e-6);
  CHECK(cos[2 * w + 3] == 1.f);
}

}  // namespace anomalens::tests
