// Convolution and transposed convolution, forward (training) and backward (data, weights,
// bias), through oneDNN. The primitives pick their own layouts (tag::any); the caller's
// buffers (activations NCHW or nChw16c as the shape says, weights OIHW / IOHW) are reordered in
// and out where the primitive's layout differs (activations already nChw16c pass through on
// AVX-512).
#include <string>

#include "anomalens/core/threading.h"
#include "anomalens/train/ops.h"
#include "dnnl_common.h"

namespace anomalens::train {

using namespace detail;
using dnnl::algorithm;
using dnnl::prop_kind;
using md = dnnl::memory::desc;

namespace {

void checkPositive(int64_t v, const char* op, const char* what) {
  require(v >= 1, std::string(op) + ": " + what + " must be >= 1, received " + std::to_string(v));
}

void checkCommon(const char* op, int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t kh, int64_t kw,
                 int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
  checkPositive(n, op, "n");
  checkPositive(c, op, "c");
  checkPositive(h, op, "h");
  checkPositive(w, op, "w");
  checkPositive(k, op, "k");
  checkPositive(kh, op, "kh");
  checkPositive(kw, op, "kw");
  checkPositive(sh, op, "strideH");
  checkPositive(sw, op, "strideW");
  require(ph >= 0 && pw >= 0, std::string(op) + ": padding must be >= 0, received " + std::to_string(ph) + ", " +
                                  std::to_string(pw));
}

// oneDNN's right padding so that its output size (in - k + pl + pr) / s + 1 equals `out`.
int64_t padRight(int64_t in, int64_t out, int64_t k, int64_t s, int64_t pl) { return (out - 1) * s + k - in - pl; }

struct ConvMds {
  md x, w, b, y;           // plain (user) layouts
  md xa, wa, ya;           // tag::any for the primitives
  dims strides, padL, padR;
};

// The descriptors of a convolution-like problem (convolution or its transpose): they differ
// only in the weights' layout and in which side the right padding is derived from.
template <class Shape>
ConvMds planeMds(const char* op, const Shape& s, tag weightTag, const dims& padR) {
  const int64_t oh = s.oh(), ow = s.ow();
  ConvMds m;
  m.x = activationMd(op, s.n, s.c, s.h, s.w, s.src);
  m.w = md({s.k, s.c, s.kh, s.kw}, dt::f32, weightTag);
  m.b = md({s.k}, dt::f32, tag::x);
  m.y = activationMd(op, s.n, s.k, oh, ow, s.dst);
  m.xa = md({s.n, s.c, s.h, s.w}, dt::f32, tag::any);
  m.wa = md({s.k, s.c, s.kh, s.kw}, dt::f32, tag::any);
  m.ya = md({s.n, s.k, oh, ow}, dt::f32, tag::any);
  m.strides = {s.strideH, s.strideW};
  m.padL = {s.padH, s.padW};
  m.padR = padR;
  return m;
}

ConvMds convMds(const Conv2dShape& s) {
  const int64_t oh = s.oh(), ow = s.ow();
  return planeMds("conv2d", s, tag::oihw,
                  {padRight(s.h, oh, s.kh, s.strideH, s.padH), padRight(s.w, ow, s.kw, s.strideW, s.padW)});
}

// The cache key of a convolution or transposed convolution problem.
template <class Shape>
std::string convKey(const char* what, const Shape& s, bool bias) {
  std::string k = what;
  for (int64_t v : {s.n, s.c, s.h, s.w, s.k, s.kh, s.kw, s.strideH, s.strideW, s.padH, s.padW})
    k += "," + std::to_string(v);
  return k + "," + layoutKey(s.src) + "," + layoutKey(s.dst) + (bias ? ",b" : ",-");
}

dnnl::convolution_forward::primitive_desc convForwardPd(const ConvMds& m, bool bias) {
  dnnl::convolution_forward::desc d(prop_kind::forward_training, algorithm::convolution_direct, m.xa, m.wa,
                                    bias ? m.b : md(), m.ya, m.strides, m.padL, m.padR);
  return dnnl::convolution_forward::primitive_desc(d, userScratchpad(), engine());
}

dnnl::convolution_forward::primitive_desc convForwardPd(const Conv2dShape& s, const ConvMds& m, bool bias) {
  return cachedPd<dnnl::convolution_forward::primitive_desc>(convKey("fwd", s, bias),
                                                              [&] { return convForwardPd(m, bias); });
}

}  // namespace

void Conv2dShape::check() const {
  const char* op = "conv2d";
  checkCommon(op, n, c, h, w, k, kh, kw, strideH, strideW, padH, padW);
  require(oh() >= 1 && ow() >= 1, std::string(op) + ": input " + std::to_string(h) + "x" + std::to_string(w) +
                                      " is too small for kernel " + std::to_string(kh) + "x" + std::to_string(kw) +
                                      " with padding " + std::to_string(padH) + ", " + std::to_string(padW));
}

namespace {

// Where a call's weights and weight gradient live: the caller's plain buffers, or a parameter's
// storage (params.h StorageLayout) in whatever layout it has.
struct WeightsIo {
  md desc;                   // of value and gradient
  const float* value = nullptr;
  float* grad = nullptr;     // null: not wanted
};

void checkParam(const char* op, const Param& w, int64_t a, int64_t b, int64_t kh, int64_t kw) {
  require(w.shape() == Shape{a, b, kh, kw}, std::string(op) + ": parameter '" + w.name() + "' has shape " +
                                                shapeString(w.shape()) + ", expected " +
                                                shapeString(Shape{a, b, kh, kw}));
}

// The primitives of a convolution and of its transpose: the same calls, other types.
struct ConvPrims {
  using Fwd = dnnl::convolution_forward;
  using BwdData = dnnl::convolution_backward_data;
  using BwdWeights = dnnl::convolution_backward_weights;
  static constexpr algorithm alg = algorithm::convolution_direct;
  static constexpr const char* key = "";
};
struct DeconvPrims {
  using Fwd = dnnl::deconvolution_forward;
  using BwdData = dnnl::deconvolution_backward_data;
  using BwdWeights = dnnl::deconvolution_backward_weights;
  static constexpr algorithm alg = algorithm::deconvolution_direct;
  static constexpr const char* key = "deconv_";
};

template <class P>
void forwardRun(const typename P::Fwd::primitive_desc& pd, const ConvMds& m, const float* x, const WeightsIo& w,
                const float* b, float* y) {
  Call call;
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, call.input(pd.src_desc(), call.user(m.x, x))},
      {DNNL_ARG_WEIGHTS, call.input(pd.weights_desc(), call.user(w.desc, w.value))},
      {DNNL_ARG_DST, call.output(pd.dst_desc(), call.user(m.y, y))},
      {DNNL_ARG_SCRATCHPAD, call.scratchpad(pd.scratchpad_desc())}};
  if (b) args[DNNL_ARG_BIAS] = call.user(m.b, b);
  call.run(typename P::Fwd(pd), args);
  call.finish();
}

