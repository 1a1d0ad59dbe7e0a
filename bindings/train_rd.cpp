// Reverse Distillation's trainable part (lib/train/rd.ts validates first; this file re-checks
// what protects memory: element counts).
//   new TrainRd(arch); new TrainParams(rd, 'params' | 'buffers') views its stores
//     (train_shared.h); tapChannels(i); keptFloats();
//   forward([f1, f2, f3], n, [h1, h2, h3], [w1, w2, w3], bnTrain, record) -> Promise<[o1, o2, o3]>
//   backward([g1, g2, g3]) -> Promise<void>
//   trainStep([f1, f2, f3], n, h, w, lr, beta1, beta2, eps, weightDecay, pixelLoss)
//     -> Promise<{ loss, scaleLosses: [l1, l2, l3], seconds: { forward, loss, backward, adam } }>
//   trainCosinePixelLoss(a, b, [n, c, hw], eps) -> Promise<{ loss, gradA, gradB }>
// Teacher features are read in place (pinned until the work is done); outputs are new
// Float32Arrays over native memory. The student and the views of its stores share one busy
// state: every operation holds it exclusively. No finite check, as the other training bindings.
#include <array>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "anomalens/train/loss_pixel_cosine.h"
#include "anomalens/train/optim.h"
#include "anomalens/train/rd.h"
#include "core/args.h"
#include "core/instance.h"
#include "core/module.h"
#include "core/worker.h"
#include "train_glue.h"
#include "train_shared.h"

namespace anomalens::bindings {
namespace {

using namespace anomalens::train;

class TrainRdWrap : public Napi::ObjectWrap<TrainRdWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    using W = TrainRdWrap;
    return DefineClass(env, "TrainRd",
                       {InstanceMethod("tapChannels", &W::TapChannels), InstanceMethod("keptFloats", &W::KeptFloats),
                        InstanceMethod("forward", &W::Forward), InstanceMethod("backward", &W::Backward),
                        InstanceMethod("trainStep", &W::TrainStep)});
  }
  explicit TrainRdWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainRdWrap>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "arch must be a string");
    guard(env, [&] {
      rd_ = std::make_shared<RdStudent>(RdConfig::forTeacher(info[0].As<Napi::String>().Utf8Value()));
      shared_ = std::make_shared<TrainShared>();
      shared_->owner = rd_;
      shared_->params = rd_->sharedParams();
      shared_->buffers = rd_->sharedBuffers();
      return 0;
    });
  }
  std::shared_ptr<TrainShared> shared() const { return shared_; }

 private:
  void notBusy(Napi::Env env) {
    if (!shared_->busy.mayStart(true))
      throw makeError(env, "ERR_BUSY", "the Reverse Distillation student is in use by an operation in flight");
  }
  Napi::Value TapChannels(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&] {
      const int64_t i = ArgReader(info, "").integer(0, "i");
      return Napi::Value(Napi::Number::New(env, static_cast<double>(rd_->tapChannels(static_cast<int>(i)))));
    });
  }
  Napi::Value KeptFloats(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(rd_->keptFloats()));
  }

  // Three Float32Arrays of arguments[key], each checked against `shapes[i]`.
  static std::vector<const float*> three(const ArgReader& args, int key, const std::string& name,
                                         const std::vector<Shape>& shapes) {
    Napi::Value v = args[key];
    if (!v.IsArray() || v.As<Napi::Array>().Length() != 3)
      throw Napi::TypeError::New(args.env(), name + " must be an array of 3 Float32Arrays");
    auto a = v.As<Napi::Array>();
    std::vector<const float*> out;
    for (uint32_t i = 0; i < 3; ++i)
      out.push_back(float32View(a.Get(i), name + "[" + std::to_string(i) + "]", shapes[i]).data);
    return out;
  }
  // Keeps the three arrays of arguments[key] alive until `w` settles.
  static void pinThree(TaskWorker* w, Napi::Value v) {
    auto a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < 3; ++i) w->pin(a.Get(i));
  }
  // Holds the student (and the views of its stores) busy from queueing to settling.
  Napi::Value startHeld(TaskWorker* w, const Napi::CallbackInfo& info) {
    w->hold(&shared_->busy, true, info.This(), shared_);
    pinThree(w, info[0]);
    return w->start();
  }

  // The teacher's three taps, checked against n, h, w.
  struct Inputs {
    std::vector<const float*> f;
    int64_t n = 0;
    std::vector<int64_t> h, w;
  };
  Inputs inputs(const ArgReader& args) {
    Inputs in;
    in.n = args.integer(1, "n");
    in.h = trainSizes(args, 2, "h", 3);
    in.w = trainSizes(args, 3, "w", 3);
    std::vector<Shape> shapes;
    for (int i = 0; i < 3; ++i) shapes.push_back({in.n, rd_->tapChannels(i), in.h[i], in.w[i]});
    in.f = three(args, 0, "features", shapes);
    return in;
  }

  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      ArgReader args(info, "");
      const Inputs in = inputs(args);
      const bool bnTrain = info[4].ToBoolean().Value();
      const bool record = info[5].ToBoolean().Value();
      auto rd = rd_;
      auto out = std::make_shared<std::vector<Tensor>>();
      auto* w = new TaskWorker(
          env, "rdForward", [=](FiniteCheck&) { *out = rd->forward(in.f, in.n, in.h, in.w, bnTrain, record); },
          [out](Napi::Env e) -> Napi::Value {
            Napi::Array a = Napi::Array::New(e, out->size());
            for (size_t i = 0; i < out->size(); ++i) a.Set(static_cast<uint32_t>(i), toFloat32Array(e, (*out)[i]));
            return a;
          });
      return startHeld(w, info);
    });
  }

  Napi::Value Backward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      const std::vector<Shape> shapes = rd_->outputShapes();
      if (shapes.empty()) throw makeError(env, "ERR_INVALID_ARGUMENT", "backward: no recorded forward to differentiate");
      const std::vector<const float*> g = three(ArgReader(info, ""), 0, "grads", shapes);
      auto rd = rd_;
      auto* w = new TaskWorker(env, "rdBackward", [=](FiniteCheck&) { rd->backward(g); });
      return startHeld(w, info);
    });
  }

  Napi::Value TrainStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      ArgReader args(info, "");
      const Inputs in = inputs(args);
      AdamOptions o;
      o.lr = args.number(4, "lr");
      o.beta1 = args.number(5, "beta1");
      o.beta2 = args.number(6, "beta2");
      o.eps = args.number(7, "eps");
      o.weightDecay = args.number(8, "weightDecay");
      const bool pixel = info[9].ToBoolean().Value();
      auto rd = rd_;
      // loss, the three scale losses, the four parts' seconds
      auto res = std::make_shared<std::array<double, 8>>();
      auto* w = new TaskWorker(
          env, "rdTrainStep",
          [=](FiniteCheck&) {
            (*res)[0] = rdTrainStep(*rd, in.f, in.n, in.h, in.w, o, res->data() + 1, res->data() + 4, pixel);
          },
          [res](Napi::Env e) -> Napi::Value {
            Napi::Object r = Napi::Object::New(e);
            r.Set("loss", (*res)[0]);
            Napi::Array s = Napi::Array::New(e, 3);
            for (uint32_t i = 0; i < 3; ++i) s.Set(i, (*res)[i + 1]);
            r.Set("scaleLosses", s);
            Napi::Object sec = Napi::Object::New(e);
            sec.Set("forward", (*res)[4]);
            sec.Set("loss", (*res)[5]);
            sec.Set("backward", (*res)[6]);
            sec.Set("adam", (*res)[7]);
            r.Set("seconds", sec);
            return r;
          });
      return startHeld(w, info);
    });
  }

  std::shared_ptr<RdStudent> rd_;
  std::shared_ptr<TrainShared> shared_;
};

