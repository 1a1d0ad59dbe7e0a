#include <omp.h>

#include <vector>

#include "anomalens/core/error.h"
#include "anomalens/maps/resize_aligned.h"
#include "anomalens/core/threading.h"

namespace anomalens {
namespace {

struct Taps {
  std::vector<int64_t> i0, i1;
  std::vector<double> l1;
};

// torch's area_pixel_compute_scale / source_index with align_corners: a float scale
// (in - 1) / (out - 1) (0 for a single output), source = scale * d.
Taps taps(int64_t in, int64_t out) {
  Taps t;
  t.i0.resize(out), t.i1.resize(out), t.l1.resize(out);
  const float scale = out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.f;
  for (int64_t d = 0; d < out; ++d) {
    const double src = static_cast<double>(scale) * static_cast<double>(d);
    int64_t i0 = static_cast<int64_t>(src);
    if (i0 > in - 1) i0 = in - 1;
    t.i0[d] = i0;
    t.i1[d] = i0 + (i0 < in - 1 ? 1 : 0);
    double l = src - static_cast<double>(i0);
    t.l1[d] = l < 0 ? 0 : (l > 1 ? 1 : l);
  }
  return t;
}

}  // namespace

void resizeMapsBilinearAlignCorners(const float* in, int64_t n, int64_t c, int64_t ih, int64_t iw, int64_t oh, int64_t ow,
                                float* out) {
  require(n >= 1 && c >= 1 && ih >= 1 && iw >= 1 && oh >= 1 && ow >= 1,
          "resizeMapsBilinearAlignCorners: every size must be >= 1");
  applyThreads();
  const Taps ty = taps(ih, oh), tx = taps(iw, ow);
  const int64_t planes = n * c;
#pragma omp parallel for schedule(static) collapse(2)
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t y = 0; y < oh; ++y) {
      const float* r0 = in + (p * ih + ty.i0[y]) * iw;
      const float* r1 = in + (p * ih + ty.i1[y]) * iw;
      const double ly1 = ty.l1[y], ly0 = 1.0 - ly1;
      float* o = out + (p * oh + y) * ow;
      for (int64_t x = 0; x < ow; ++x) {
        const int64_t a = tx.i0[x], b = tx.i1[x];
        const double lx1 = tx.l1[x], lx0 = 1.0 - lx1;
        o[x] = static_cast<float>(ly0 * (lx0 * r0[a] + lx1 * r0[b]) + ly1 * (lx0 * r1[a] + lx1 * r1[b]));
      }
    }
}

}  // namespace anomalens
