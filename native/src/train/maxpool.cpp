// Max pooling forward/backward in plain loops: the backward recomputes each window's argmax
// from the kept input instead of keeping oneDNN's opaque workspace, so the op needs nothing
// but x and has the same signature style as the others. Parallel over (image, channel).
#include <limits>
#include <string>

#include "anomalens/core/error.h"
#include "anomalens/core/threading.h"
#include "anomalens/train/ops.h"

namespace anomalens::train {

namespace {

void checkPool(const char* op, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p) {
  require(n >= 1 && c >= 1 && h >= 1 && w >= 1 && k >= 1 && s >= 1 && p >= 0 && 2 * p <= k,
          std::string(op) + ": bad geometry (n, c, h, w, k, stride, pad = " + std::to_string(n) + ", " +
              std::to_string(c) + ", " + std::to_string(h) + ", " + std::to_string(w) + ", " + std::to_string(k) +
              ", " + std::to_string(s) + ", " + std::to_string(p) + "); pad must be <= k / 2");
  require(h + 2 * p >= k && w + 2 * p >= k, std::string(op) + ": input smaller than the window");
}

// The flat index (within one map) of the first maximum of output (i, j)'s window.
inline int64_t argmaxWindow(const float* x, int64_t h, int64_t w, int64_t k, int64_t s, int64_t p, int64_t i,
                            int64_t j) {
  int64_t best = -1;
  float bestV = -std::numeric_limits<float>::infinity();
  for (int64_t u = 0; u < k; ++u) {
    const int64_t y = i * s - p + u;
    if (y < 0 || y >= h) continue;
    for (int64_t v = 0; v < k; ++v) {
      const int64_t xx = j * s - p + v;
      if (xx < 0 || xx >= w) continue;
      const float val = x[y * w + xx];
      if (best < 0 || val > bestV || val != val) best = y * w + xx, bestV = val;
    }
  }
  return best;
}

}  // namespace

void maxPool2dForward(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t stride, int64_t pad,
                      const float* x, float* y) {
  checkPool("maxPool2dForward", n, c, h, w, k, stride, pad);
  applyThreads();
  const int64_t oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < n * c; ++m) {
    const float* xm = x + m * h * w;
    float* ym = y + m * oh * ow;
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) ym[i * ow + j] = xm[argmaxWindow(xm, h, w, k, stride, pad, i, j)];
  }
}

void maxPool2dBackward(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t stride, int64_t pad,
                       const float* x, const float* dy, float* dx) {
  checkPool("maxPool2dBackward", n, c, h, w, k, stride, pad);
  applyThreads();
  const int64_t oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < n * c; ++m) {
    const float* xm = x + m * h * w;
    const float* dym = dy + m * oh * ow;
    float* dxm = dx + m * h * w;
    for (int64_t i = 0; i < h * w; ++i) dxm[i] = 0.f;
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) dxm[argmaxWindow(xm, h, w, k, stride, pad, i, j)] += dym[i * ow + j];
  }
}

}  // namespace anomalens::train
