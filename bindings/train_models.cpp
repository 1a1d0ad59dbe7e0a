// The parameter store with its optimisers, and the trainable ResNet (which owns two stores:
// parameters and BN buffers). lib/train/params.ts and resnet.ts validate first.
//   new TrainParams(): add / names / info / value / grad / state / setValue / setGrad /
//     setState / setStep / freeze / unfreeze / zeroGrad (sync, O(size) copies), sgdStep / adamStep /
//     clipGradNorm / addEwcPenalty (Promises resolving a number).
//   new TrainParams(network, 'params' | 'buffers'): the same over a TrainResnet's or a TrainRd's
//     stores (train_shared.h).
//   new TrainResnet(arch, lastTap, v2Prefix?); taps(); tapShape(tap, n, h, w); keptFloats();
//     profile() -> { '<stage> <op> forward|backward': seconds }; resetProfile(); release() (drops
//     the kept activations);
//     forward(x, [n, c, h, w], bnTrain, startTap) -> Promise<Float32Array>; backward(dOut) -> Promise;
//     compactnessStep(x, [n, c, h, w], centre, bnTrain, startTap, maxNorm | null, ewcLambda | null,
//     lr, momentum, dampening, weightDecay, nesterov) -> Promise<{ loss, gradNorm, features }> (PANDA's
//     whole step in one call, compactness_step.h).
// A network and the views of its stores share one busy state: while a step, forward or
// backward is in flight, everything that reads or writes the tensors is refused (ERR_BUSY).
// Not NativeObjectWrap: these objects have no search / save / load / dispose.
#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "anomalens/train/compactness_step.h"
#include "anomalens/train/ewc.h"
#include "anomalens/train/optim.h"
#include "anomalens/train/params.h"
#include "anomalens/train/resnet.h"
#include "core/args.h"
#include "core/busy.h"
#include "core/instance.h"
#include "core/module.h"
#include "core/worker.h"
#include "train_glue.h"
#include "train_shared.h"

