// Training ops and losses (all Promises; lib/train/ validates first, this file re-checks what
// protects memory: element counts). The parameter store and the trainable ResNet are in
// train_models.cpp.
//   trainConv2dForward(x, w, b|null, geom)                   -> y
//   trainConv2dBackward(x, w, dy, geom, [dx?, dw?, db?])      -> {dx, dw, db}
//   trainConvTranspose2dForward / Backward: the same, PyTorch's [in, out, kh, kw] weight
//     (geom = [n, c, h, w, k, kh, kw, strideH, strideW, padH, padW])
//   trainBatchNormForward(x, gamma|null, beta|null, [n,c,h,w], eps, frozen, mean|null,
//     var|null, momentum, runningMean|null, runningVar|null)  -> {y, saveMean, saveVar}
//   trainBatchNormBackward(x, gamma|null, mean, var, dy, [n,c,h,w], eps, frozen, [dx?, dgamma?,
//     dbeta?])                                                -> {dx, dgamma, dbeta}
//   trainReluForward(x) -> y; trainReluBackward(y, dy) -> dx; trainAddForward(a, b) -> y
//   trainConcatForward([x...], n, [c...], h, w) -> y; trainConcatBackward(dy, n, [c...], h, w) -> [dx...]
//   trainGlobalAvgPoolForward(x, [n,c,h,w]) -> y; trainGlobalAvgPoolBackward(dy, [n,c,h,w]) -> dx
//   trainMaxPool2dForward(x, [n,c,h,w,k,stride,pad]) -> y; trainMaxPool2dBackward(x, dy, geom) -> dx
//   trainLinearForward(x, w, b|null, [n, d, k]) -> y; trainLinearBackward(x, w, dy, [n,d,k], wants)
//   trainCompactnessLoss(f, c, [n, d]) -> {loss, grad}; trainCosineMapLoss(a, b, [n, m], eps)
//     -> {loss, gradA, gradB}; trainEwcPenalty(theta, thetaStar, fisher, lambda) -> {loss, grad}
// Outputs are new Float32Arrays over native memory (only the core knows when they are
// needed: `wants`); running statistics are updated in place.
//
// No finite check: as torch's ops, these propagate NaN and infinity to their outputs (a
// training loop sees a non-finite loss), and a scan of every input of every op would cost a
// pass over memory per layer and step.
#include <memory>
#include <string>
#include <vector>

#include "anomalens/core/error.h"
#include "anomalens/train/losses.h"
#include "anomalens/train/ops.h"
#include "core/args.h"
#include "core/module.h"
#include "train_glue.h"
#include "core/worker.h"

namespace anomalens::bindings {
namespace {

using namespace anomalens::train;

// Output tensors shared between the worker and the result: named, null when not wanted.
struct Outs {
  std::vector<Tensor> t;
  std::vector<std::string> names;
  double loss = 0;
  float* ptr(size_t i) { return t[i].empty() ? nullptr : t[i].data(); }
};

std::shared_ptr<Outs> makeOuts(std::vector<std::pair<std::string, int64_t>> spec) {
  auto o = std::make_shared<Outs>();
  for (auto& [name, count] : spec) {
    o->names.push_back(name);
    o->t.push_back(count > 0 ? Tensor({count}) : Tensor());
  }
  return o;
}

// Resolves {name: Float32Array | null, ..., loss?}.
TaskWorker::Done outsResult(std::shared_ptr<Outs> o, bool withLoss) {
  return [o, withLoss](Napi::Env env) -> Napi::Value {
    Napi::Object r = Napi::Object::New(env);
    for (size_t i = 0; i < o->t.size(); ++i)
      r.Set(o->names[i], o->t[i].empty() ? env.Null() : Napi::Value(toFloat32Array(env, o->t[i])));
    if (withLoss) r.Set("loss", Napi::Number::New(env, o->loss));
    return r;
  };
}

// Resolves one Float32Array.
TaskWorker::Done tensorResult(std::shared_ptr<Tensor> t) {
  return [t](Napi::Env env) -> Napi::Value { return toFloat32Array(env, *t); };
}

// Starts `w` with every JS value whose memory it reads or writes pinned.
Napi::Value startPinned(TaskWorker* w, std::initializer_list<Napi::Value> pins) {
  for (const auto& v : pins) w->pin(v);
  return w->start();
}

// ---- convolutions ------------------------------------------------------------------------

template <typename S>
S geometry(const ArgReader& args, int key) {
  const Shape g = trainSizes(args, key, "geometry", 11);
  S s;
  s.n = g[0], s.c = g[1], s.h = g[2], s.w = g[3], s.k = g[4], s.kh = g[5], s.kw = g[6];
  s.strideH = g[7], s.strideW = g[8], s.padH = g[9], s.padW = g[10];
  return s;
}

// Weight element count: [k, c, kh, kw] (conv) or [c, k, kh, kw] (transposed): the same.
template <typename S>
int64_t weightCount(const S& s) {
  return s.k * s.c * s.kh * s.kw;
}

template <typename S, void (*Fwd)(const S&, const float*, const float*, const float*, float*)>
Napi::Value ConvForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const S s = geometry<S>(args, 3);
    s.check();
    const float* x = trainData(args, 0, "x", s.n * s.c * s.h * s.w);
    const float* w = trainData(args, 1, "weight", weightCount(s));
    const float* b = trainOptionalData(args, 2, "bias", s.k);
    auto y = std::make_shared<Tensor>(Shape{s.n * s.k * s.oh() * s.ow()});
    auto* wk = new TaskWorker(env, "convForward", [=](FiniteCheck&) { Fwd(s, x, w, b, y->data()); }, tensorResult(y));
    return startPinned(wk, {info[0], info[1], info[2]});
  });
}

