// Batch normalisation in training mode (batch statistics) and with frozen statistics,
// forward and backward through oneDNN on the caller's buffers (NCHW, or nChw16c where oneDNN's
// AVX-512 kernels run: several times faster than its kernels for NCHW). The running-statistics
// update (torch's momentum rule with the unbiased variance) is ours: oneDNN has none.
#include <string>
#include <unordered_map>
#include <vector>

#include "anomalens/core/threading.h"
#include "anomalens/train/ops.h"
#include "dnnl_common.h"

namespace anomalens::train {

using namespace detail;
using dnnl::prop_kind;
using flags = dnnl::normalization_flags;
using md = dnnl::memory::desc;

namespace {

void checkBn(const char* op, int64_t n, int64_t c, int64_t h, int64_t w, float eps) {
  require(n >= 1 && c >= 1 && h >= 1 && w >= 1, std::string(op) + ": n, c, h, w must be >= 1, received " +
                                                    std::to_string(n) + ", " + std::to_string(c) + ", " +
                                                    std::to_string(h) + ", " + std::to_string(w));
  require(eps > 0, std::string(op) + ": eps must be > 0, received " + std::to_string(eps));
}

flags bnFlags(bool frozen, bool relu = false) {
  return flags::use_scale | flags::use_shift | (frozen ? flags::use_global_stats : flags::none) |
         (relu ? flags::fuse_norm_relu : flags::none);
}

std::string bnKey(const char* what, const md& data, float eps, bool frozen, Layout layout, bool relu = false) {
  std::string k = what;
  for (int64_t v : data.dims()) k += "," + std::to_string(v);
  return k + "," + std::to_string(eps) + (frozen ? ",frozen," : ",train,") + layoutKey(layout) + (relu ? ",relu" : "");
}

// relu: oneDNN's fused ReLU on the output (fuse_norm_relu); the backward takes the unfused
// descriptor as its hint and gets ReLU's backward from the caller (reluBackward from y).
dnnl::batch_normalization_forward::primitive_desc bnForwardPd(const md& data, float eps, bool frozen,
                                                              Layout layout, bool relu = false) {
  return cachedPd<dnnl::batch_normalization_forward::primitive_desc>(bnKey("fwd", data, eps, frozen, layout, relu), [&] {
    dnnl::batch_normalization_forward::desc d(prop_kind::forward_training, data, eps, bnFlags(frozen, relu));
    return dnnl::batch_normalization_forward::primitive_desc(d, userScratchpad(), engine());
  });
}

void bnForward(int64_t n, int64_t c, int64_t h, int64_t w, const float* x, const float* gamma, const float* beta,
               float eps, bool frozen, float* y, const float* mean, const float* var, float* outMean, float* outVar,
               Layout layout, bool relu) {
  const md data = activationMd("batchNorm", n, c, h, w, layout), stat({c}, dt::f32, tag::x);
  auto pd = bnForwardPd(data, eps, frozen, layout, relu);
  Call call;
  // Without the affine parameters torch uses gamma = 1, beta = 0.
  std::vector<float> ones, zeros;
  if (!gamma) ones.assign(c, 1.f), gamma = ones.data();
  if (!beta) zeros.assign(c, 0.f), beta = zeros.data();
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, call.user(data, x)},
      {DNNL_ARG_DST, call.user(data, y)},
      {DNNL_ARG_SCALE, call.user(stat, gamma)},
      {DNNL_ARG_SHIFT, call.user(stat, beta)},
      {DNNL_ARG_MEAN, frozen ? call.user(stat, mean) : call.user(stat, outMean)},
      {DNNL_ARG_VARIANCE, frozen ? call.user(stat, var) : call.user(stat, outVar)},
      {DNNL_ARG_SCRATCHPAD, call.scratchpad(pd.scratchpad_desc())}};
  // The fused ReLU's mask, for a fused backward we do not use: y itself says where y > 0.
  if (pd.workspace_desc().get_size() > 0) args[DNNL_ARG_WORKSPACE] = dnnl::memory(pd.workspace_desc(), engine());
  call.run(dnnl::batch_normalization_forward(pd), args);
  call.finish();
}

}  // namespace