// fwd: the forward's descriptor (the hint of the backward ones).
template <class P, class Shape>
void backwardRun(const Shape& s, const ConvMds& m, const typename P::Fwd::primitive_desc& fwd, const float* x,
                 const WeightsIo& w, const float* dy, float* dx, float* db) {
  Call call;
  if (dx) {
    auto pd = cachedPd<typename P::BwdData::primitive_desc>(
        convKey((std::string(P::key) + "bwd_data").c_str(), s, db != nullptr), [&] {
          typename P::BwdData::desc d(P::alg, m.xa, m.wa, m.ya, m.strides, m.padL, m.padR);
          return typename P::BwdData::primitive_desc(d, userScratchpad(), engine(), fwd);
        });
    call.run(typename P::BwdData(pd),
             {{DNNL_ARG_DIFF_DST, call.input(pd.diff_dst_desc(), call.user(m.y, dy))},
              {DNNL_ARG_WEIGHTS, call.input(pd.weights_desc(), call.user(w.desc, w.value))},
              {DNNL_ARG_DIFF_SRC, call.output(pd.diff_src_desc(), call.user(m.x, dx))},
              {DNNL_ARG_SCRATCHPAD, call.scratchpad(pd.scratchpad_desc())}});
  }
  if (w.grad || db) {
    // oneDNN computes weights and bias gradients together; a bias gradient without the
    // weights one still needs somewhere to put the weights gradient.
    dnnl::memory dwMem = w.grad ? call.user(w.desc, w.grad) : dnnl::memory(m.w, engine());
    auto pd = cachedPd<typename P::BwdWeights::primitive_desc>(
        convKey((std::string(P::key) + "bwd_weights").c_str(), s, db != nullptr), [&] {
          typename P::BwdWeights::desc d(P::alg, m.xa, m.wa, db ? m.b : md(), m.ya, m.strides, m.padL, m.padR);
          return typename P::BwdWeights::primitive_desc(d, userScratchpad(), engine(), fwd);
        });
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, call.input(pd.src_desc(), call.user(m.x, x))},
        {DNNL_ARG_DIFF_DST, call.input(pd.diff_dst_desc(), call.user(m.y, dy))},
        {DNNL_ARG_DIFF_WEIGHTS, call.output(pd.diff_weights_desc(), dwMem)},
        {DNNL_ARG_SCRATCHPAD, call.scratchpad(pd.scratchpad_desc())}};
    if (db) args[DNNL_ARG_DIFF_BIAS] = call.output(pd.diff_bias_desc(), call.user(m.b, db));
    call.run(typename P::BwdWeights(pd), args);
  }
  call.finish();
}

}  // namespace

