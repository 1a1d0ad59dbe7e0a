// Layout reorders (oneDNN reorder), ReLU (oneDNN eltwise, backward from the output), residual add (oneDNN binary), channel
// concatenation (oneDNN concat; its backward is a split, plain copies) and global average
// pooling (oneDNN pooling forward/backward).
#include <cstring>
#include <string>
#include <vector>

#include "anomalens/core/threading.h"
#include "anomalens/train/ops.h"
#include "dnnl_common.h"

namespace anomalens::train {

using namespace detail;
using dnnl::algorithm;
using dnnl::prop_kind;
using md = dnnl::memory::desc;

namespace {

void checkCount(const char* op, int64_t count) {
  require(count >= 1, std::string(op) + ": count must be >= 1, received " + std::to_string(count));
}

void checkNchw(const char* op, int64_t n, int64_t c, int64_t h, int64_t w) {
  require(n >= 1 && c >= 1 && h >= 1 && w >= 1, std::string(op) + ": n, c, h, w must be >= 1, received " +
                                                    std::to_string(n) + ", " + std::to_string(c) + ", " +
                                                    std::to_string(h) + ", " + std::to_string(w));
}

md flat(int64_t count) { return md({count}, dt::f32, tag::a); }

dnnl::eltwise_forward::primitive_desc reluForwardPd(int64_t count) {
  // relu_use_dst_for_bwd: the backward needs only the output, so the input need not be kept.
  dnnl::eltwise_forward::desc d(prop_kind::forward_training, algorithm::eltwise_relu_use_dst_for_bwd, flat(count),
                                0.f, 0.f);
  return dnnl::eltwise_forward::primitive_desc(d, userScratchpad(), engine());
}

}  // namespace

void reorderLayout(int64_t n, int64_t c, int64_t h, int64_t w, Layout from, Layout to, const float* x, float* y) {
  checkNchw("reorderLayout", n, c, h, w);
  applyThreads();
  guarded("reorderLayout", [&] {
    const md src = activationMd("reorderLayout", n, c, h, w, from), dst = activationMd("reorderLayout", n, c, h, w, to);
    Call call;
    dnnl::memory a = call.user(src, x), b = call.user(dst, y);
    call.run(dnnl::reorder(a, b), {{DNNL_ARG_FROM, a}, {DNNL_ARG_TO, b}});
    call.finish();
  });
}

void reluForward(int64_t count, const float* x, float* y) {
  checkCount("reluForward", count);
  applyThreads();
  guarded("reluForward", [&] {
    auto pd = reluForwardPd(count);
    Call call;
    call.run(dnnl::eltwise_forward(pd), {{DNNL_ARG_SRC, call.user(flat(count), x)},
                                         {DNNL_ARG_DST, call.user(flat(count), y)},
                                         {DNNL_ARG_SCRATCHPAD, call.scratchpad(pd.scratchpad_desc())}});
    call.finish();
  });
}

void reluBackward(int64_t count, const float* y, const float* dy, float* dx) {
  checkCount("reluBackward", count);
  applyThreads();
  guarded("reluBackward", [&] {
    auto fwd = reluForwardPd(count);
    dnnl::eltwise_backward::desc d(algorithm::eltwise_relu_use_dst_for_bwd, flat(count), flat(count), 0.f, 0.f);
    dnnl::eltwise_backward::primitive_desc pd(d, userScratchpad(), engine(), fwd);
    Call call;
    call.run(dnnl::eltwise_backward(pd), {{DNNL_ARG_DST, call.user(flat(count), y)},
                                          {DNNL_ARG_DIFF_DST, call.user(flat(count), dy)},
                                          {DNNL_ARG_DIFF_SRC, call.user(flat(count), dx)},
                                          {DNNL_ARG_SCRATCHPAD, call.scratchpad(pd.scratchpad_desc())}});
    call.finish();
  });
}

void addForward(int64_t count, const float* a, const float* b, float* y, bool relu) {
  checkCount("addForward", count);
  applyThreads();
  guarded("addForward", [&] {
    dnnl::binary::desc d(algorithm::binary_add, flat(count), flat(count), flat(count));
    dnnl::primitive_attr attr = userScratchpad();
    if (relu) {
      dnnl::post_ops po;
      po.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
      attr.set_post_ops(po);
    }
    dnnl::binary::primitive_desc pd(d, attr, engine());
    Call call;
    call.run(dnnl::binary(pd), {{DNNL_ARG_SRC_0, call.user(flat(count), a)},
                                {DNNL_ARG_SRC_1, call.user(flat(count), b)},
                                {DNNL_ARG_DST, call.user(flat(count), y)},
                                {DNNL_ARG_SCRATCHPAD, call.scratchpad(pd.scratchpad_desc())}});
    call.finish();
  });
}

void addBackward(int64_t count, const float* dy, float* da, float* db) {
  checkCount("addBackward", count);
  const size_t bytes = static_cast<size_t>(count) * sizeof(float);
  if (da && da != dy) std::memmove(da, dy, bytes);
  if (db && db != dy) std::memmove(db, dy, bytes);
}

void accumulate(int64_t count, const float* src, float* dst) {
  checkCount("accumulate", count);
  addForward(count, dst, src, dst);
}

void concatForward(int64_t n, int64_t parts, const int64_t* cs, int64_t h, int64_t w, const float* const* xs,
                   float* y) {
  require(parts >= 1, "concatForward: parts must be >= 1, received " + std::to_string(parts));
  int64_t total = 0;
  for (int64_t i = 0; i < parts; ++i) {
    checkNchw("concatForward", n, cs[i], h, w);
    total += cs[i];
  }
  applyThreads();
  guarded("concatForward", [&] {
    std::vector<md> mds;
    for (int64_t i = 0; i < parts; ++i) mds.emplace_back(dims{n, cs[i], h, w}, dt::f32, tag::nchw);
    const md out({n, total, h, w}, dt::f32, tag::nchw);
    dnnl::concat::primitive_desc pd(out, 1, mds, engine(), userScratchpad());
    Call call;
    std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_DST, call.user(out, y)},
                                               {DNNL_ARG_SCRATCHPAD, call.scratchpad(pd.scratchpad_desc())}};
    for (int64_t i = 0; i < parts; ++i) args[DNNL_ARG_MULTIPLE_SRC + static_cast<int>(i)] = call.user(mds[i], xs[i]);
    call.run(dnnl::concat(pd), args);
    call.finish();
  });
}