// trainCosinePixelLoss(a, b, [n, c, hw], eps) -> Promise<{ loss, gradA, gradB }>
Napi::Value CosinePixelLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    ArgReader args(info, "");
    const Shape s = trainSizes(args, 2, "shape", 3);
    const float* a = args.float32View(0, "a", s).data;
    const float* b = args.float32View(1, "b", s).data;
    const float eps = static_cast<float>(args.number(3, "eps"));
    auto res = std::make_shared<std::pair<double, std::array<Tensor, 2>>>();
    res->second = {Tensor(s), Tensor(s)};
    auto* w = new TaskWorker(
        env, "cosinePixelLoss",
        [=](FiniteCheck&) {
          res->first = cosinePixelLoss(s[0], s[1], s[2], a, b, eps, res->second[0].data(), res->second[1].data());
        },
        [res](Napi::Env e) -> Napi::Value {
          Napi::Object r = Napi::Object::New(e);
          r.Set("loss", res->first);
          r.Set("gradA", toFloat32Array(e, res->second[0]));
          r.Set("gradB", toFloat32Array(e, res->second[1]));
          return r;
        });
    w->pin(info[0]);
    w->pin(info[1]);
    return w->start();
  });
}

void init(Napi::Env env, Napi::Object exports) {
  Napi::Function rd = TrainRdWrap::define(env);
  addonData(env).trainRd = Napi::Persistent(rd);
  exports.Set("TrainRd", rd);
  exportFunctions(env, exports, {{"trainCosinePixelLoss", CosinePixelLoss}});
}

}  // namespace

std::shared_ptr<TrainShared> trainRdShared(Napi::Value v) {
  if (!v.IsObject()) return nullptr;
  Napi::Object o = v.As<Napi::Object>();
  const Napi::FunctionReference& ctor = addonData(v.Env()).trainRd;
  if (ctor.IsEmpty() || !o.InstanceOf(ctor.Value())) return nullptr;
  TrainRdWrap* rd = Napi::ObjectWrap<TrainRdWrap>::Unwrap(o);
  return rd ? rd->shared() : nullptr;
}

ANOMALENS_REGISTER(train_rd, init);
}  // namespace anomalens::bindings
