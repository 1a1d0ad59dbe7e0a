// Training ops and losses (lib/train/ops.ts, losses.ts validate first; this file re-checks what
// protects memory: element counts). All are Promises:
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
// Outputs are new Float32Arrays over native memory. Running statistics are updated in place.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "anomalens/train/losses.h"
#include "anomalens/train/ops.h"
#include "train_glue.h"

namespace anomalens::bindings {
namespace {

using namespace anomalens::train;
using namespace train_glue;

// ---- convolutions ------------------------------------------------------------------------

template <typename S>
S geometry(Napi::Value v) {
  auto g = ints(v, "geometry", 11);
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
    const S s = geometry<S>(info[3]);
    s.check();
    const float* x = data(info[0], "x", s.n * s.c * s.h * s.w);
    const float* w = data(info[1], "weight", weightCount(s));
    const float* b = optionalData(info[2], "bias", s.k);
    auto y = std::make_shared<Tensor>(Shape{s.n * s.k * s.oh() * s.ow()});
    auto* wk = new TrainWorker(env, "convForward", [=] { Fwd(s, x, w, b, y->data()); },
                               [=](Napi::Env e) { return single(e, *y); });
    return queue(wk, info);
  });
}

template <typename S, void (*Bwd)(const S&, const float*, const float*, const float*, float*, float*, float*)>
Napi::Value ConvBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    const S s = geometry<S>(info[3]);
    s.check();
    const float* x = data(info[0], "x", s.n * s.c * s.h * s.w);
    const float* w = data(info[1], "weight", weightCount(s));
    const float* dy = data(info[2], "dy", s.n * s.k * s.oh() * s.ow());
    auto want = wants(info[4], 3);
    auto o = makeOuts({{"dx", want[0] ? s.n * s.c * s.h * s.w : 0},
                       {"dw", want[1] ? weightCount(s) : 0},
                       {"db", want[2] ? s.k : 0}});
    auto* wk = new TrainWorker(env, "convBackward", [=] { Bwd(s, x, w, dy, o->ptr(0), o->ptr(1), o->ptr(2)); },
                               [=](Napi::Env e) { return outsToJs(e, *o, false); });
    return queue(wk, info);
  });
}

// ---- batch norm --------------------------------------------------------------------------

Napi::Value BatchNormForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    auto d = ints(info[3], "shape", 4);
    const int64_t n = d[0], c = d[1], h = d[2], w = d[3];
    const float* x = data(info[0], "x", n * c * h * w);
    const float* gamma = optionalData(info[1], "gamma", c);
    const float* beta = optionalData(info[2], "beta", c);
    const float eps = static_cast<float>(number(info[4], "eps"));
    const bool frozen = info[5].ToBoolean().Value();
    const float* mean = optionalData(info[6], "mean", c);
    const float* var = optionalData(info[7], "var", c);
    const double momentum = number(info[8], "momentum");
    float* runMean = isNone(info[9]) ? nullptr : mutableData(info[9], "runningMean", c);
    float* runVar = isNone(info[10]) ? nullptr : mutableData(info[10], "runningVar", c);
    if (frozen && (!mean || !var)) throw Napi::TypeError::New(env, "frozen batch norm needs mean and var");
    auto o = makeOuts({{"y", n * c * h * w}, {"saveMean", frozen ? 0 : c}, {"saveVar", frozen ? 0 : c}});
    auto* wk = new TrainWorker(
        env, "batchNormForward",
        [=] {
          if (frozen)
            batchNormFrozenForward(n, c, h, w, x, gamma, beta, mean, var, eps, o->ptr(0));
          else
            batchNormTrainForward(n, c, h, w, x, gamma, beta, eps, momentum, o->ptr(0), o->ptr(1), o->ptr(2),
                                  runMean, runVar);
        },
        [=](Napi::Env e) { return outsToJs(e, *o, false); });
    return queue(wk, info);
  });
}