template <typename S, void (*Bwd)(const S&, const float*, const float*, const float*, float*, float*, float*)>
Napi::Value ConvBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const S s = geometry<S>(args, 3);
    s.check();
    const float* x = trainData(args, 0, "x", s.n * s.c * s.h * s.w);
    const float* w = trainData(args, 1, "weight", weightCount(s));
    const float* dy = trainData(args, 2, "dy", s.n * s.k * s.oh() * s.ow());
    auto want = trainWants(args, 4, 3);
    auto o = makeOuts({{"dx", want[0] ? s.n * s.c * s.h * s.w : 0},
                       {"dw", want[1] ? weightCount(s) : 0},
                       {"db", want[2] ? s.k : 0}});
    auto* wk = new TaskWorker(
        env, "convBackward", [=](FiniteCheck&) { Bwd(s, x, w, dy, o->ptr(0), o->ptr(1), o->ptr(2)); },
        outsResult(o, false));
    return startPinned(wk, {info[0], info[1], info[2]});
  });
}

// ---- batch norm --------------------------------------------------------------------------

Napi::Value BatchNormForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const Shape d = trainSizes(args, 3, "shape", 4);
    const int64_t n = d[0], c = d[1], h = d[2], w = d[3];
    const float* x = trainData(args, 0, "x", n * c * h * w);
    const float* gamma = trainOptionalData(args, 1, "gamma", c);
    const float* beta = trainOptionalData(args, 2, "beta", c);
    const float eps = static_cast<float>(args.number(4, "eps"));
    const bool frozen = info[5].ToBoolean().Value();
    const float* mean = trainOptionalData(args, 6, "mean", c);
    const float* var = trainOptionalData(args, 7, "var", c);
    const double momentum = args.number(8, "momentum");
    float* runMean = trainOptionalMutableData(args, 9, "runningMean", c);
    float* runVar = trainOptionalMutableData(args, 10, "runningVar", c);
    if (frozen && (!mean || !var)) throw Napi::TypeError::New(env, "frozen batch norm needs mean and var");
    auto o = makeOuts({{"y", n * c * h * w}, {"saveMean", frozen ? 0 : c}, {"saveVar", frozen ? 0 : c}});
    auto* wk = new TaskWorker(
        env, "batchNormForward",
        [=](FiniteCheck&) {
          if (frozen)
            batchNormFrozenForward(n, c, h, w, x, gamma, beta, mean, var, eps, o->ptr(0));
          else
            batchNormTrainForward(n, c, h, w, x, gamma, beta, eps, momentum, o->ptr(0), o->ptr(1), o->ptr(2),
                                  runMean, runVar);
        },
        outsResult(o, false));
    return startPinned(wk, {info[0], info[1], info[2], info[6], info[7], info[9], info[10]});
  });
}

