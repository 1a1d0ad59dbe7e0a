// Reverse Distillation's trainable part (lib/train/rd.ts validates first; this file re-checks
// what protects memory: element counts).
//   new TrainRd(arch); handle() -> External for new TrainParams(handle, 'params' | 'buffers');
//   tapChannels(i); keptFloats();
//   forward([f1, f2, f3], n, [h1, h2, h3], [w1, w2, w3], bnTrain, record) -> Promise<[o1, o2, o3]>
//   backward([g1, g2, g3]) -> Promise<void>
//   trainStep([f1, f2, f3], n, h, w, lr, beta1, beta2, eps, weightDecay, pixelLoss)
//     -> Promise<{ loss, scaleLosses: [l1, l2, l3], seconds: { forward, loss, backward, adam } }>
// Teacher features are read in place (pinned until the work is done); outputs are new
// Float32Arrays over native memory.
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "anomalens/train/loss_pixel_cosine.h"
#include "anomalens/train/optim.h"
#include "anomalens/train/rd.h"
#include "common.h"
#include "train_glue.h"
#include "train_shared.h"

namespace anomalens::bindings {

namespace {
constexpr uint32_t kHandleTag = 0x52443453;  // "RD4S"
struct Handle {
  uint32_t tag = kHandleTag;
  std::shared_ptr<TrainShared> shared;
};
}  // namespace

Napi::Value sharedHandle(Napi::Env env, const std::shared_ptr<TrainShared>& shared) {
  return Napi::External<Handle>::New(env, new Handle{kHandleTag, shared}, [](Napi::Env, Handle* h) { delete h; });
}

std::shared_ptr<TrainShared> sharedFromHandle(Napi::Value v) {
  if (!v.IsExternal()) return nullptr;
  Handle* h = v.As<Napi::External<Handle>>().Data();
  return h && h->tag == kHandleTag ? h->shared : nullptr;
}

namespace {

using namespace anomalens::train;

using Worker = train_glue::TrainWorker;

std::vector<int64_t> three(Napi::Value v, const char* what) {
  Shape s = shapeFromJs(v, what);
  if (s.size() != 3) throw Napi::RangeError::New(v.Env(), std::string(what) + " must have 3 entries");
  return s;
}

double number(Napi::Value v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

class TrainRd : public Napi::ObjectWrap<TrainRd> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "TrainRd",
                       {InstanceMethod("handle", &TrainRd::HandleOf), InstanceMethod("tapChannels", &TrainRd::TapChannels),
                        InstanceMethod("keptFloats", &TrainRd::KeptFloats), InstanceMethod("forward", &TrainRd::Forward),
                        InstanceMethod("backward", &TrainRd::Backward),
                        InstanceMethod("trainStep", &TrainRd::TrainStep)});
  }
  explicit TrainRd(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainRd>(info) {
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

 private:
  void notBusy(Napi::Env env) {
    if (shared_->busy) throw makeError(env, "ERR_BUSY", "the Reverse Distillation student is in use by an operation in flight");
  }
  Napi::Value HandleOf(const Napi::CallbackInfo& info) { return sharedHandle(info.Env(), shared_); }
  Napi::Value TapChannels(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&] {
      return Napi::Value(Napi::Number::New(info.Env(), static_cast<double>(rd_->tapChannels(static_cast<int>(number(info[0], "i"))))));
    });
  }
  Napi::Value KeptFloats(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(rd_->keptFloats()));
  }

  // The three feature arrays, checked against n, h, w.
  struct Inputs {
    std::vector<const float*> f;
    int64_t n = 0;
    std::vector<int64_t> h, w;
  };
  Inputs inputs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() != 3)
      throw Napi::TypeError::New(env, "features must be an array of 3 Float32Arrays");
    Inputs in;
    in.n = static_cast<int64_t>(number(info[1], "n"));
    in.h = three(info[2], "h");
    in.w = three(info[3], "w");
    auto a = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < 3; ++i)
      in.f.push_back(float32View(a.Get(i), "features[" + std::to_string(i) + "]",
                                 {in.n, rd_->tapChannels(static_cast<int>(i)), in.h[i], in.w[i]})
                         .data);
    return in;
  }

  Napi::Value queue(Worker* wk, const Napi::CallbackInfo& info) {
    wk->pin(info.This());
    for (size_t i = 0; i < info.Length(); ++i)
      if (info[i].IsObject()) wk->pin(info[i]);
    Napi::Promise p = wk->promise();
    shared_->busy = true;
    wk->Queue();
    return p;
  }

  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      Inputs in = inputs(info);
      const bool bnTrain = info[4].ToBoolean().Value();
      const bool record = info[5].ToBoolean().Value();
      auto rd = rd_;
      auto sh = shared_;
      auto out = std::make_shared<std::vector<Tensor>>();
      auto* wk = new Worker(
          env, "rdForward", [=] { *out = rd->forward(in.f, in.n, in.h, in.w, bnTrain, record); },
          [=](Napi::Env e) {
            Napi::Array a = Napi::Array::New(e, out->size());
            for (size_t i = 0; i < out->size(); ++i) a.Set(static_cast<uint32_t>(i), toFloat32Array(e, (*out)[i]));
            return Napi::Value(a);
          },
          [sh] { sh->busy = false; });
      for (uint32_t i = 0; i < 3; ++i) wk->pin(info[0].As<Napi::Array>().Get(i));
      return queue(wk, info);
    });
  }

  Napi::Value Backward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      if (!info[0].IsArray() || info[0].As<Napi::Array>().Length() != 3)
        throw Napi::TypeError::New(env, "grads must be an array of 3 Float32Arrays");
      const std::vector<Shape> shapes = rd_->outputShapes();
      if (shapes.empty()) throw makeError(env, "ERR_INVALID_ARGUMENT", "backward: no recorded forward to differentiate");
      auto a = info[0].As<Napi::Array>();
      std::vector<const float*> g;
      for (uint32_t i = 0; i < 3; ++i)
        g.push_back(float32View(a.Get(i), "grads[" + std::to_string(i) + "]", shapes[i]).data);
      auto rd = rd_;
      auto sh = shared_;
      auto* wk = new Worker(
          env, "rdBackward", [=] { rd->backward(g); }, [](Napi::Env e) { return e.Undefined(); },
          [sh] { sh->busy = false; });
      for (uint32_t i = 0; i < 3; ++i) wk->pin(a.Get(i));
      return queue(wk, info);
    });
  }

  Napi::Value TrainStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    return guard(env, [&] {
      Inputs in = inputs(info);
      AdamOptions o;
      o.lr = number(info[4], "lr");
      o.beta1 = number(info[5], "beta1");
      o.beta2 = number(info[6], "beta2");
      o.eps = number(info[7], "eps");
      o.weightDecay = number(info[8], "weightDecay");
      const bool pixel = info[9].ToBoolean().Value();
      auto rd = rd_;
      auto sh = shared_;
      auto res = std::make_shared<std::array<double, 8>>();
      auto* wk = new Worker(
          env, "rdTrainStep", [=] { (*res)[0] = rdTrainStep(*rd, in.f, in.n, in.h, in.w, o, res->data() + 1, res->data() + 4, pixel); },
          [=](Napi::Env e) {
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
            return Napi::Value(r);
          },
          [sh] { sh->busy = false; });
      if (info[0].IsArray())
        for (uint32_t i = 0; i < 3; ++i) wk->pin(info[0].As<Napi::Array>().Get(i));
      return queue(wk, info);
    });
  }

  std::shared_ptr<RdStudent> rd_;
  std::shared_ptr<TrainShared> shared_;
};

