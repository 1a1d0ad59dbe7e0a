// The parameter store and the trainable ResNet (lib/train/params.ts, lib/train/resnet.ts):
//   new TrainParams(): add / names / info / value / grad / state / setValue / setGrad /
//     setState / freeze / unfreeze / zeroGrad (sync, O(size) copies), sgdStep / adamStep /
//     clipGradNorm / addEwcPenalty (Promises; the store is busy meanwhile).
// new TrainResnet(arch, lastTap, v2Prefix?): taps / tapShape / keptFloats / profile / resetProfile / release
//   (sync), forward(x, [n, c, h, w], bnTrain, startTap) and backward(dOut) (Promises; busy meanwhile).
// A TrainParams made with (resnet, "params" | "buffers") is a view of that network's store and
// shares its busy state.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "anomalens/train/ewc.h"
#include "anomalens/train/optim.h"
#include "anomalens/train/params.h"
#include "anomalens/train/resnet.h"
#include "train_glue.h"
#include "train_shared.h"

namespace anomalens::bindings {
namespace {

using namespace anomalens::train;
using namespace train_glue;

// ---- parameter store ---------------------------------------------------------------------

// A store and its busy state, shared by a network (TrainResnet, TrainRd) and the TrainParams
// views of it (train_shared.h).
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
                        InstanceMethod("clipGradNorm", &TrainParams::ClipGradNorm),
                        InstanceMethod("addEwcPenalty", &TrainParams::AddEwcPenalty)});
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

  Napi::Value AddEwcPenalty(const Napi::CallbackInfo& info) {
    const double lambda = number(info[0], "lambda");
    return guard(info.Env(), [&] { return runStep(info, "addEwcPenalty", [this, lambda] { return addEwcPenalty(store(), lambda); }); });
  }

  std::shared_ptr<Shared> shared_;
  std::shared_ptr<ParamStore> storePtr_;
};

// ---- trainable ResNet ---------------------------------------------------------------------

// new TrainResnet(arch, lastTap, v2Prefix?); taps(); tapShape(tap, n, h, w); keptFloats();
// forward(x, [n, c, h, w], bnTrain, startTap) -> Promise<Float32Array>; backward(dOut) -> Promise.
class TrainResnet : public Napi::ObjectWrap<TrainResnet> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "TrainResnet",
                       {InstanceMethod("taps", &TrainResnet::Taps), InstanceMethod("tapShape", &TrainResnet::TapShape),
                        InstanceMethod("keptFloats", &TrainResnet::KeptFloats),
                        InstanceMethod("profile", &TrainResnet::Profile),
                        InstanceMethod("resetProfile", &TrainResnet::ResetProfile),
                        InstanceMethod("release", &TrainResnet::Release),
                        InstanceMethod("forward", &TrainResnet::Forward),
                        InstanceMethod("backward", &TrainResnet::Backward)});
  }
  explicit TrainResnet(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainResnet>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString() || !info[1].IsString()) throw Napi::TypeError::New(env, "arch and lastTap must be strings");
    guard(env, [&] {
      shared_ = std::make_shared<Shared>();
      const std::string prefix = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
      shared_->net = std::make_shared<TrainableResnet>(info[0].As<Napi::String>().Utf8Value(),
                                                       info[1].As<Napi::String>().Utf8Value(), prefix);
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
  Napi::Value Profile(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    Napi::Object o = Napi::Object::New(env);
    for (const auto& [k, v] : shared_->net->profile()) o.Set(k, v);
    return o;
  }
  Napi::Value Release(const Napi::CallbackInfo& info) {
    notBusy(info.Env());
    shared_->net->release();
    return info.Env().Undefined();
  }
  Napi::Value ResetProfile(const Napi::CallbackInfo& info) {
    notBusy(info.Env());
    shared_->net->resetProfile();
    return info.Env().Undefined();
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
  exports.Set("TrainParams", TrainParams::define(env));
  exports.Set("TrainResnet", TrainResnet::define(env));
}

}  // namespace

ANOMALENS_REGISTER(train_models, init);

}  // namespace anomalens::bindings
