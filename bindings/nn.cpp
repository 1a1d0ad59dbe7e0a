// Backbone bindings: loadBackbone(arch, path) -> Promise<NativeBackbone>;
// NativeBackbone#extract(input: Float32Array, shape, taps, profile) -> Promise<{ outputs, profile }>;
// NativeBackbone#taps() / availableTaps() / tapShape(tap, shape) / dispose(), .arch.
// Outputs are native-allocated tensors handed over as external Float32Arrays (no copy).
#include <map>
#include <memory>

#include "anomalens/nn/backbone.h"
#include "core/args.h"
#include "core/busy.h"
#include "core/instance.h"
#include "core/module.h"
#include "core/worker.h"

namespace anomalens::bindings {
namespace {

class BackboneWrap : public Napi::ObjectWrap<BackboneWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "NativeBackbone",
                       {InstanceMethod("extract", &BackboneWrap::Extract), InstanceMethod("dispose", &BackboneWrap::Dispose),
                        InstanceMethod("taps", &BackboneWrap::Taps), InstanceMethod("availableTaps", &BackboneWrap::AvailableTaps),
                        InstanceMethod("tapShape", &BackboneWrap::TapShape), InstanceAccessor("arch", &BackboneWrap::Arch, nullptr)});
  }

  explicit BackboneWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BackboneWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "NativeBackbone is created by loadBackbone()");
    backbone_ = *info[0].As<Napi::External<std::shared_ptr<Backbone>>>().Data();
  }

 private:
  std::shared_ptr<Backbone> get(Napi::Env env) {
    if (!backbone_) throw makeError(env, "ERR_DISPOSED", "the backbone was disposed");
    return backbone_;
  }

  Napi::Value Arch(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), get(info.Env())->arch()); }
  Napi::Value Taps(const Napi::CallbackInfo& info) { return stringsToJs(info.Env(), get(info.Env())->taps()); }
  Napi::Value AvailableTaps(const Napi::CallbackInfo& info) {
    return stringsToJs(info.Env(), get(info.Env())->availableTaps());
  }
  Napi::Value TapShape(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto bb = get(env);
    ArgReader args(info, "");
    std::string tap = args.string(0, "tap");
    Shape in = args.shape(1, "shape");
    return guard(env, [&] { return Napi::Value(shapeToJs(env, bb->tapShape(tap, in))); });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (!busy_.mayStart(true))
      throw makeError(info.Env(), "ERR_BUSY", "cannot dispose the backbone while an extract() is in flight");
    backbone_.reset();
    return info.Env().Undefined();
  }

  Napi::Value Extract(const Napi::CallbackInfo& info);

  std::shared_ptr<Backbone> backbone_;
  BusyState busy_;  // extract() calls are readers; dispose() needs none in flight
};

Napi::Value BackboneWrap::Extract(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto bb = get(env);
  ArgReader args(info, "");
  Shape shape = args.shape(1, "shape");
  TensorView input = args.float32View(0, "input", shape);
  if (!info[2].IsArray()) throw Napi::TypeError::New(env, "taps must be an array of strings");
  std::vector<std::string> taps;
  auto arr = info[2].As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value t = arr.Get(i);
    if (!t.IsString()) throw Napi::TypeError::New(env, "taps must be an array of strings");
    taps.push_back(t.As<Napi::String>().Utf8Value());
  }
  const bool profile = info.Length() > 3 && info[3].ToBoolean().Value();
  struct Out {
    std::map<std::string, Tensor> tensors;
    std::vector<LayerProfile> layers;
  };
  auto out = std::make_shared<Out>();
  auto* w = new TaskWorker(
      env, "extract",
      [bb, input, taps, profile, out](FiniteCheck&) {
        out->tensors = bb->extract(input, taps, profile ? &out->layers : nullptr);
      },
      [taps, profile, out](Napi::Env env) -> Napi::Value {
        Napi::Object res = Napi::Object::New(env);
        Napi::Object outputs = Napi::Object::New(env);
        for (const auto& t : taps) {
          const Tensor& x = out->tensors.at(t);
          Napi::Object o = Napi::Object::New(env);
          o.Set("data", toFloat32Array(env, x));
          o.Set("shape", shapeToJs(env, x.shape()));
          outputs.Set(t, o);
        }
        res.Set("outputs", outputs);
        if (profile) {
          Napi::Array prof = Napi::Array::New(env, out->layers.size());
          for (size_t i = 0; i < out->layers.size(); ++i) {
            const LayerProfile& l = out->layers[i];
            Napi::Object o = Napi::Object::New(env);
            o.Set("name", l.name);
            o.Set("impl", l.impl);
            o.Set("ms", l.ms);
            o.Set("gflop", l.gflop);
            prof.Set(static_cast<uint32_t>(i), o);
          }
          res.Set("profile", prof);
        }
        return res;
      });
  w->hold(&busy_, false, Value(), bb);
  w->pin(info[0]);
  return w->start();
}

Napi::Value LoadBackbone(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    throw Napi::TypeError::New(env, "loadBackbone(arch, path): arch and path must be strings");
  std::string arch = info[0].As<Napi::String>().Utf8Value(), path = info[1].As<Napi::String>().Utf8Value();
  auto loaded = std::make_shared<std::shared_ptr<Backbone>>();
  auto* w = new TaskWorker(
      env, "loadBackbone", [arch, path, loaded](FiniteCheck&) { *loaded = Backbone::load(arch, path); },
      [loaded](Napi::Env env) -> Napi::Value {
        return addonData(env).backbone.New({Napi::External<std::shared_ptr<Backbone>>::New(env, loaded.get())});
      });
  return w->start();
}

void init(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = BackboneWrap::define(env);
  addonData(env).backbone = Napi::Persistent(cls);
  exports.Set("NativeBackbone", cls);
  exportFunctions(env, exports, {
    {"loadBackbone", LoadBackbone}});
}

}  // namespace
ANOMALENS_REGISTER(backbone, init);
}  // namespace anomalens::bindings
