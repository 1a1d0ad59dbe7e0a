// torch.optim's update rules, operation by operation in float32 as torch 1.13's single-tensor
// path computes them (torch's add(x, alpha) is a fused multiply-add in its vector kernels,
// hence std::fma), so that parameter trajectories agree to float rounding.
#include "anomalens/train/optim.h"

#include <cmath>
#include <string>

#include "anomalens/core/error.h"
#include "anomalens/core/threading.h"

namespace anomalens::train {

namespace {

bool updatable(const Param& p) { return !p.frozen() && p.hasGrad(); }

void checkFinite(double v, const char* what, double min = -INFINITY) {
  require(std::isfinite(v) && v >= min, std::string(what) + " must be a finite number >= " + std::to_string(min) +
                                            ", received " + std::to_string(v));
}

struct SgdConsts {
  float wd, mom, keep, negLr;
  bool decay, first, nesterov;
};

// One SGD update of n values, compiled twice: in a function targeting FMA (the fused
// multiply-add is an instruction there: vectorised) and with std::fma (a libm call, exact
// everywhere). Both round exactly as torch's fused vector kernel.
#define ANOMALENS_SGD_BODY(FMA)                                          \
  _Pragma("omp parallel for schedule(static)")                           \
  for (int64_t j = 0; j < n; ++j) {                                      \
    float d = k.decay ? FMA(v[j], k.wd, g[j]) : g[j];                    \
    if (buf) {                                                           \
      buf[j] = k.first ? d : FMA(d, k.keep, buf[j] * k.mom);             \
      d = k.nesterov ? FMA(buf[j], k.mom, d) : buf[j];                   \
    }                                                                    \
    v[j] = FMA(d, k.negLr, v[j]);                                        \
  }

__attribute__((target("avx2,fma"))) void sgdKernelFma(int64_t n, float* v, const float* g, float* buf,
                                                      const SgdConsts k) {
  ANOMALENS_SGD_BODY(__builtin_fmaf)
}

void sgdKernel(int64_t n, float* v, const float* g, float* buf, const SgdConsts k) { ANOMALENS_SGD_BODY(std::fma) }

#undef ANOMALENS_SGD_BODY

bool hasFma() {
  static const bool yes = __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
  return yes;
}

}  // namespace

void sgdStep(ParamStore& params, const SgdOptions& o) {
  applyThreads();
  checkFinite(o.lr, "sgd lr", 0);
  checkFinite(o.momentum, "sgd momentum", 0);
  checkFinite(o.dampening, "sgd dampening");
  checkFinite(o.weightDecay, "sgd weightDecay", 0);
  require(!o.nesterov || (o.momentum > 0 && o.dampening == 0), "sgd nesterov needs momentum > 0 and dampening 0");
  const float wd = static_cast<float>(o.weightDecay), mom = static_cast<float>(o.momentum),
              keep = static_cast<float>(1 - o.dampening), negLr = static_cast<float>(-o.lr);
  for (size_t i = 0; i < params.size(); ++i) {
    Param& p = params[i];
    if (!updatable(p)) continue;
    const int64_t n = p.numel();
    float* v = p.value();
    const float* g = p.gradData();
    const bool first = !p.hasState("momentum_buffer");
    float* buf = o.momentum != 0 ? p.stateOrZeros("momentum_buffer").data() : nullptr;
    const SgdConsts k{wd, mom, keep, negLr, o.weightDecay != 0, first, o.nesterov};
    if (hasFma())
      sgdKernelFma(n, v, g, buf, k);
    else
      sgdKernel(n, v, g, buf, k);
  }
}

void adamStep(ParamStore& params, const AdamOptions& o) {
  applyThreads();
  checkFinite(o.lr, "adam lr", 0);
  require(o.beta1 >= 0 && o.beta1 < 1, "adam beta1 must be in [0, 1), received " + std::to_string(o.beta1));
  require(o.beta2 >= 0 && o.beta2 < 1, "adam beta2 must be in [0, 1), received " + std::to_string(o.beta2));
  checkFinite(o.eps, "adam eps", 0);
  checkFinite(o.weightDecay, "adam weightDecay", 0);
  const float wd = static_cast<float>(o.weightDecay), b1 = static_cast<float>(o.beta1),
              b2 = static_cast<float>(o.beta2), a1 = static_cast<float>(1 - o.beta1),
              a2 = static_cast<float>(1 - o.beta2), eps = static_cast<float>(o.eps);
  for (size_t i = 0; i < params.size(); ++i) {
    Param& p = params[i];
    if (!updatable(p)) continue;
    // torch keeps the step as a float32 tensor and reads it back as a Python float.
    p.step = static_cast<float>(p.step + 1);
    const double bc1 = 1 - std::pow(o.beta1, p.step), bc2 = 1 - std::pow(o.beta2, p.step);
    const float negStepSize = static_cast<float>(-(o.lr / bc1));
    const float bc2Sqrt = static_cast<float>(std::sqrt(bc2));
    const int64_t n = p.numel();
    float* v = p.value();
    const float* g = p.gradData();
    float* m = p.stateOrZeros("exp_avg").data();
    float* s = p.stateOrZeros("exp_avg_sq").data();
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; ++j) {
      const float d = o.weightDecay != 0 ? std::fma(v[j], wd, g[j]) : g[j];
      m[j] = std::fma(d, a1, m[j] * b1);
      s[j] = s[j] * b2 + a2 * d * d;           // addcmul: self + value * t1 * t2
      const float denom = std::sqrt(s[j]) / bc2Sqrt + eps;
      v[j] = v[j] + negStepSize * m[j] / denom;  // addcdiv: self + value * t1 / t2
    }
  }
}

double clipGradNorm(ParamStore& params, double maxNorm) {
  require(std::isfinite(maxNorm) && maxNorm > 0, "clipGradNorm maxNorm must be a finite number > 0, received " +
                                                     std::to_string(maxNorm));
  applyThreads();
  // torch: per-parameter float32 norms, the norm of their stack, coefficient in float32.
  double sumSquares = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const Param& p = params[i];
    if (!updatable(p)) continue;
    double s = 0;
    const float* g = p.gradData();
    const int64_t n = p.numel();
    // Serial, in index order: the norm (and so every clipped gradient) is independent of the
    // thread count.
    for (int64_t j = 0; j < n; ++j) s += static_cast<double>(g[j]) * g[j];
    const float norm = static_cast<float>(std::sqrt(s));
    sumSquares += static_cast<double>(norm) * norm;
  }
  const float total = static_cast<float>(std::sqrt(sumSquares));
  float coef = static_cast<float>(maxNorm) / (total + 1e-6f);
  if (coef > 1.f) coef = 1.f;
  for (size_t i = 0; i < params.size(); ++i) {
    Param& p = params[i];
    if (!updatable(p)) continue;
    float* g = p.grad();
    const int64_t n = p.numel();
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; ++j) g[j] *= coef;
  }
  return total;
}

}  // namespace anomalens::train