Napi::Value BatchNormBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const Shape d = trainSizes(args, 5, "shape", 4);
    const int64_t n = d[0], c = d[1], h = d[2], w = d[3];
    const float* x = trainData(args, 0, "x", n * c * h * w);
    const float* gamma = trainOptionalData(args, 1, "gamma", c);
    const float* mean = trainData(args, 2, "mean", c);
    const float* var = trainData(args, 3, "var", c);
    const float* dy = trainData(args, 4, "dy", n * c * h * w);
    const float eps = static_cast<float>(args.number(6, "eps"));
    const bool frozen = info[7].ToBoolean().Value();
    auto want = trainWants(args, 8, 3);
    auto o = makeOuts({{"dx", want[0] ? n * c * h * w : 0}, {"dgamma", want[1] ? c : 0}, {"dbeta", want[2] ? c : 0}});
    auto* wk = new TaskWorker(
        env, "batchNormBackward",
        [=](FiniteCheck&) {
          batchNormBackward(n, c, h, w, x, gamma, mean, var, eps, frozen, dy, o->ptr(0), o->ptr(1), o->ptr(2));
        },
        outsResult(o, false));
    return startPinned(wk, {info[0], info[1], info[2], info[3], info[4]});
  });
}

// ---- element-wise, concat, pooling, linear --------------------------------------------

Napi::Value ReluForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const int64_t count = trainLength(args, 0, "x");
    const float* x = trainData(args, 0, "x", count);
    auto y = std::make_shared<Tensor>(Shape{count});
    auto* wk = new TaskWorker(env, "reluForward", [=](FiniteCheck&) { reluForward(count, x, y->data()); }, tensorResult(y));
    return startPinned(wk, {info[0]});
  });
}

Napi::Value ReluBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const int64_t count = trainLength(args, 0, "y");
    const float* y = trainData(args, 0, "y", count);
    const float* dy = trainData(args, 1, "dy", count);
    auto dx = std::make_shared<Tensor>(Shape{count});
    auto* wk = new TaskWorker(
        env, "reluBackward", [=](FiniteCheck&) { reluBackward(count, y, dy, dx->data()); }, tensorResult(dx));
    return startPinned(wk, {info[0], info[1]});
  });
}

Napi::Value AddForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const int64_t count = trainLength(args, 0, "a");
    const float* a = trainData(args, 0, "a", count);
    const float* b = trainData(args, 1, "b", count);
    auto y = std::make_shared<Tensor>(Shape{count});
    auto* wk = new TaskWorker(env, "addForward", [=](FiniteCheck&) { addForward(count, a, b, y->data()); }, tensorResult(y));
    return startPinned(wk, {info[0], info[1]});
  });
}

Napi::Value ConcatForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const int64_t n = args.integer(1, "n");
    const Shape cs = args.shape(2, "channels");
    const int64_t h = args.integer(3, "h"), w = args.integer(4, "w");
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, "xs must be an array of Float32Arrays");
    auto arr = info[0].As<Napi::Array>();
    if (arr.Length() != cs.size()) throw Napi::RangeError::New(env, "xs and channels must have the same length");
    std::vector<const float*> xs;
    int64_t total = 0;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      xs.push_back(float32View(arr.Get(i), "xs[" + std::to_string(i) + "]", {n * cs[i] * h * w}).data);
      total += cs[i];
    }
    auto y = std::make_shared<Tensor>(Shape{n * total * h * w});
    auto* wk = new TaskWorker(
        env, "concatForward",
        [=](FiniteCheck&) { concatForward(n, static_cast<int64_t>(cs.size()), cs.data(), h, w, xs.data(), y->data()); },
        tensorResult(y));
    // The parts themselves: the array could be emptied by JS while the work runs.
    for (uint32_t i = 0; i < arr.Length(); ++i) wk->pin(arr.Get(i));
    return wk->start();
  });
}

Napi::Value ConcatBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const int64_t n = args.integer(1, "n");
    const Shape cs = args.shape(2, "channels");
    const int64_t h = args.integer(3, "h"), w = args.integer(4, "w");
    int64_t total = 0;
    for (int64_t c : cs) total += c;
    const float* dy = trainData(args, 0, "dy", n * total * h * w);
    auto outs = std::make_shared<std::vector<Tensor>>();
    for (int64_t c : cs) outs->emplace_back(Shape{n * c * h * w});
    auto* wk = new TaskWorker(
        env, "concatBackward",
        [=](FiniteCheck&) {
          std::vector<float*> ptrs;
          for (auto& t : *outs) ptrs.push_back(t.data());
          concatBackward(n, static_cast<int64_t>(cs.size()), cs.data(), h, w, dy, ptrs.data());
        },
        [outs](Napi::Env e) -> Napi::Value {
          Napi::Array a = Napi::Array::New(e, outs->size());
          for (size_t i = 0; i < outs->size(); ++i) a.Set(static_cast<uint32_t>(i), toFloat32Array(e, (*outs)[i]));
          return a;
        });
    return startPinned(wk, {info[0]});
  });
}