namespace anomalens::bindings {
namespace {

using namespace anomalens::train;

// A store (or a network's two) and the busy state of all of it (train_shared.h); a standalone
// store has neither net nor owner.
using Shared = TrainShared;

std::shared_ptr<Shared> sharedOf(Napi::Value v);

// torch.optim.SGD's options from arguments first .. first + 4: lr, momentum, dampening,
// weightDecay, nesterov (checked by sgdStep itself).
SgdOptions sgdOptions(const ArgReader& args, const Napi::CallbackInfo& info, int first) {
  SgdOptions o;
  o.lr = args.number(first, "lr");
  o.momentum = args.number(first + 1, "momentum");
  o.dampening = args.number(first + 2, "dampening");
  o.weightDecay = args.number(first + 3, "weightDecay");
  o.nesterov = info[first + 4].ToBoolean().Value();
  return o;
}

class TrainParamsWrap : public Napi::ObjectWrap<TrainParamsWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    using W = TrainParamsWrap;
    return DefineClass(env, "TrainParams",
                       {InstanceMethod("add", &W::Add), InstanceMethod("names", &W::Names),
                        InstanceMethod("info", &W::Info), InstanceMethod("value", &W::Value),
                        InstanceMethod("grad", &W::Grad), InstanceMethod("state", &W::State),
                        InstanceMethod("setValue", &W::SetValue), InstanceMethod("setGrad", &W::SetGrad),
                        InstanceMethod("setState", &W::SetState), InstanceMethod("setStep", &W::SetStep),
                        InstanceMethod("freeze", &W::Freeze),
                        InstanceMethod("unfreeze", &W::Unfreeze), InstanceMethod("zeroGrad", &W::ZeroGrad),
                        InstanceMethod("sgdStep", &W::SgdStep), InstanceMethod("adamStep", &W::AdamStep),
                        InstanceMethod("clipGradNorm", &W::ClipGradNorm),
                        InstanceMethod("addEwcPenalty", &W::AddEwcPenalty)});
  }
  explicit TrainParamsWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainParamsWrap>(info) {
    if (info.Length() >= 1 && info[0].IsObject()) {
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
    if (!shared_->busy.mayStart(true))
      throw makeError(env, "ERR_BUSY", "the parameter store is in use by an optimiser step in flight");
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
      ArgReader args(info, "");
      const std::string name = args.string(0, "name");
      const Shape shape = args.shape(1, "shape");
      store().add(name, shape, args.float32View(2, "value", shape).data);
      return env.Undefined();
    });
  }
  Napi::Value Names(const Napi::CallbackInfo& info) { return stringsToJs(info.Env(), store().names()); }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&] {
      const Param& p = store().at(ArgReader(info, "").string(0, "name"));
      Napi::Object o = Napi::Object::New(env);
      o.Set("shape", shapeToJs(env, p.shape()));
      o.Set("frozen", p.frozen());
      o.Set("hasGrad", p.hasGrad());
      o.Set("step", p.step);
      o.Set("stateKeys", stringsToJs(env, p.stateKeys()));
      return Napi::Value(o);
    });
  }
  Napi::Value Value(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      const Param& p = store().at(ArgReader(info, "").string(0, "name"));
      return Napi::Value(copyOut(env, p.value(), p.numel()));
    });
  }
  Napi::Value Grad(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      const Param& p = store().at(ArgReader(info, "").string(0, "name"));
      if (!p.hasGrad()) return env.Null();
      return Napi::Value(copyOut(env, p.gradData(), p.numel()));
    });
  }
  Napi::Value State(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      ArgReader args(info, "");
      const Param& p = store().at(args.string(0, "name"));
      const Tensor* t = p.state(args.string(1, "key"));
      if (!t) return env.Null();
      return Napi::Value(copyOut(env, t->data(), t->numel()));
    });
  }
  Napi::Value SetValue(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      ArgReader args(info, "");
      Param& p = store().at(args.string(0, "name"));
      const float* v = trainData(args, 1, "value", p.numel());
      std::copy(v, v + p.numel(), p.value());
      return env.Undefined();
    });
  }
  Napi::Value SetGrad(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      ArgReader args(info, "");
      Param& p = store().at(args.string(0, "name"));
      const float* v = trainData(args, 1, "grad", p.numel());
      std::copy(v, v + p.numel(), p.grad());
      return env.Undefined();
    });
  }
  Napi::Value SetState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      ArgReader args(info, "");
      Param& p = store().at(args.string(0, "name"));
      const std::string key = args.string(1, "key");
      p.setState(key, trainData(args, 2, "state", p.numel()));
      return env.Undefined();
    });
  }
  // Adam's step count of one parameter (a resumed run restores it with exp_avg / exp_avg_sq).
  Napi::Value SetStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      ArgReader args(info, "");
      Param& p = store().at(args.string(0, "name"));
      p.step = static_cast<double>(args.integer(1, "step"));
      return env.Undefined();
    });
  }
  Napi::Value Freeze(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    const std::string prefix = ArgReader(info, "").string(0, "prefix");
    return Napi::Number::New(env, static_cast<double>(store().freeze(prefix)));
  }
  Napi::Value Unfreeze(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    const std::string prefix = ArgReader(info, "").string(0, "prefix");
    return Napi::Number::New(env, static_cast<double>(store().unfreeze(prefix)));
  }
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    notBusy(info.Env());
    store().zeroGrad();
    return info.Env().Undefined();
  }

  // Runs `fn` over the store on a worker that holds the store (and its network) busy;
  // resolves the number it returns.
  Napi::Value runStep(const Napi::CallbackInfo& info, const char* name, std::function<double(ParamStore&)> fn) {
    Napi::Env env = info.Env();
    notBusy(env);
    auto result = std::make_shared<double>(0);
    auto store = storePtr_;
    auto* w = new TaskWorker(
        env, name, [=](FiniteCheck&) { *result = fn(*store); },
        [result](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *result); });
    w->hold(&shared_->busy, true, info.This(), shared_);
    return w->start();
  }
  Napi::Value SgdStep(const Napi::CallbackInfo& info) {
    const SgdOptions o = sgdOptions(ArgReader(info, ""), info, 0);
    return runStep(info, "sgdStep", [o](ParamStore& s) {
      sgdStep(s, o);
      return 0.0;
    });
  }
  Napi::Value AdamStep(const Napi::CallbackInfo& info) {
    ArgReader args(info, "");
    AdamOptions o;
    o.lr = args.number(0, "lr");
    o.beta1 = args.number(1, "beta1");
    o.beta2 = args.number(2, "beta2");
    o.eps = args.number(3, "eps");
    o.weightDecay = args.number(4, "weightDecay");
    return runStep(info, "adamStep", [o](ParamStore& s) {
      adamStep(s, o);
      return 0.0;
    });
  }
  Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
    const double maxNorm = ArgReader(info, "").number(0, "maxNorm");
    return runStep(info, "clipGradNorm", [maxNorm](ParamStore& s) { return clipGradNorm(s, maxNorm); });
  }
  Napi::Value AddEwcPenalty(const Napi::CallbackInfo& info) {
    const double lambda = ArgReader(info, "").number(0, "lambda");
    return runStep(info, "addEwcPenalty", [lambda](ParamStore& s) { return addEwcPenalty(s, lambda); });
  }

  std::shared_ptr<Shared> shared_;
  std::shared_ptr<ParamStore> storePtr_;
};

