// Training ops, losses, and the parameter store with its optimisers (lib/train/ validates
// first; this file re-checks what protects memory: element counts). All ops are Promises:
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
//   trainLinearForward(x, w, b|null, [n, d, k]) -> y; trainLinearBackward(x, w, dy, [n,d,k], wants)
//   trainCompactnessLoss(f, c, [n, d]) -> {loss, grad}; trainCosineMapLoss(a, b, [n, m], eps)
//     -> {loss, gradA, gradB}; trainEwcPenalty(theta, thetaStar, fisher, lambda) -> {loss, grad}
//   new TrainParams(): add / names / info / value / grad / state / setValue / setGrad /
//     setState / freeze / unfreeze / zeroGrad (sync, O(size) copies), sgdStep / adamStep /
//     clipGradNorm (Promises; the store is busy meanwhile).
// Outputs are new Float32Arrays over native memory. Running statistics are updated in place.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "anomalens/train/losses.h"
#include "anomalens/train/ops.h"
#include "anomalens/train/optim.h"
#include "anomalens/train/params.h"
#include "anomalens/train/resnet.h"
#include "common.h"
#include "train_shared.h"

namespace anomalens::bindings {
namespace {

using namespace anomalens::train;

class TrainWorker : public PromiseWorker {
 public:
  TrainWorker(Napi::Env env, const char* name, std::function<void()> compute,
              std::function<Napi::Value(Napi::Env)> result, std::function<void()> finished = {})
      : PromiseWorker(env, name), compute_(std::move(compute)), result_(std::move(result)),
        finished_(std::move(finished)) {}

 protected:
  void compute() override { compute_(); }
  Napi::Value result(Napi::Env env) override { return result_(env); }
  void finished() override {
    if (finished_) finished_();
  }