// trainCosinePixelLoss(a, b, [n, c, hw], eps) -> Promise<{ loss, gradA, gradB }>
Napi::Value CosinePixelLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    Shape s = shapeFromJs(info[2], "shape");
    if (s.size() != 3) throw Napi::RangeError::New(env, "shape must be [n, c, hw]");
    const float* a = float32View(info[0], "a", s).data;
    const float* b = float32View(info[1], "b", s).data;
    const float eps = static_cast<float>(number(info[3], "eps"));
    auto res = std::make_shared<std::pair<double, std::array<Tensor, 2>>>();
    res->second = {Tensor(s), Tensor(s)};
    auto* wk = new Worker(
        env, "cosinePixelLoss",
        [=] { res->first = cosinePixelLoss(s[0], s[1], s[2], a, b, eps, res->second[0].data(), res->second[1].data()); },
        [=](Napi::Env e) {
          Napi::Object r = Napi::Object::New(e);
          r.Set("loss", res->first);
          r.Set("gradA", toFloat32Array(e, res->second[0]));
          r.Set("gradB", toFloat32Array(e, res->second[1]));
          return Napi::Value(r);
        });
    wk->pin(info[0]);
    wk->pin(info[1]);
    Napi::Promise p = wk->promise();
    wk->Queue();
    return Napi::Value(p);
  });
}

void init(Napi::Env env, Napi::Object exports) {
  exports.Set("TrainRd", TrainRd::define(env));
  exports.Set("trainCosinePixelLoss", Napi::Function::New(env, CosinePixelLoss));
}

}  // namespace

ANOMALENS_REGISTER(train_rd, init);

}  // namespace anomalens::bindings
