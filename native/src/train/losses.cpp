#include "anomalens/train/losses.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "anomalens/core/error.h"

namespace anomalens::train {

double compactnessLoss(int64_t n, int64_t d, const float* features, const float* centre, float* grad) {
  require(n >= 1 && d >= 1, "compactnessLoss: n and d must be >= 1, received " + std::to_string(n) + ", " +
                                std::to_string(d));
  const double scale = 1.0 / (static_cast<double>(n) * static_cast<double>(d));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      const double diff = static_cast<double>(features[i * d + j]) - centre[j];
      sum += diff * diff;
      if (grad) grad[i * d + j] = static_cast<float>(2.0 * diff * scale);
    }
  return sum * scale;
}

double cosineMapLoss(int64_t n, int64_t m, const float* a, const float* b, float eps, float* gradA, float* gradB) {
  require(n >= 1 && m >= 1, "cosineMapLoss: n and m must be >= 1, received " + std::to_string(n) + ", " +
                                std::to_string(m));
  require(eps > 0, "cosineMapLoss: eps must be > 0");
  double loss = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* x = a + i * m;
    const float* y = b + i * m;
    double xy = 0, xx = 0, yy = 0;
    for (int64_t j = 0; j < m; ++j) {
      xy += static_cast<double>(x[j]) * y[j];
      xx += static_cast<double>(x[j]) * x[j];
      yy += static_cast<double>(y[j]) * y[j];
    }
    const double nxRaw = std::sqrt(xx), nyRaw = std::sqrt(yy);
    const double nx = std::max(nxRaw, static_cast<double>(eps)), ny = std::max(nyRaw, static_cast<double>(eps));
    const double cos = xy / (nx * ny);
    loss += 1.0 - cos;
    // d(1 - cos)/dx = -(y / (nx ny) - cos * x / (nx * ||x||)) while ||x|| >= eps (the clamp's
    // gradient passes there, as torch's clamp_min); below eps the norm is a constant.
    const double scale = 1.0 / static_cast<double>(n);
    const bool xFree = nxRaw >= eps, yFree = nyRaw >= eps;
    for (int64_t j = 0; j < m; ++j) {
      if (gradA)
        gradA[i * m + j] = static_cast<float>(-scale * (y[j] / (nx * ny) - (xFree ? cos * x[j] / (nx * nx) : 0.0)));
      if (gradB)
        gradB[i * m + j] = static_cast<float>(-scale * (x[j] / (nx * ny) - (yFree ? cos * y[j] / (ny * ny) : 0.0)));
    }
  }
  return loss / static_cast<double>(n);
}

double ewcPenalty(int64_t count, const float* theta, const float* thetaStar, const float* fisher, double lambda,
                  float* grad) {
  require(count >= 1, "ewcPenalty: count must be >= 1, received " + std::to_string(count));
  require(std::isfinite(lambda) && lambda >= 0, "ewcPenalty: lambda must be a finite number >= 0");
  double sum = 0;
  for (int64_t i = 0; i < count; ++i) {
    const double diff = static_cast<double>(theta[i]) - thetaStar[i];
    sum += fisher[i] * diff * diff;
    if (grad) grad[i] += static_cast<float>(lambda * fisher[i] * diff);
  }
  return lambda * sum / 2.0;
}

}  // namespace anomalens::train