void batchNormTrainForward(int64_t n, int64_t c, int64_t h, int64_t w, const float* x, const float* gamma,
                           const float* beta, float eps, double momentum, float* y, float* saveMean, float* saveVar,
                           float* runningMean, float* runningVar, Layout layout, bool relu) {
  checkBn("batchNormTrainForward", n, c, h, w, eps);
  const int64_t m = n * h * w;
  if (runningVar)
    require(m > 1, "batchNormTrainForward: training mode needs more than one value per channel (n * h * w = " +
                       std::to_string(m) + "), as torch.nn.BatchNorm2d does");
  applyThreads();
  guarded("batchNormTrainForward",
          [&] { bnForward(n, c, h, w, x, gamma, beta, eps, false, y, nullptr, nullptr, saveMean, saveVar, layout, relu); });
  // torch (batch_norm_cpu_update_stats): running = momentum * stat + (1 - momentum) * running
  // in double, with the unbiased variance var * m / (m - 1), rounded to float once.
  const double unbias = m > 1 ? static_cast<double>(m) / static_cast<double>(m - 1) : 1.0;
  for (int64_t i = 0; i < c; ++i) {
    if (runningMean) runningMean[i] = static_cast<float>(momentum * saveMean[i] + (1 - momentum) * runningMean[i]);
    if (runningVar)
      runningVar[i] = static_cast<float>(momentum * (saveVar[i] * unbias) + (1 - momentum) * runningVar[i]);
  }
}

void batchNormFrozenForward(int64_t n, int64_t c, int64_t h, int64_t w, const float* x, const float* gamma,
                            const float* beta, const float* mean, const float* var, float eps, float* y,
                            Layout layout, bool relu) {
  checkBn("batchNormFrozenForward", n, c, h, w, eps);
  applyThreads();
  guarded("batchNormFrozenForward",
          [&] { bnForward(n, c, h, w, x, gamma, beta, eps, true, y, mean, var, nullptr, nullptr, layout, relu); });
}

void batchNormBackward(int64_t n, int64_t c, int64_t h, int64_t w, const float* x, const float* gamma,
                       const float* mean, const float* var, float eps, bool frozenStats, const float* dy, float* dx,
                       float* dgamma, float* dbeta, Layout layout) {
  checkBn("batchNormBackward", n, c, h, w, eps);
  if (!dx && !dgamma && !dbeta) return;
  applyThreads();
  guarded("batchNormBackward", [&] {
    const md data = activationMd("batchNormBackward", n, c, h, w, layout), stat({c}, dt::f32, tag::x);
    auto fwd = bnForwardPd(data, eps, frozenStats, layout);
    auto pd = cachedPd<dnnl::batch_normalization_backward::primitive_desc>(
        bnKey("bwd", data, eps, frozenStats, layout), [&] {
      dnnl::batch_normalization_backward::desc d(prop_kind::backward, data, data, eps, bnFlags(frozenStats));
      return dnnl::batch_normalization_backward::primitive_desc(d, userScratchpad(), engine(), fwd);
    });
    Call call;
    // oneDNN's backward reads the shift too (unused by the gradient): zeros serve.
    std::vector<float> ones, zeros(c, 0.f), tmpDx, tmpDg, tmpDb;
    if (!gamma) ones.assign(c, 1.f), gamma = ones.data();
    if (!dx) tmpDx.resize(static_cast<size_t>(n * c * h * w)), dx = tmpDx.data();
    if (!dgamma) tmpDg.resize(c), dgamma = tmpDg.data();
    if (!dbeta) tmpDb.resize(c), dbeta = tmpDb.data();
    call.run(dnnl::batch_normalization_backward(pd),
             {{DNNL_ARG_SRC, call.user(data, x)},
              {DNNL_ARG_DIFF_DST, call.user(data, dy)},
              {DNNL_ARG_MEAN, call.user(stat, mean)},
              {DNNL_ARG_VARIANCE, call.user(stat, var)},
              {DNNL_ARG_SCALE, call.user(stat, gamma)},
              {DNNL_ARG_SHIFT, call.user(stat, zeros.data())},
              {DNNL_ARG_DIFF_SRC, call.user(data, dx)},
              {DNNL_ARG_DIFF_SCALE, call.user(stat, dgamma)},
              {DNNL_ARG_DIFF_SHIFT, call.user(stat, dbeta)},
              {DNNL_ARG_SCRATCHPAD, call.scratchpad(pd.scratchpad_desc())}});
    call.finish();
  });
}

}  // namespace anomalens::train
