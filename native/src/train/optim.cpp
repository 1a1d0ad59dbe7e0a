// torch.optim's update rules, operation by operation in float32 as torch 1.13's single-tensor
// path computes them (torch's add(x, alpha) is a fused multiply-add in its vector kernels,
// hence std::fma), so that parameter trajectories agree to float rounding.
#include "anomalens/train/optim.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

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

struct AdamConsts {
  float wd, b1, b2, a1, a2, eps, negStepSize, bc2Sqrt;
  bool decay;
};

// One Adam update of n values, compiled twice as SGD's. The file is compiled with
// -ffp-contract=off (CMakeLists.txt), so the plain products and sums stay unfused in both
// versions and only the explicit FMAs are fused: both round exactly as torch 1.13's kernels.
#define ANOMALENS_ADAM_BODY(FMA, SQRT)                                        \
  _Pragma("omp parallel for schedule(static)")                                \
  for (int64_t j = 0; j < n; ++j) {                                           \
    const float d = k.decay ? FMA(v[j], k.wd, g[j]) : g[j];                   \
    m[j] = FMA(d, k.a1, m[j] * k.b1);                                          \
    s[j] = s[j] * k.b2 + k.a2 * d * d; /* addcmul: self + value * t1 * t2 */   \
    const float denom = SQRT(s[j]) / k.bc2Sqrt + k.eps;                       \
    v[j] = v[j] + k.negStepSize * m[j] / denom; /* addcdiv */                 \
  }

__attribute__((target("avx2,fma"))) void adamKernelFma(int64_t n, float* v, const float* g, float* m, float* s,
                                                       const AdamConsts k) {
  ANOMALENS_ADAM_BODY(__builtin_fmaf, __builtin_sqrtf)
}

void adamKernel(int64_t n, float* v, const float* g, float* m, float* s, const AdamConsts k) {
  ANOMALENS_ADAM_BODY(std::fma, std::sqrt)
}

#undef ANOMALENS_ADAM_BODY

bool hasFma() {
  static const bool yes = __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
  return yes;
}

// The sum of squares of n values in double: 8 lanes (element j into lane j % 8), then the lanes
// in order; vectorisable and the same on every machine.
double sumSquares(const float* g, int64_t n) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const int64_t whole = n - n % 8;
  for (int64_t j = 0; j < whole; j += 8)
    for (int l = 0; l < 8; ++l) lane[l] += static_cast<double>(g[j + l]) * g[j + l];
  for (int64_t j = whole; j < n; ++j) lane[j % 8] += static_cast<double>(g[j]) * g[j];
  double s = 0;
  for (double v : lane) s += v;
  return s;
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
    // Element-wise: on the storage as it is (params.h StorageLayout).
    const int64_t n = p.numel();
    float* v = p.rawValue();
    const float* g = p.rawGradData();
    const bool first = !p.hasState("momentum_buffer");
    float* buf = o.momentum != 0 ? p.rawStateOrZeros("momentum_buffer").data() : nullptr;
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
    const AdamConsts k{wd, b1, b2, a1, a2, eps, static_cast<float>(-(o.lr / bc1)),
                       static_cast<float>(std::sqrt(bc2)), o.weightDecay != 0};
    float* m = p.rawStateOrZeros("exp_avg").data();
    float* sq = p.rawStateOrZeros("exp_avg_sq").data();
    if (hasFma())
      adamKernelFma(p.numel(), p.rawValue(), p.rawGradData(), m, sq, k);
    else
      adamKernel(p.numel(), p.rawValue(), p.rawGradData(), m, sq, k);
  }
}

double clipGradNorm(ParamStore& params, double maxNorm) {
  require(std::isfinite(maxNorm) && maxNorm > 0, "clipGradNorm maxNorm must be a finite number > 0, received " +
                                                     std::to_string(maxNorm));
  applyThreads();
  // torch: per-parameter float32 norms, the norm of their stack, coefficient in float32. Each
  // parameter's sum of squares runs in double over fixed chunks (8 lanes each, the lanes and
  // then the chunks added in index order), the chunks spread over the threads: the norm (and so
  // every clipped gradient) does not depend on the thread count.
  constexpr int64_t kChunk = int64_t{1} << 15;
  struct Chunk {
    const float* g;
    int64_t count;
    size_t param;
  };
  std::vector<Chunk> chunks;
  std::vector<size_t> live;
  for (size_t i = 0; i < params.size(); ++i) {
    const Param& p = params[i];
    if (!updatable(p)) continue;
    live.push_back(i);
    for (int64_t at = 0; at < p.numel(); at += kChunk)
      chunks.push_back({p.rawGradData() + at, std::min(kChunk, p.numel() - at), i});
  }
  std::vector<double> partial(chunks.size());
  const int64_t nChunks = static_cast<int64_t>(chunks.size());
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t c = 0; c < nChunks; ++c) partial[static_cast<size_t>(c)] = sumSquares(chunks[static_cast<size_t>(c)].g,
                                                                                     chunks[static_cast<size_t>(c)].count);
  std::vector<double> perParam(params.size(), 0.0);
  for (size_t c = 0; c < chunks.size(); ++c) perParam[chunks[c].param] += partial[c];
  double total2 = 0;
  for (size_t i : live) {
    const float norm = static_cast<float>(std::sqrt(perParam[i]));
    total2 += static_cast<double>(norm) * norm;
  }
  const float total = static_cast<float>(std::sqrt(total2));
  float coef = static_cast<float>(maxNorm) / (total + 1e-6f);
  if (coef > 1.f) coef = 1.f;
  for (size_t i : live) {
    float* g = params[i].rawGrad();
    const int64_t n = params[i].numel();
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; ++j) g[j] *= coef;
  }
  return total;
}

}  // namespace anomalens::train