 private:
  std::function<void()> compute_;
  std::function<Napi::Value(Napi::Env)> result_;
  std::function<void()> finished_;
};

Napi::Value queue(TrainWorker* w, const Napi::CallbackInfo& info) {
  for (size_t i = 0; i < info.Length(); ++i)
    if (info[i].IsObject()) w->pin(info[i]);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

bool isNone(Napi::Value v) { return v.IsUndefined() || v.IsNull(); }

const float* data(Napi::Value v, const std::string& what, int64_t count) {
  return float32View(v, what, {count}).data;
}
float* mutableData(Napi::Value v, const std::string& what, int64_t count) {
  return const_cast<float*>(data(v, what, count));
}
const float* optionalData(Napi::Value v, const std::string& what, int64_t count) {
  return isNone(v) ? nullptr : data(v, what, count);
}

std::vector<int64_t> ints(Napi::Value v, const std::string& what, size_t count) {
  Shape s = shapeFromJs(v, what);
  if (s.size() != count)
    throw Napi::RangeError::New(v.Env(), what + " must have " + std::to_string(count) + " entries");
  return s;
}

double number(Napi::Value v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

// Which gradients are wanted: [dx, dw, db] booleans.
std::vector<bool> wants(Napi::Value v, size_t count) {
  std::vector<bool> out(count, true);
  if (isNone(v)) return out;
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), "wants must be an array of booleans");
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < count && i < a.Length(); ++i) out[i] = a.Get(i).ToBoolean().Value();
  return out;
}

// Output tensors shared between compute() and result().
struct Outs {
  std::vector<Tensor> t;
  std::vector<std::string> names;
  double loss = 0;
  float* ptr(size_t i) { return t[i].empty() ? nullptr : t[i].data(); }
};

Napi::Value outsToJs(Napi::Env env, const Outs& o, bool withLoss) {
  Napi::Object r = Napi::Object::New(env);
  for (size_t i = 0; i < o.t.size(); ++i)
    r.Set(o.names[i], o.t[i].empty() ? env.Null() : Napi::Value(toFloat32Array(env, o.t[i])));
  if (withLoss) r.Set("loss", Napi::Number::New(env, o.loss));
  return r;
}

std::shared_ptr<Outs> makeOuts(std::vector<std::pair<std::string, int64_t>> spec) {
  auto o = std::make_shared<Outs>();
  for (auto& [name, count] : spec) {
    o->names.push_back(name);
    o->t.push_back(count > 0 ? Tensor({count}) : Tensor());
  }
  return o;
}

Napi::Value single(Napi::Env env, const Tensor& t) { return toFloat32Array(env, t); }

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

int64_t lengthOf(Napi::Value v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Float32Array");
  return static_cast<int64_t>(v.As<Napi::Float32Array>().ElementLength());
}

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

// ---- parameter store ---------------------------------------------------------------------

// A store and its busy state, shared by a network and the TrainParams views of it.
using Shared = TrainShared;

class TrainResnet;
std::shared_ptr<Shared> sharedOf(Napi::Value v);

class TrainParams : public Napi::ObjectWrap<TrainParams> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "TrainParams",
                       {InstanceMethod("add", &TrainParams::Add), InstanceMethod("names", &TrainParams::Names),
                        InstanceMethod("info", &TrainParams::Info), InstanceMethod("value", &TrainParams::Value),
                        InstanceMethod("grad", &TrainParams::Grad), InstanceMethod("state", &TrainParams::State),
                        InstanceMethod("setValue", &TrainParams::SetValue),
                        InstanceMethod("setGrad", &TrainParams::SetGrad),
                        InstanceMethod("setState", &TrainParams::SetState),
                        InstanceMethod("freeze", &TrainParams::Freeze),
                        InstanceMethod("unfreeze", &TrainParams::Unfreeze),
                        InstanceMethod("zeroGrad", &TrainParams::ZeroGrad),
                        InstanceMethod("sgdStep", &TrainParams::SgdStep),
                        InstanceMethod("adamStep", &TrainParams::AdamStep),
                        InstanceMethod("clipGradNorm", &TrainParams::ClipGradNorm)});
  }
  // new TrainParams(): a standalone store; new TrainParams(resnet, 'params' | 'buffers'): a view
  // of a TrainResnet's parameters or BN buffers.
  explicit TrainParams(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainParams>(info) {
    if (info.Length() >= 1 && (info[0].IsObject() || info[0].IsExternal())) {
      shared_ = sharedOf(info[0]);
      const bool buffers = info[1].IsString() && info[1].As<Napi::String>().Utf8Value() == "buffers";
      storePtr_ = buffers ? shared_->buffers : shared_->params;
    } else {
      shared_ = std::make_shared<Shared>();
      shared_->params = std::make_shared<ParamStore>();
      storePtr_ = shared_->params;
    }
  }

 private:
  ParamStore& store() { return *storePtr_; }
  void notBusy(Napi::Env env) {
    if (shared_->busy) throw makeError(env, "ERR_BUSY", "the parameter store is in use by an optimiser step in flight");
  }
  std::string nameArg(const Napi::CallbackInfo& info) {
    if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "name must be a string");
    return info[0].As<Napi::String>().Utf8Value();
  }
  static Napi::Float32Array copyOut(Napi::Env env, const float* src, int64_t count) {
    Tensor t({count});
    std::copy(src, src + count, t.data());
    return toFloat32Array(env, t);
  }

  Napi::Value Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      const std::string name = nameArg(info);
      Shape shape = shapeFromJs(info[1], "shape");
      const float* v = float32View(info[2], "value", shape).data;
      store().add(name, shape, v);
      return env.Undefined();
    });
  }
  Napi::Value Names(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto names = store().names();
    Napi::Array a = Napi::Array::New(env, names.size());
    for (size_t i = 0; i < names.size(); ++i) a.Set(static_cast<uint32_t>(i), names[i]);
    return a;
  }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&] {
      const Param& p = store().at(nameArg(info));
      Napi::Object o = Napi::Object::New(env);
      o.Set("shape", shapeToJs(env, p.shape()));
      o.Set("frozen", p.frozen());
      o.Set("hasGrad", p.hasGrad());
      o.Set("step", p.step);
      auto keys = p.stateKeys();
      Napi::Array a = Napi::Array::New(env, keys.size());
      for (size_t i = 0; i < keys.size(); ++i) a.Set(static_cast<uint32_t>(i), keys[i]);
      o.Set("stateKeys", a);
      return Napi::Value(o);
    });
  }
  Napi::Value Value(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      const Param& p = store().at(nameArg(info));
      return Napi::Value(copyOut(env, p.value(), p.numel()));
    });
  }
  Napi::Value Grad(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      const Param& p = store().at(nameArg(info));
      if (!p.hasGrad()) return env.Null();
      return Napi::Value(copyOut(env, p.gradData(), p.numel()));
    });
  }
  Napi::Value State(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      const Param& p = store().at(nameArg(info));
      if (!info[1].IsString()) throw Napi::TypeError::New(env, "key must be a string");
      const Tensor* t = p.state(info[1].As<Napi::String>().Utf8Value());
      if (!t) return env.Null();
      return Napi::Value(copyOut(env, t->data(), t->numel()));
    });
  }
  Napi::Value SetValue(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      Param& p = store().at(nameArg(info));
      const float* v = data(info[1], "value", p.numel());
      std::copy(v, v + p.numel(), p.value());
      return env.Undefined();
    });
  }
  Napi::Value SetGrad(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      Param& p = store().at(nameArg(info));
      const float* v = data(info[1], "grad", p.numel());
      std::copy(v, v + p.numel(), p.grad());
      return env.Undefined();
    });
  }
  Napi::Value SetState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      Param& p = store().at(nameArg(info));
      if (!info[1].IsString()) throw Napi::TypeError::New(env, "key must be a string");
      p.setState(info[1].As<Napi::String>().Utf8Value(), data(info[2], "state", p.numel()));
      return env.Undefined();
    });
  }
  Napi::Value Freeze(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "prefix must be a string");
    return Napi::Number::New(env, static_cast<double>(store().freeze(info[0].As<Napi::String>().Utf8Value())));
  }
  Napi::Value Unfreeze(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "prefix must be a string");
    return Napi::Number::New(env, static_cast<double>(store().unfreeze(info[0].As<Napi::String>().Utf8Value())));
  }
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    notBusy(info.Env());
    store().zeroGrad();
    return info.Env().Undefined();
  }

  Napi::Value runStep(const Napi::CallbackInfo& info, const char* name, std::function<double()> fn) {
    Napi::Env env = info.Env();
    notBusy(env);
    shared_->busy = true;
    auto result = std::make_shared<double>(0);
    auto* wk = new TrainWorker(
        env, name, [=] { *result = fn(); }, [=](Napi::Env e) { return Napi::Number::New(e, *result); },
        [sh = shared_] { sh->busy = false; });
    wk->pin(info.This());
    Napi::Promise p = wk->promise();
    wk->Queue();
    return p;
  }
  Napi::Value SgdStep(const Napi::CallbackInfo& info) {
    SgdOptions o;
    o.lr = number(info[0], "lr");
    o.momentum = number(info[1], "momentum");
    o.dampening = number(info[2], "dampening");
    o.weightDecay = number(info[3], "weightDecay");
    o.nesterov = info[4].ToBoolean().Value();
    return guard(info.Env(), [&] {
      return runStep(info, "sgdStep", [this, o] {
        sgdStep(store(), o);
        return 0.0;
      });
    });
  }
  Napi::Value AdamStep(const Napi::CallbackInfo& info) {
    AdamOptions o;
    o.lr = number(info[0], "lr");
    o.beta1 = number(info[1], "beta1");
    o.beta2 = number(info[2], "beta2");
    o.eps = number(info[3], "eps");
    o.weightDecay = number(info[4], "weightDecay");
    return guard(info.Env(), [&] {
      return runStep(info, "adamStep", [this, o] {
        adamStep(store(), o);
        return 0.0;
      });
    });
  }
  Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
    const double maxNorm = number(info[0], "maxNorm");
    return guard(info.Env(), [&] { return runStep(info, "clipGradNorm", [this, maxNorm] { return clipGradNorm(store(), maxNorm); }); });
  }

  std::shared_ptr<Shared> shared_;
  std::shared_ptr<ParamStore> storePtr_;
};