Napi::Value GapForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const Shape d = trainSizes(args, 1, "shape", 4);
    const float* x = trainData(args, 0, "x", d[0] * d[1] * d[2] * d[3]);
    auto y = std::make_shared<Tensor>(Shape{d[0] * d[1]});
    auto* wk = new TaskWorker(
        env, "globalAvgPoolForward",
        [=](FiniteCheck&) { globalAvgPoolForward(d[0], d[1], d[2], d[3], x, y->data()); }, tensorResult(y));
    return startPinned(wk, {info[0]});
  });
}

Napi::Value GapBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const Shape d = trainSizes(args, 1, "shape", 4);
    const float* dy = trainData(args, 0, "dy", d[0] * d[1]);
    auto dx = std::make_shared<Tensor>(Shape{d[0] * d[1] * d[2] * d[3]});
    auto* wk = new TaskWorker(
        env, "globalAvgPoolBackward",
        [=](FiniteCheck&) { globalAvgPoolBackward(d[0], d[1], d[2], d[3], dy, dx->data()); }, tensorResult(dx));
    return startPinned(wk, {info[0]});
  });
}

// [n, c, h, w, k, stride, pad] and the output's oh, ow.
struct PoolGeometry {
  Shape g;
  int64_t oh, ow;
};
PoolGeometry poolGeometry(const ArgReader& args, int key) {
  const Shape g = trainSizes(args, key, "geometry", 7);
  require(g[4] >= 1 && g[5] >= 1 && g[2] + 2 * g[6] >= g[4] && g[3] + 2 * g[6] >= g[4], "bad max-pool geometry");
  return {g, (g[2] + 2 * g[6] - g[4]) / g[5] + 1, (g[3] + 2 * g[6] - g[4]) / g[5] + 1};
}

Napi::Value MaxPoolForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const auto [g, oh, ow] = poolGeometry(args, 1);
    const float* x = trainData(args, 0, "x", g[0] * g[1] * g[2] * g[3]);
    auto y = std::make_shared<Tensor>(Shape{g[0] * g[1] * oh * ow});
    auto* wk = new TaskWorker(
        env, "maxPool2dForward",
        [=](FiniteCheck&) { maxPool2dForward(g[0], g[1], g[2], g[3], g[4], g[5], g[6], x, y->data()); },
        tensorResult(y));
    return startPinned(wk, {info[0]});
  });
}

Napi::Value MaxPoolBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const auto [g, oh, ow] = poolGeometry(args, 2);
    const float* x = trainData(args, 0, "x", g[0] * g[1] * g[2] * g[3]);
    const float* dy = trainData(args, 1, "dy", g[0] * g[1] * oh * ow);
    auto dx = std::make_shared<Tensor>(Shape{g[0] * g[1] * g[2] * g[3]});
    auto* wk = new TaskWorker(
        env, "maxPool2dBackward",
        [=](FiniteCheck&) { maxPool2dBackward(g[0], g[1], g[2], g[3], g[4], g[5], g[6], x, dy, dx->data()); },
        tensorResult(dx));
    return startPinned(wk, {info[0], info[1]});
  });
}

Napi::Value LinearForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const Shape d = trainSizes(args, 3, "shape", 3);
    const int64_t n = d[0], dd = d[1], k = d[2];
    const float* x = trainData(args, 0, "x", n * dd);
    const float* w = trainData(args, 1, "weight", k * dd);
    const float* b = trainOptionalData(args, 2, "bias", k);
    auto y = std::make_shared<Tensor>(Shape{n * k});
    auto* wk = new TaskWorker(
        env, "linearForward", [=](FiniteCheck&) { linearForward(n, dd, k, x, w, b, y->data()); }, tensorResult(y));
    return startPinned(wk, {info[0], info[1], info[2]});
  });
}

