#include "anomalens/train/loss_pixel_cosine.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "anomalens/core/error.h"
#include "anomalens/core/threading.h"

namespace anomalens::train {

double cosinePixelLoss(int64_t n, int64_t c, int64_t hw, const float* a, const float* b, float eps, float* gradA,
                       float* gradB) {
  require(n >= 1 && c >= 1 && hw >= 1, "cosinePixelLoss: n, c and hw must be >= 1, received " + std::to_string(n) +
                                           ", " + std::to_string(c) + ", " + std::to_string(hw));
  require(eps > 0, "cosinePixelLoss: eps must be > 0");
  applyThreads();
  const double scale = 1.0 / static_cast<double>(n * hw);
  const double e = eps;
  // One partial sum per sample, added in sample order: the total does not depend on threads.
  std::vector<double> partial(static_cast<size_t>(n), 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float* x = a + i * c * hw;
    const float* y = b + i * c * hw;
    std::vector<double> xy(static_cast<size_t>(hw), 0.0), xx(xy), yy(xy);
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < hw; ++p) {
        const double u = x[ch * hw + p], v = y[ch * hw + p];
        xy[p] += u * v, xx[p] += u * u, yy[p] += v * v;
      }
    double sum = 0;
    std::vector<double> nx(static_cast<size_t>(hw)), ny(nx), cs(nx);
    std::vector<char> xFree(static_cast<size_t>(hw)), yFree(xFree);
    for (int64_t p = 0; p < hw; ++p) {
      const double rx = std::sqrt(xx[p]), ry = std::sqrt(yy[p]);
      nx[p] = std::max(rx, e), ny[p] = std::max(ry, e);
      xFree[p] = rx >= e, yFree[p] = ry >= e;
      cs[p] = xy[p] / (nx[p] * ny[p]);
      sum += 1.0 - cs[p];
    }
    partial[static_cast<size_t>(i)] = sum;
    // d(1 - cos)/dy = -(x / (nx ny) - cos y / ny^2) while ||y|| >= eps (as cosineMapLoss).
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < hw; ++p) {
        const int64_t k = ch * hw + p;
        const double u = x[k], v = y[k];
        if (gradA) gradA[i * c * hw + k] = static_cast<float>(-scale * (v / (nx[p] * ny[p]) - (xFree[p] ? cs[p] * u / (nx[p] * nx[p]) : 0.0)));
        if (gradB) gradB[i * c * hw + k] = static_cast<float>(-scale * (u / (nx[p] * ny[p]) - (yFree[p] ? cs[p] * v / (ny[p] * ny[p]) : 0.0)));
      }
  }
  double total = 0;
  for (double s : partial) total += s;
  return total * scale;
}

}  // namespace anomalens::train
