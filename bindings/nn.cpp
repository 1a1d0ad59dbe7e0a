// Backbone bindings: loadBackbone(arch, path) -> Promise<NativeBackbone>;
// NativeBackbone#extract(input: Float32Array, shape, taps, profile) -> Promise<{ outputs, profile }>.
#include "anomalens/nn/backbone.h"

#include <atomic>

#include "core/worker.h"

namespace anomalens::bindings {
namespace {

class BackboneWrap : public Napi::ObjectWrap<BackboneWrap> {
 public:
  static Napi::FunctionReference* constructor;

  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "NativeBackbone",
                       {InstanceMethod("extract", &BackboneWrap::Extract), InstanceMethod("dispose", &BackboneWrap::Dispose),
                        InstanceMethod("taps", &BackboneWrap::Taps), InstanceMethod("availableTaps", &BackboneWrap::AvailableTaps),
                        InstanceMethod("tapShape", &BackboneWrap::TapShape), InstanceAccessor("arch", &BackboneWrap::Arch, nullptr)});
  }

  explicit BackboneWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BackboneWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "NativeBackbone is created by loadBackbone()");
    auto* p = info[0].As<Napi::External<std::shared_ptr<Backbone>>>().Data();
    backbone_ = *p;
  }

  std::shared_ptr<Backbone> get(Napi::Env env) {
    if (!backbone_) throw makeError(env, "ERR_DISPOSED", "the backbone was disposed");
    return backbone_;
  }
  std::atomic<int> inflight{0};

 private:
  Napi::Value Arch(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), get(info.Env())->arch()); }

  static Napi::Array strings(Napi::Env env, const std::vector<std::string>& v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), v[i]);
    return a;
  }
  Napi::Value Taps(const Napi::CallbackInfo& info) { return strings(info.Env(), get(info.Env())->taps()); }
  Napi::Value AvailableTaps(const Napi::CallbackInfo& info) { return strings(info.Env(), get(info.Env())->availableTaps()); }
  Napi::Value TapShape(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto bb = get(env);
    std::string tap = info[0].As<Napi::String>().Utf8Value();
    Shape in = shapeFromJs(info[1], "shape");
    return guard(env, [&] { return Napi::Value(shapeToJs(env, bb->tapShape(tap, in))); });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (inflight.load() > 0)
      throw makeError(info.Env(), "ERR_BUSY", "cannot dispose the backbone while an extract() is in flight");
    backbone_.reset();
    return info.Env().Undefined();
  }

  Napi::Value Extract(const Napi::CallbackInfo& info);

  std::shared_ptr<Backbone> backbone_;
};
Napi::FunctionReference* BackboneWrap::constructor = nullptr;

class ExtractWorker : public PromiseWorker {
 public:
  ExtractWorker(Napi::Env env, BackboneWrap* owner, std::shared_ptr<Backbone> bb, TensorView input,
                std::vector<std::string> taps, bool profile)
      : PromiseWorker(env, "extract"), owner_(owner), bb_(std::move(bb)), input_(std::move(input)),
        taps_(std::move(taps)), profile_(profile) {
    owner_->inflight++;
    ownerRef_ = Napi::Persistent(owner_->Value());
  }

 protected:
  void compute() override { out_ = bb_->extract(input_, taps_, profile_ ? &layers_ : nullptr); }
  void finished() override { owner_->inflight--; }
  Napi::Value result(Napi::Env env) override {
    Napi::Object res = Napi::Object::New(env);
    Napi::Object outputs = Napi::Object::New(env);
    for (const auto& t : taps_) {
      const Tensor& x = out_.at(t);
      Napi::Object o = Napi::Object::New(env);
      o.Set("data", toFloat32Array(env, x));
      o.Set("shape", shapeToJs(env, x.shape()));
      outputs.Set(t, o);
    }
    res.Set("outputs", outputs);
    if (profile_) {
      Napi::Array prof = Napi::Array::New(env, layers_.size());
      for (size_t i = 0; i < layers_.size(); ++i) {
        Napi::Object l = Napi::Object::New(env);
        l.Set("name", layers_[i].name);
        l.Set("impl", layers_[i].impl);
        l.Set("ms", layers_[i].ms);
        l.Set("gflop", layers_[i].gflop);
        prof.Set(static_cast<uint32_t>(i), l);
      }
      res.Set("profile", prof);
    }
    return res;
  }

 private:
  BackboneWrap* owner_;
  Napi::ObjectReference ownerRef_;
  std::shared_ptr<Backbone> bb_;
  TensorView input_;
  std::vector<std::string> taps_;
  bool profile_;
  std::map<std::string, Tensor> out_;
  std::vector<LayerProfile> layers_;
};

Napi::Value BackboneWrap::Extract(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto bb = get(env);
  Shape shape = shapeFromJs(info[1], "shape");
  TensorView input = float32View(info[0], "input", shape);
  if (!info[2].IsArray()) throw Napi::TypeError::New(env, "taps must be an array of strings");
  std::vector<std::string> taps;
  auto arr = info[2].As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) taps.push_back(arr.Get(i).As<Napi::String>().Utf8Value());
  bool profile = info.Length() > 3 && info[3].ToBoolean().Value();
  auto* w = new ExtractWorker(env, this, bb, input, taps, profile);
  w->pin(info[0]);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

class LoadWorker : public PromiseWorker {
 public:
  LoadWorker(Napi::Env env, std::string arch, std::string path)
      : PromiseWorker(env, "loadBackbone"), arch_(std::move(arch)), path_(std::move(path)) {}

 protected:
  void compute() override { bb_ = std::shared_ptr<Backbone>(Backbone::load(arch_, path_)); }
  Napi::Value result(Napi::Env env) override {
    auto ext = Napi::External<std::shared_ptr<Backbone>>::New(env, &bb_);
    return BackboneWrap::constructor->New({ext});
  }

 private:
  std::string arch_, path_;
  std::shared_ptr<Backbone> bb_;
};

Napi::Value LoadBackbone(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    throw Napi::TypeError::New(env, "loadBackbone(arch, path): arch and path must be strings");
  auto* w = new LoadWorker(env, info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value());
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

void init(Napi::Env env, Napi::Object exports) {
  Napi::Function cls = BackboneWrap::define(env);
  BackboneWrap::constructor = new Napi::FunctionReference(Napi::Persistent(cls));
  exports.Set("NativeBackbone", cls);
  exports.Set("loadBackbone", Napi::Function::New(env, LoadBackbone, "loadBackbone"));
}

}  // namespace
ANOMALENS_REGISTER(backbone, init);
}  // namespace anomalens::bindings