// ---- trainable ResNet ---------------------------------------------------------------------

// new TrainResnet(arch, lastTap); taps(); tapShape(tap, n, h, w); keptFloats();
// forward(x, [n, c, h, w], bnTrain, startTap) -> Promise<Float32Array>; backward(dOut) -> Promise.
class TrainResnet : public Napi::ObjectWrap<TrainResnet> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "TrainResnet",
                       {InstanceMethod("taps", &TrainResnet::Taps), InstanceMethod("tapShape", &TrainResnet::TapShape),
                        InstanceMethod("keptFloats", &TrainResnet::KeptFloats),
                        InstanceMethod("forward", &TrainResnet::Forward),
                        InstanceMethod("backward", &TrainResnet::Backward)});
  }
  explicit TrainResnet(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainResnet>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString() || !info[1].IsString()) throw Napi::TypeError::New(env, "arch and lastTap must be strings");
    guard(env, [&] {
      shared_ = std::make_shared<Shared>();
      shared_->net = std::make_shared<TrainableResnet>(info[0].As<Napi::String>().Utf8Value(),
                                                       info[1].As<Napi::String>().Utf8Value());
      shared_->params = shared_->net->sharedParams();
      shared_->buffers = std::shared_ptr<ParamStore>(shared_->net, &shared_->net->buffers());
      return 0;
    });
  }
  std::shared_ptr<Shared> shared() const { return shared_; }

 private:
  void notBusy(Napi::Env env) {
    if (shared_->busy) throw makeError(env, "ERR_BUSY", "the network is in use by an operation in flight");
  }
  Napi::Value Taps(const Napi::CallbackInfo& info) {
    auto taps = shared_->net->taps();
    Napi::Array a = Napi::Array::New(info.Env(), taps.size());
    for (size_t i = 0; i < taps.size(); ++i) a.Set(static_cast<uint32_t>(i), taps[i]);
    return a;
  }
  Napi::Value TapShape(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&] {
      if (!info[0].IsString()) throw Napi::TypeError::New(env, "tap must be a string");
      Shape s = shared_->net->tapShape(info[0].As<Napi::String>().Utf8Value(),
                                       static_cast<int64_t>(number(info[1], "n")),
                                       static_cast<int64_t>(number(info[2], "h")),
                                       static_cast<int64_t>(number(info[3], "w")));
      return Napi::Value(shapeToJs(env, s));
    });
  }
  Napi::Value KeptFloats(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(shared_->net->keptFloats()));
  }
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      auto d = ints(info[1], "shape", 4);
      const float* x = data(info[0], "x", d[0] * d[1] * d[2] * d[3]);
      const bool bnTrain = info[2].ToBoolean().Value();
      const std::string start = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "input";
      auto sh = shared_;
      auto out = std::make_shared<Tensor>();
      sh->busy = true;
      auto* wk = new TrainWorker(
          env, "resnetForward", [=] { *out = sh->net->forward(x, d[0], d[1], d[2], d[3], bnTrain, start); },
          [=](Napi::Env e) { return single(e, *out); }, [sh] { sh->busy = false; });
      wk->pin(info.This());
      return queue(wk, info);
    });
  }
  Napi::Value Backward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      const int64_t count = numel(shared_->net->outputShape());
      if (count == 0) throw makeError(env, "ERR_INVALID_ARGUMENT", "backward: no forward to differentiate");
      const float* dy = data(info[0], "dOut", count);
      auto sh = shared_;
      sh->busy = true;
      auto* wk = new TrainWorker(
          env, "resnetBackward", [=] { sh->net->backward(dy); }, [](Napi::Env e) { return e.Undefined(); },
          [sh] { sh->busy = false; });
      wk->pin(info.This());
      return queue(wk, info);
    });
  }

  std::shared_ptr<Shared> shared_;
};

std::shared_ptr<Shared> sharedOf(Napi::Value v) {
  if (auto h = sharedFromHandle(v)) return h;
  Napi::Object o = v.As<Napi::Object>();
  TrainResnet* net = Napi::ObjectWrap<TrainResnet>::Unwrap(o);
  if (!net) throw Napi::TypeError::New(v.Env(), "expected a TrainResnet");
  return net->shared();
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
  exports.Set("trainLinearForward", Napi::Function::New(env, LinearForward));
  exports.Set("trainLinearBackward", Napi::Function::New(env, LinearBackward));
  exports.Set("trainCompactnessLoss", Napi::Function::New(env, CompactnessLoss));
  exports.Set("trainCosineMapLoss", Napi::Function::New(env, CosineMapLoss));
  exports.Set("trainEwcPenalty", Napi::Function::New(env, EwcPenalty));
  exports.Set("TrainParams", TrainParams::define(env));
  exports.Set("TrainResnet", TrainResnet::define(env));
}

}  // namespace

ANOMALENS_REGISTER(train, init);

}  // namespace anomalens::bindings