Napi::Value BatchNormBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    auto d = ints(info[5], "shape", 4);
    const int64_t n = d[0], c = d[1], h = d[2], w = d[3];
    const float* x = data(info[0], "x", n * c * h * w);
    const float* gamma = optionalData(info[1], "gamma", c);
    const float* mean = data(info[2], "mean", c);
    const float* var = data(info[3], "var", c);
    const float* dy = data(info[4], "dy", n * c * h * w);
    const float eps = static_cast<float>(number(info[6], "eps"));
    const bool frozen = info[7].ToBoolean().Value();
    auto want = wants(info[8], 3);
    auto o = makeOuts({{"dx", want[0] ? n * c * h * w : 0}, {"dgamma", want[1] ? c : 0}, {"dbeta", want[2] ? c : 0}});
    auto* wk = new TrainWorker(
        env, "batchNormBackward",
        [=] { batchNormBackward(n, c, h, w, x, gamma, mean, var, eps, frozen, dy, o->ptr(0), o->ptr(1), o->ptr(2)); },
        [=](Napi::Env e) { return outsToJs(e, *o, false); });
    return queue(wk, info);
  });
}

// ---- element-wise, concat, pooling, linear --------------------------------------------

Napi::Value ReluForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    const int64_t count = lengthOf(info[0], "x");
    const float* x = data(info[0], "x", count);
    auto y = std::make_shared<Tensor>(Shape{count});
    auto* wk = new TrainWorker(env, "reluForward", [=] { reluForward(count, x, y->data()); },
                               [=](Napi::Env e) { return single(e, *y); });
    return queue(wk, info);
  });
}

Napi::Value ReluBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    const int64_t count = lengthOf(info[0], "y");
    const float* y = data(info[0], "y", count);
    const float* dy = data(info[1], "dy", count);
    auto dx = std::make_shared<Tensor>(Shape{count});
    auto* wk = new TrainWorker(env, "reluBackward", [=] { reluBackward(count, y, dy, dx->data()); },
                               [=](Napi::Env e) { return single(e, *dx); });
    return queue(wk, info);
  });
}

Napi::Value AddForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    const int64_t count = lengthOf(info[0], "a");
    const float* a = data(info[0], "a", count);
    const float* b = data(info[1], "b", count);
    auto y = std::make_shared<Tensor>(Shape{count});
    auto* wk = new TrainWorker(env, "addForward", [=] { addForward(count, a, b, y->data()); },
                               [=](Napi::Env e) { return single(e, *y); });
    return queue(wk, info);
  });
}

Napi::Value ConcatForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    const int64_t n = static_cast<int64_t>(number(info[1], "n"));
    Shape cs = shapeFromJs(info[2], "channels");
    const int64_t h = static_cast<int64_t>(number(info[3], "h")), w = static_cast<int64_t>(number(info[4], "w"));
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, "xs must be an array of Float32Arrays");
    auto arr = info[0].As<Napi::Array>();
    if (arr.Length() != cs.size()) throw Napi::RangeError::New(env, "xs and channels must have the same length");
    std::vector<const float*> xs;
    int64_t total = 0;
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      xs.push_back(data(arr.Get(i), "xs[" + std::to_string(i) + "]", n * cs[i] * h * w));
      total += cs[i];
    }
    auto y = std::make_shared<Tensor>(Shape{n * total * h * w});
    auto* wk = new TrainWorker(
        env, "concatForward",
        [=] { concatForward(n, static_cast<int64_t>(cs.size()), cs.data(), h, w, xs.data(), y->data()); },
        [=](Napi::Env e) { return single(e, *y); });
    return queue(wk, info);
  });
}

Napi::Value ConcatBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    const int64_t n = static_cast<int64_t>(number(info[1], "n"));
    Shape cs = shapeFromJs(info[2], "channels");
    const int64_t h = static_cast<int64_t>(number(info[3], "h")), w = static_cast<int64_t>(number(info[4], "w"));
    int64_t total = 0;
    for (int64_t c : cs) total += c;
    const float* dy = data(info[0], "dy", n * total * h * w);
    auto outs = std::make_shared<std::vector<Tensor>>();
    for (int64_t c : cs) outs->emplace_back(Shape{n * c * h * w});
    auto* wk = new TrainWorker(
        env, "concatBackward",
        [=] {
          std::vector<float*> ptrs;
          for (auto& t : *outs) ptrs.push_back(t.data());
          concatBackward(n, static_cast<int64_t>(cs.size()), cs.data(), h, w, dy, ptrs.data());
        },
        [=](Napi::Env e) {
          Napi::Array a = Napi::Array::New(e, outs->size());
          for (size_t i = 0; i < outs->size(); ++i) a.Set(static_cast<uint32_t>(i), toFloat32Array(e, (*outs)[i]));
          return Napi::Value(a);
        });
    return queue(wk, info);
  });
}