void conv2dForward(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y) {
  s.check();
  applyThreads();
  guarded("conv2dForward", [&] {
    const ConvMds m = convMds(s);
    forwardRun<ConvPrims>(convForwardPd(s, m, b != nullptr), m, x, {m.w, w, nullptr}, b, y);
  });
}

void conv2dForward(const Conv2dShape& s, const float* x, Param& w, float* y) {
  s.check();
  checkParam("conv2dForward", w, s.k, s.c, s.kh, s.kw);
  applyThreads();
  guarded("conv2dForward", [&] {
    const ConvMds m = convMds(s);
    auto pd = convForwardPd(s, m, false);
    adoptLayout(w, m.w, pd.weights_desc());
    forwardRun<ConvPrims>(pd, m, x, {storedMd(w, m.w), w.rawValue(), nullptr}, nullptr, y);
  });
}

void conv2dBackward(const Conv2dShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                    float* db) {
  s.check();
  if (!dx && !dw && !db) return;
  applyThreads();
  guarded("conv2dBackward", [&] {
    const ConvMds m = convMds(s);
    backwardRun<ConvPrims>(s, m, convForwardPd(s, m, db != nullptr), x, {m.w, w, dw}, dy, dx, db);
  });
}

void conv2dBackward(const Conv2dShape& s, const float* x, Param& w, const float* dy, float* dx, bool wantDw) {
  s.check();
  checkParam("conv2dBackward", w, s.k, s.c, s.kh, s.kw);
  if (!dx && !wantDw) return;
  applyThreads();
  guarded("conv2dBackward", [&] {
    const ConvMds m = convMds(s);
    backwardRun<ConvPrims>(s, m, convForwardPd(s, m, false), x,
                           {storedMd(w, m.w), w.rawValue(), wantDw ? w.rawGrad() : nullptr}, dy, dx, nullptr);
  });
}

// ---- transposed convolution --------------------------------------------------------------