class TrainResnetWrap : public Napi::ObjectWrap<TrainResnetWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    using W = TrainResnetWrap;
    return DefineClass(env, "TrainResnet",
                       {InstanceMethod("taps", &W::Taps), InstanceMethod("tapShape", &W::TapShape),
                        InstanceMethod("keptFloats", &W::KeptFloats), InstanceMethod("profile", &W::Profile),
                        InstanceMethod("resetProfile", &W::ResetProfile), InstanceMethod("release", &W::Release),
                        InstanceMethod("forward", &W::Forward), InstanceMethod("backward", &W::Backward),
                        InstanceMethod("compactnessStep", &W::CompactnessStep)});
  }
  explicit TrainResnetWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainResnetWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString() || !info[1].IsString()) throw Napi::TypeError::New(env, "arch and lastTap must be strings");
    const std::string arch = info[0].As<Napi::String>().Utf8Value(), lastTap = info[1].As<Napi::String>().Utf8Value();
    const std::string prefix = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
    guard(env, [&] {
      shared_ = std::make_shared<Shared>();
      shared_->net = std::make_shared<TrainableResnet>(arch, lastTap, prefix);
      shared_->params = shared_->net->sharedParams();
      shared_->buffers = std::shared_ptr<ParamStore>(shared_->net, &shared_->net->buffers());
      return 0;
    });
  }
  std::shared_ptr<Shared> shared() const { return shared_; }

 private:
  void notBusy(Napi::Env env) {
    if (!shared_->busy.mayStart(true))
      throw makeError(env, "ERR_BUSY", "the network is in use by an operation in flight");
  }
  // Holds the network (and the views of its stores) busy from queueing to settling; the first
  // argument's memory (x, dOut) is pinned.
  Napi::Value startHeld(TaskWorker* w, const Napi::CallbackInfo& info) {
    w->hold(&shared_->busy, true, info.This(), shared_);
    w->pin(info[0]);
    return w->start();
  }
  // The batch [n, c, h, w] of arguments 0 (x) and 1 (shape).
  struct Batch {
    Shape d;
    const float* x = nullptr;
  };
  static Batch batch(const ArgReader& args) {
    Batch b;
    b.d = trainSizes(args, 1, "shape", 4);
    b.x = trainData(args, 0, "x", b.d[0] * b.d[1] * b.d[2] * b.d[3]);
    return b;
  }
  Napi::Value Taps(const Napi::CallbackInfo& info) { return stringsToJs(info.Env(), shared_->net->taps()); }
  Napi::Value TapShape(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&] {
      ArgReader args(info, "");
      const std::string tap = args.string(0, "tap");
      const Shape s = shared_->net->tapShape(tap, args.integer(1, "n"), args.integer(2, "h"), args.integer(3, "w"));
      return Napi::Value(shapeToJs(env, s));
    });
  }
  Napi::Value KeptFloats(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(shared_->net->keptFloats()));
  }
  Napi::Value Profile(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    Napi::Object o = Napi::Object::New(env);
    for (const auto& [k, v] : shared_->net->profile()) o.Set(k, v);
    return o;
  }
  Napi::Value ResetProfile(const Napi::CallbackInfo& info) {
    notBusy(info.Env());
    shared_->net->resetProfile();
    return info.Env().Undefined();
  }
  Napi::Value Release(const Napi::CallbackInfo& info) {
    notBusy(info.Env());
    shared_->net->release();
    return info.Env().Undefined();
  }
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      const Batch b = batch(ArgReader(info, ""));
      const bool bnTrain = info[2].ToBoolean().Value();
      const std::string start = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "input";
      auto net = shared_->net;
      auto out = std::make_shared<Tensor>();
      auto* w = new TaskWorker(
          env, "resnetForward",
          [=](FiniteCheck&) { *out = net->forward(b.x, b.d[0], b.d[1], b.d[2], b.d[3], bnTrain, start); },
          [out](Napi::Env e) -> Napi::Value { return toFloat32Array(e, *out); });
      return startHeld(w, info);
    });
  }
  Napi::Value Backward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      const int64_t count = numel(shared_->net->outputShape());
      if (count == 0) throw makeError(env, "ERR_INVALID_ARGUMENT", "backward: no forward to differentiate");
      const float* dy = trainData(ArgReader(info, ""), 0, "dOut", count);
      auto net = shared_->net;
      auto* w = new TaskWorker(env, "resnetBackward", [=](FiniteCheck&) { net->backward(dy); });
      return startHeld(w, info);
    });
  }

  Napi::Value CompactnessStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      ArgReader args(info, "");
      const Batch b = batch(args);
      auto net = shared_->net;
      const int64_t channels = net->tapShape(net->taps().back(), 1, 1, 1)[1];
      const float* centre = trainData(args, 2, "centre", channels);
      CompactnessStepOptions o;
      o.bnTrain = info[3].ToBoolean().Value();
      o.startTap = info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : "input";
      o.clip = args.present(5);
      if (o.clip) o.maxNorm = args.number(5, "maxNorm");
      o.ewc = args.present(6);
      if (o.ewc) o.ewcLambda = args.number(6, "ewcLambda");
      o.sgd = sgdOptions(args, info, 7);
      auto res = std::make_shared<CompactnessStepResult>();
      auto* w = new TaskWorker(
          env, "compactnessStep",
          [=](FiniteCheck&) { *res = compactnessStep(*net, b.x, b.d[0], b.d[1], b.d[2], b.d[3], centre, o); },
          [res, clip = o.clip](Napi::Env e) -> Napi::Value {
            Napi::Object r = Napi::Object::New(e);
            r.Set("loss", res->loss);
            r.Set("gradNorm", clip ? Napi::Value(Napi::Number::New(e, res->gradNorm)) : e.Null());
            r.Set("features", toFloat32Array(e, res->features));
            return r;
          });
      w->pin(info[2]);  // the centre; startHeld pins x
      return startHeld(w, info);
    });
  }

  std::shared_ptr<Shared> shared_;
};

// The stores of a TrainResnet or a TrainRd of this environment (never an object of another
// class: Unwrap would reinterpret it).
std::shared_ptr<Shared> sharedOf(Napi::Value v) {
  if (auto rd = trainRdShared(v)) return rd;
  Napi::Object o = v.As<Napi::Object>();
  if (!o.InstanceOf(addonData(v.Env()).trainResnet.Value()))
    throw Napi::TypeError::New(v.Env(), "expected a TrainResnet or a TrainRd");
  TrainResnetWrap* net = Napi::ObjectWrap<TrainResnetWrap>::Unwrap(o);
  if (!net) throw Napi::TypeError::New(v.Env(), "expected a TrainResnet or a TrainRd");
  return net->shared();
}

void init(Napi::Env env, Napi::Object exports) {
  Napi::Function resnet = TrainResnetWrap::define(env);
  addonData(env).trainResnet = Napi::Persistent(resnet);
  exports.Set("TrainParams", TrainParamsWrap::define(env));
  exports.Set("TrainResnet", resnet);
}

}  // namespace
ANOMALENS_REGISTER(train_models, init);
}  // namespace anomalens::bindings