Napi::Value GapForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    auto d = ints(info[1], "shape", 4);
    const float* x = data(info[0], "x", d[0] * d[1] * d[2] * d[3]);
    auto y = std::make_shared<Tensor>(Shape{d[0] * d[1]});
    auto* wk = new TrainWorker(env, "globalAvgPoolForward",
                               [=] { globalAvgPoolForward(d[0], d[1], d[2], d[3], x, y->data()); },
                               [=](Napi::Env e) { return single(e, *y); });
    return queue(wk, info);
  });
}

Napi::Value GapBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    auto d = ints(info[1], "shape", 4);
    const float* dy = data(info[0], "dy", d[0] * d[1]);
    auto dx = std::make_shared<Tensor>(Shape{d[0] * d[1] * d[2] * d[3]});
    auto* wk = new TrainWorker(env, "globalAvgPoolBackward",
                               [=] { globalAvgPoolBackward(d[0], d[1], d[2], d[3], dy, dx->data()); },
                               [=](Napi::Env e) { return single(e, *dx); });
    return queue(wk, info);
  });
}

Napi::Value LinearForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    auto d = ints(info[3], "shape", 3);
    const int64_t n = d[0], dd = d[1], k = d[2];
    const float* x = data(info[0], "x", n * dd);
    const float* w = data(info[1], "weight", k * dd);
    const float* b = optionalData(info[2], "bias", k);
    auto y = std::make_shared<Tensor>(Shape{n * k});
    auto* wk = new TrainWorker(env, "linearForward", [=] { linearForward(n, dd, k, x, w, b, y->data()); },
                               [=](Napi::Env e) { return single(e, *y); });
    return queue(wk, info);
  });
}

Napi::Value LinearBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    auto d = ints(info[3], "shape", 3);
    const int64_t n = d[0], dd = d[1], k = d[2];
    const float* x = data(info[0], "x", n * dd);
    const float* w = data(info[1], "weight", k * dd);
    const float* dy = data(info[2], "dy", n * k);
    auto want = wants(info[4], 3);
    auto o = makeOuts({{"dx", want[0] ? n * dd : 0}, {"dw", want[1] ? k * dd : 0}, {"db", want[2] ? k : 0}});
    auto* wk = new TrainWorker(env, "linearBackward",
                               [=] { linearBackward(n, dd, k, x, w, dy, o->ptr(0), o->ptr(1), o->ptr(2)); },
                               [=](Napi::Env e) { return outsToJs(e, *o, false); });
    return queue(wk, info);
  });
}

// maxPool2d geometry: [n, c, h, w, k, stride, pad].
Napi::Value MaxPoolForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    auto g = ints(info[1], "geometry", 7);
    require(g[4] >= 1 && g[5] >= 1 && g[2] + 2 * g[6] >= g[4] && g[3] + 2 * g[6] >= g[4], "bad max-pool geometry");
    const int64_t oh = (g[2] + 2 * g[6] - g[4]) / g[5] + 1, ow = (g[3] + 2 * g[6] - g[4]) / g[5] + 1;
    const float* x = data(info[0], "x", g[0] * g[1] * g[2] * g[3]);
    auto y = std::make_shared<Tensor>(Shape{g[0] * g[1] * oh * ow});
    auto* wk = new TrainWorker(env, "maxPool2dForward",
                               [=] { maxPool2dForward(g[0], g[1], g[2], g[3], g[4], g[5], g[6], x, y->data()); },
                               [=](Napi::Env e) { return single(e, *y); });
    return queue(wk, info);
  });
}

Napi::Value MaxPoolBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    auto g = ints(info[2], "geometry", 7);
    require(g[4] >= 1 && g[5] >= 1 && g[2] + 2 * g[6] >= g[4] && g[3] + 2 * g[6] >= g[4], "bad max-pool geometry");
    const int64_t oh = (g[2] + 2 * g[6] - g[4]) / g[5] + 1, ow = (g[3] + 2 * g[6] - g[4]) / g[5] + 1;
    const float* x = data(info[0], "x", g[0] * g[1] * g[2] * g[3]);
    const float* dy = data(info[1], "dy", g[0] * g[1] * oh * ow);
    auto dx = std::make_shared<Tensor>(Shape{g[0] * g[1] * g[2] * g[3]});
    auto* wk = new TrainWorker(env, "maxPool2dBackward",
                               [=] { maxPool2dBackward(g[0], g[1], g[2], g[3], g[4], g[5], g[6], x, dy, dx->data()); },
                               [=](Napi::Env e) { return single(e, *dx); });
    return queue(wk, info);
  });
}