namespace {

ConvMds deconvMds(const ConvTranspose2dShape& s) {
  const int64_t oh = s.oh(), ow = s.ow();
  // oneDNN's deconvolution weights are logically [out, in, kh, kw]; iohw lays them out as
  // PyTorch's ConvTranspose2d weight [in, out, kh, kw]. The deconvolution is the backward-data of
  // a convolution from y to x: the same padding rule, with the two sides swapped.
  return planeMds("convTranspose2d", s, tag::iohw,
                  {padRight(oh, s.h, s.kh, s.strideH, s.padH), padRight(ow, s.w, s.kw, s.strideW, s.padW)});
}

dnnl::deconvolution_forward::primitive_desc deconvForwardPd(const ConvTranspose2dShape& s, const ConvMds& m,
                                                            bool bias) {
  return cachedPd<dnnl::deconvolution_forward::primitive_desc>(convKey("deconv_fwd", s, bias), [&] {
    dnnl::deconvolution_forward::desc d(prop_kind::forward_training, algorithm::deconvolution_direct, m.xa, m.wa,
                                        bias ? m.b : md(), m.ya, m.strides, m.padL, m.padR);
    return dnnl::deconvolution_forward::primitive_desc(d, userScratchpad(), engine());
  });
}

}  // namespace

void ConvTranspose2dShape::check() const {
  const char* op = "convTranspose2d";
  checkCommon(op, n, c, h, w, k, kh, kw, strideH, strideW, padH, padW);
  require(oh() >= 1 && ow() >= 1, std::string(op) + ": padding " + std::to_string(padH) + ", " +
                                      std::to_string(padW) + " leaves an empty output");
}

void convTranspose2dForward(const ConvTranspose2dShape& s, const float* x, const float* w, const float* b, float* y) {
  s.check();
  applyThreads();
  guarded("convTranspose2dForward", [&] {
    const ConvMds m = deconvMds(s);
    forwardRun<DeconvPrims>(deconvForwardPd(s, m, b != nullptr), m, x, {m.w, w, nullptr}, b, y);
  });
}

void convTranspose2dForward(const ConvTranspose2dShape& s, const float* x, Param& w, float* y) {
  s.check();
  checkParam("convTranspose2dForward", w, s.c, s.k, s.kh, s.kw);
  applyThreads();
  guarded("convTranspose2dForward", [&] {
    const ConvMds m = deconvMds(s);
    auto pd = deconvForwardPd(s, m, false);
    adoptLayout(w, m.w, pd.weights_desc());
    forwardRun<DeconvPrims>(pd, m, x, {storedMd(w, m.w), w.rawValue(), nullptr}, nullptr, y);
  });
}

void convTranspose2dBackward(const ConvTranspose2dShape& s, const float* x, const float* w, const float* dy,
                             float* dx, float* dw, float* db) {
  s.check();
  if (!dx && !dw && !db) return;
  applyThreads();
  guarded("convTranspose2dBackward", [&] {
    const ConvMds m = deconvMds(s);
    backwardRun<DeconvPrims>(s, m, deconvForwardPd(s, m, db != nullptr), x, {m.w, w, dw}, dy, dx, db);
  });
}

void convTranspose2dBackward(const ConvTranspose2dShape& s, const float* x, Param& w, const float* dy, float* dx,
                             bool wantDw) {
  s.check();
  checkParam("convTranspose2dBackward", w, s.c, s.k, s.kh, s.kw);
  if (!dx && !wantDw) return;
  applyThreads();
  guarded("convTranspose2dBackward", [&] {
    const ConvMds m = deconvMds(s);
    backwardRun<DeconvPrims>(s, m, deconvForwardPd(s, m, false), x,
                             {storedMd(w, m.w), w.rawValue(), wantDw ? w.rawGrad() : nullptr}, dy, dx, nullptr);
  });
}

}  // namespace anomalens::train