void concatBackward(int64_t n, int64_t parts, const int64_t* cs, int64_t h, int64_t w, const float* dy,
                    float* const* dxs) {
  require(parts >= 1, "concatBackward: parts must be >= 1, received " + std::to_string(parts));
  int64_t total = 0;
  for (int64_t i = 0; i < parts; ++i) {
    checkNchw("concatBackward", n, cs[i], h, w);
    total += cs[i];
  }
  const int64_t hw = h * w;
  for (int64_t b = 0; b < n; ++b) {
    int64_t offset = 0;
    for (int64_t i = 0; i < parts; ++i) {
      if (dxs[i])
        std::memcpy(dxs[i] + b * cs[i] * hw, dy + (b * total + offset) * hw,
                    static_cast<size_t>(cs[i] * hw) * sizeof(float));
      offset += cs[i];
    }
  }
}

namespace {

dnnl::pooling_forward::primitive_desc gapForwardPd(int64_t n, int64_t c, int64_t h, int64_t w) {
  const md x({n, c, h, w}, dt::f32, tag::nchw), y({n, c, 1, 1}, dt::f32, tag::nchw);
  dnnl::pooling_forward::desc d(prop_kind::forward_training, algorithm::pooling_avg_exclude_padding, x, y, {1, 1},
                                {h, w}, {0, 0}, {0, 0});
  return dnnl::pooling_forward::primitive_desc(d, userScratchpad(), engine());
}

}  // namespace

void globalAvgPoolForward(int64_t n, int64_t c, int64_t h, int64_t w, const float* x, float* y) {
  checkNchw("globalAvgPoolForward", n, c, h, w);
  applyThreads();
  guarded("globalAvgPoolForward", [&] {
    auto pd = gapForwardPd(n, c, h, w);
    Call call;
    call.run(dnnl::pooling_forward(pd), {{DNNL_ARG_SRC, call.user(pd.src_desc(), x)},
                                         {DNNL_ARG_DST, call.user(pd.dst_desc(), y)},
                                         {DNNL_ARG_SCRATCHPAD, call.scratchpad(pd.scratchpad_desc())}});
    call.finish();
  });
}

void globalAvgPoolBackward(int64_t n, int64_t c, int64_t h, int64_t w, const float* dy, float* dx) {
  checkNchw("globalAvgPoolBackward", n, c, h, w);
  applyThreads();
  guarded("globalAvgPoolBackward", [&] {
    auto fwd = gapForwardPd(n, c, h, w);
    const md x({n, c, h, w}, dt::f32, tag::nchw), y({n, c, 1, 1}, dt::f32, tag::nchw);
    dnnl::pooling_backward::desc d(algorithm::pooling_avg_exclude_padding, x, y, {1, 1}, {h, w}, {0, 0}, {0, 0});
    dnnl::pooling_backward::primitive_desc pd(d, userScratchpad(), engine(), fwd);
    Call call;
    call.run(dnnl::pooling_backward(pd), {{DNNL_ARG_DIFF_DST, call.user(y, dy)},
                                          {DNNL_ARG_DIFF_SRC, call.user(x, dx)},
                                          {DNNL_ARG_SCRATCHPAD, call.scratchpad(pd.scratchpad_desc())}});
    call.finish();
  });
}

}  // namespace anomalens::train