Napi::Value LinearBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const Shape d = trainSizes(args, 3, "shape", 3);
    const int64_t n = d[0], dd = d[1], k = d[2];
    const float* x = trainData(args, 0, "x", n * dd);
    const float* w = trainData(args, 1, "weight", k * dd);
    const float* dy = trainData(args, 2, "dy", n * k);
    auto want = trainWants(args, 4, 3);
    auto o = makeOuts({{"dx", want[0] ? n * dd : 0}, {"dw", want[1] ? k * dd : 0}, {"db", want[2] ? k : 0}});
    auto* wk = new TaskWorker(
        env, "linearBackward",
        [=](FiniteCheck&) { linearBackward(n, dd, k, x, w, dy, o->ptr(0), o->ptr(1), o->ptr(2)); },
        outsResult(o, false));
    return startPinned(wk, {info[0], info[1], info[2]});
  });
}

// ---- losses ------------------------------------------------------------------------------

Napi::Value CompactnessLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const Shape d = trainSizes(args, 2, "shape", 2);
    const float* f = trainData(args, 0, "features", d[0] * d[1]);
    const float* c = trainData(args, 1, "centre", d[1]);
    auto o = makeOuts({{"grad", d[0] * d[1]}});
    auto* wk = new TaskWorker(
        env, "compactnessLoss", [=](FiniteCheck&) { o->loss = compactnessLoss(d[0], d[1], f, c, o->ptr(0)); },
        outsResult(o, true));
    return startPinned(wk, {info[0], info[1]});
  });
}

Napi::Value CosineMapLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const Shape d = trainSizes(args, 2, "shape", 2);
    const float* a = trainData(args, 0, "a", d[0] * d[1]);
    const float* b = trainData(args, 1, "b", d[0] * d[1]);
    const float eps = static_cast<float>(args.number(3, "eps"));
    auto o = makeOuts({{"gradA", d[0] * d[1]}, {"gradB", d[0] * d[1]}});
    auto* wk = new TaskWorker(
        env, "cosineMapLoss",
        [=](FiniteCheck&) { o->loss = cosineMapLoss(d[0], d[1], a, b, eps, o->ptr(0), o->ptr(1)); },
        outsResult(o, true));
    return startPinned(wk, {info[0], info[1]});
  });
}

Napi::Value EwcPenalty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const int64_t count = trainLength(args, 0, "theta");
    const float* theta = trainData(args, 0, "theta", count);
    const float* star = trainData(args, 1, "thetaStar", count);
    const float* fisher = trainData(args, 2, "fisher", count);
    const double lambda = args.number(3, "lambda");
    auto o = makeOuts({{"grad", count}});
    auto* wk = new TaskWorker(
        env, "ewcPenalty",
        [=](FiniteCheck&) {
          std::fill(o->ptr(0), o->ptr(0) + count, 0.f);
          o->loss = ewcPenalty(count, theta, star, fisher, lambda, o->ptr(0));
        },
        outsResult(o, true));
    return startPinned(wk, {info[0], info[1], info[2]});
  });
}

void init(Napi::Env env, Napi::Object exports) {
  using CS = Conv2dShape;
  using TS = ConvTranspose2dShape;
  exportFunctions(env, exports, {
    {"trainConv2dForward", ConvForward<CS, conv2dForward>},
    {"trainConv2dBackward", ConvBackward<CS, conv2dBackward>},
    {"trainConvTranspose2dForward", ConvForward<TS, convTranspose2dForward>},
    {"trainConvTranspose2dBackward", ConvBackward<TS, convTranspose2dBackward>},
    {"trainBatchNormForward", BatchNormForward},
    {"trainBatchNormBackward", BatchNormBackward},
    {"trainReluForward", ReluForward},
    {"trainReluBackward", ReluBackward},
    {"trainAddForward", AddForward},
    {"trainConcatForward", ConcatForward},
    {"trainConcatBackward", ConcatBackward},
    {"trainGlobalAvgPoolForward", GapForward},
    {"trainGlobalAvgPoolBackward", GapBackward},
    {"trainMaxPool2dForward", MaxPoolForward},
    {"trainMaxPool2dBackward", MaxPoolBackward},
    {"trainLinearForward", LinearForward},
    {"trainLinearBackward", LinearBackward},
    {"trainCompactnessLoss", CompactnessLoss},
    {"trainCosineMapLoss", CosineMapLoss},
    {"trainEwcPenalty", EwcPenalty}});
}

}  // namespace
ANOMALENS_REGISTER(train, init);
}  // namespace anomalens::bindings
