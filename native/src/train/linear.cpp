// Linear layers (torch.nn.Linear: y = x w^T + b, w [k, d]) through oneDNN's inner product,
// forward (training), backward data and backward weights (+ bias).
#include <string>

#include "anomalens/core/threading.h"
#include "anomalens/train/ops.h"
#include "dnnl_common.h"

namespace anomalens::train {

using namespace detail;
using dnnl::prop_kind;
using md = dnnl::memory::desc;

namespace {

struct LinearMds {
  md x, w, b, y;
};

LinearMds linearMds(const char* op, int64_t n, int64_t d, int64_t k) {
  require(n >= 1 && d >= 1 && k >= 1, std::string(op) + ": n, d, k must be >= 1, received " + std::to_string(n) +
                                          ", " + std::to_string(d) + ", " + std::to_string(k));
  return {md({n, d}, dt::f32, tag::nc), md({k, d}, dt::f32, tag::oi), md({k}, dt::f32, tag::x),
          md({n, k}, dt::f32, tag::nc)};
}

dnnl::inner_product_forward::primitive_desc linearForwardPd(const LinearMds& m, bool bias) {
  dnnl::inner_product_forward::desc d(prop_kind::forward_training, m.x, m.w, bias ? m.b : md(), m.y);
  return dnnl::inner_product_forward::primitive_desc(d, userScratchpad(), engine());
}

}  // namespace

void linearForward(int64_t n, int64_t d, int64_t k, const float* x, const float* w, const float* b, float* y) {
  const LinearMds m = linearMds("linearForward", n, d, k);
  applyThreads();
  guarded("linearForward", [&] {
    auto pd = linearForwardPd(m, b != nullptr);
    Call call;
    std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, call.user(m.x, x)},
                                               {DNNL_ARG_WEIGHTS, call.user(m.w, w)},
                                               {DNNL_ARG_DST, call.user(m.y, y)},
                                               {DNNL_ARG_SCRATCHPAD, call.scratchpad(pd.scratchpad_desc())}};
    if (b) args[DNNL_ARG_BIAS] = call.user(m.b, b);
    call.run(dnnl::inner_product_forward(pd), args);
    call.finish();
  });
}

void linearBackward(int64_t n, int64_t d, int64_t k, const float* x, const float* w, const float* dy, float* dx,
                    float* dw, float* db) {
  const LinearMds m = linearMds("linearBackward", n, d, k);
  if (!dx && !dw && !db) return;
  applyThreads();
  guarded("linearBackward", [&] {
    auto fwd = linearForwardPd(m, db != nullptr);
    Call call;
    if (dx) {
      dnnl::inner_product_backward_data::desc bd(m.x, m.w, m.y);
      dnnl::inner_product_backward_data::primitive_desc pd(bd, userScratchpad(), engine(), fwd);
      call.run(dnnl::inner_product_backward_data(pd), {{DNNL_ARG_DIFF_DST, call.user(m.y, dy)},
                                                       {DNNL_ARG_WEIGHTS, call.user(m.w, w)},
                                                       {DNNL_ARG_DIFF_SRC, call.user(m.x, dx)},
                                                       {DNNL_ARG_SCRATCHPAD, call.scratchpad(pd.scratchpad_desc())}});
    }
    if (dw || db) {
      dnnl::memory dwMem = dw ? call.user(m.w, dw) : dnnl::memory(m.w, engine());
      dnnl::inner_product_backward_weights::desc bd(m.x, m.w, db ? m.b : md(), m.y);
      dnnl::inner_product_backward_weights::primitive_desc pd(bd, userScratchpad(), engine(), fwd);
      std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, call.user(m.x, x)},
                                                 {DNNL_ARG_DIFF_DST, call.user(m.y, dy)},
                                                 {DNNL_ARG_DIFF_WEIGHTS, dwMem},
                                                 {DNNL_ARG_SCRATCHPAD, call.scratchpad(pd.scratchpad_desc())}};
      if (db) args[DNNL_ARG_DIFF_BIAS] = call.user(m.b, db);
      call.run(dnnl::inner_product_backward_weights(pd), args);
    }
    call.finish();
  });
}

}  // namespace anomalens::train