// ---- losses ------------------------------------------------------------------------------

Napi::Value CompactnessLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    auto d = ints(info[2], "shape", 2);
    const float* f = data(info[0], "features", d[0] * d[1]);
    const float* c = data(info[1], "centre", d[1]);
    auto o = makeOuts({{"grad", d[0] * d[1]}});
    auto* wk = new TrainWorker(env, "compactnessLoss",
                               [=] { o->loss = compactnessLoss(d[0], d[1], f, c, o->ptr(0)); },
                               [=](Napi::Env e) { return outsToJs(e, *o, true); });
    return queue(wk, info);
  });
}

Napi::Value CosineMapLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    auto d = ints(info[2], "shape", 2);
    const float* a = data(info[0], "a", d[0] * d[1]);
    const float* b = data(info[1], "b", d[0] * d[1]);
    const float eps = static_cast<float>(number(info[3], "eps"));
    auto o = makeOuts({{"gradA", d[0] * d[1]}, {"gradB", d[0] * d[1]}});
    auto* wk = new TrainWorker(env, "cosineMapLoss",
                               [=] { o->loss = cosineMapLoss(d[0], d[1], a, b, eps, o->ptr(0), o->ptr(1)); },
                               [=](Napi::Env e) { return outsToJs(e, *o, true); });
    return queue(wk, info);
  });
}

Napi::Value EwcPenalty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    const int64_t count = lengthOf(info[0], "theta");
    const float* theta = data(info[0], "theta", count);
    const float* star = data(info[1], "thetaStar", count);
    const float* fisher = data(info[2], "fisher", count);
    const double lambda = number(info[3], "lambda");
    auto o = makeOuts({{"grad", count}});
    auto* wk = new TrainWorker(
        env, "ewcPenalty",
        [=] {
          std::fill(o->ptr(0), o->ptr(0) + count, 0.f);
          o->loss = ewcPenalty(count, theta, star, fisher, lambda, o->ptr(0));
        },
        [=](Napi::Env e) { return outsToJs(e, *o, true); });
    return queue(wk, info);
  });
}

void init(Napi::Env env, Napi::Object exports) {
  using CS = Conv2dShape;
  using TS = ConvTranspose2dShape;
  exports.Set("trainConv2dForward", Napi::Function::New(env, ConvForward<CS, conv2dForward>));
  exports.Set("trainConv2dBackward", Napi::Function::New(env, ConvBackward<CS, conv2dBackward>));
  exports.Set("trainConvTranspose2dForward", Napi::Function::New(env, ConvForward<TS, convTranspose2dForward>));
  exports.Set("trainConvTranspose2dBackward", Napi::Function::New(env, ConvBackward<TS, convTranspose2dBackward>));
  exports.Set("trainBatchNormForward", Napi::Function::New(env, BatchNormForward));
  exports.Set("trainBatchNormBackward", Napi::Function::New(env, BatchNormBackward));
  exports.Set("trainReluForward", Napi::Function::New(env, ReluForward));
  exports.Set("trainReluBackward", Napi::Function::New(env, ReluBackward));
  exports.Set("trainAddForward", Napi::Function::New(env, AddForward));
  exports.Set("trainConcatForward", Napi::Function::New(env, ConcatForward));
  exports.Set("trainConcatBackward", Napi::Function::New(env, ConcatBackward));
  exports.Set("trainGlobalAvgPoolForward", Napi::Function::New(env, GapForward));
  exports.Set("trainGlobalAvgPoolBackward", Napi::Function::New(env, GapBackward));
  exports.Set("trainMaxPool2dForward", Napi::Function::New(env, MaxPoolForward));
  exports.Set("trainMaxPool2dBackward", Napi::Function::New(env, MaxPoolBackward));
  exports.Set("trainLinearForward", Napi::Function::New(env, LinearForward));
  exports.Set("trainLinearBackward", Napi::Function::New(env, LinearBackward));
  exports.Set("trainCompactnessLoss", Napi::Function::New(env, CompactnessLoss));
  exports.Set("trainCosineMapLoss", Napi::Function::New(env, CosineMapLoss));
  exports.Set("trainEwcPenalty", Napi::Function::New(env, EwcPenalty));
}

}  // namespace

ANOMALENS_REGISTER(train, init);

}  // namespace anomalens::bindings
