// Detector feature kernels: patchcoreEmbed, padimEmbed, padimFit, padimScore (all Promises).
#include "anomalens/methods/padim_kernels.h"
#include "anomalens/methods/patchcore_kernels.h"

#include "core/worker.h"

namespace anomalens::bindings {
namespace {

Shape shape4(Napi::Value v, const std::string& what) {
  Shape s = shapeFromJs(v, what);
  if (s.size() != 4) throw Napi::RangeError::New(v.Env(), what + " must be [n, c, h, w]");
  return s;
}

// Runs `fn` on the worker thread and resolves with the tensors it returns.
class TensorsWorker : public PromiseWorker {
 public:
  using Fn = std::function<std::vector<Tensor>()>;
  TensorsWorker(Napi::Env env, const char* name, Fn fn, bool single)
      : PromiseWorker(env, name), fn_(std::move(fn)), single_(single) {}

 protected:
  void compute() override { out_ = fn_(); }
  Napi::Value result(Napi::Env env) override {
    if (single_) return toFloat32Array(env, out_.at(0));
    Napi::Array a = Napi::Array::New(env, out_.size());
    for (size_t i = 0; i < out_.size(); ++i) a.Set(static_cast<uint32_t>(i), toFloat32Array(env, out_[i]));
    return a;
  }

 private:
  Fn fn_;
  bool single_;
  std::vector<Tensor> out_;
};

Napi::Value queue(const Napi::CallbackInfo& info, TensorsWorker* w, std::initializer_list<Napi::Value> pins) {
  for (const auto& v : pins) w->pin(v);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value PatchcoreEmbed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Shape sa = shape4(info[1], "aShape"), sb = shape4(info[3], "bShape");
  TensorView a = float32View(info[0], "a", sa), b = float32View(info[2], "b", sb);
  int64_t layerDim = info[4].As<Napi::Number>().Int64Value(), outDim = info[5].As<Napi::Number>().Int64Value();
  if (sa[0] != sb[0]) throw makeError(env, "ERR_INVALID_ARGUMENT", "patchcoreEmbed: batch sizes differ");
  auto* w = new TensorsWorker(env, "patchcoreEmbed", [=] {
    Tensor out({sa[0] * sa[2] * sa[3], outDim});
    patchcoreEmbed(a.data, sa[0], sa[1], sa[2], sa[3], b.data, sb[1], sb[2], sb[3], layerDim, outDim, out.data());
    return std::vector<Tensor>{out};
  }, true);
  return queue(info, w, {info[0], info[2]});
}

Napi::Value PadimEmbed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto arr = info[0].As<Napi::Array>();
  auto shapes = info[1].As<Napi::Array>();
  std::vector<const float*> layers;
  std::vector<int64_t> c, h, w;
  int64_t n = -1;
  std::vector<Napi::Value> pins;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Shape s = shape4(shapes.Get(i), "shapes[" + std::to_string(i) + "]");
    TensorView v = float32View(arr.Get(i), "layers[" + std::to_string(i) + "]", s);
    if (n >= 0 && s[0] != n) throw makeError(env, "ERR_INVALID_ARGUMENT", "padimEmbed: batch sizes differ");
    n = s[0];
    layers.push_back(v.data);
    c.push_back(s[1]);
    h.push_back(s[2]);
    w.push_back(s[3]);
    pins.push_back(arr.Get(i));
  }
  auto idx = info[2].As<Napi::Int32Array>();
  std::vector<int64_t> channels(idx.Data(), idx.Data() + idx.ElementLength());
  auto* wk = new TensorsWorker(env, "padimEmbed", [=] {
    Tensor out({n, static_cast<int64_t>(channels.size()), h[0], w[0]});
    padimEmbed(layers, n, c, h, w, channels, out.data());
    return std::vector<Tensor>{out};
  }, true);
  for (auto& v : pins) wk->pin(v);
  Napi::Promise p = wk->promise();
  wk->Queue();
  return p;
}

Napi::Value PadimFit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Shape s = shapeFromJs(info[1], "shape");
  if (s.size() != 3) throw Napi::RangeError::New(env, "shape must be [n, d, p]");
  TensorView e = float32View(info[0], "embeddings", s);
  float reg = info[2].As<Napi::Number>().FloatValue();
  auto* w = new TensorsWorker(env, "padimFit", [=] {
    Tensor mean({s[2], s[1]}), precision({s[2], s[1], s[1]});
    padimFit(e.data, s[0], s[1], s[2], reg, mean.data(), precision.data());
    return std::vector<Tensor>{mean, precision};
  }, false);
  return queue(info, w, {info[0]});
}

Napi::Value PadimScore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Shape s = shapeFromJs(info[1], "shape");
  if (s.size() != 3) throw Napi::RangeError::New(env, "shape must be [n, d, p]");
  TensorView e = float32View(info[0], "embeddings", s);
  TensorView m = float32View(info[2], "mean", {s[2], s[1]});
  TensorView pr = float32View(info[3], "precision", {s[2], s[1], s[1]});
  auto* w = new TensorsWorker(env, "padimScore", [=] {
    Tensor out({s[0], s[2]});
    padimScore(e.data, s[0], s[1], s[2], m.data, pr.data, out.data());
    return std::vector<Tensor>{out};
  }, true);
  return queue(info, w, {info[0], info[2], info[3]});
}

void init(Napi::Env env, Napi::Object exports) {
  exports.Set("patchcoreEmbed", Napi::Function::New(env, PatchcoreEmbed, "patchcoreEmbed"));
  exports.Set("padimEmbed", Napi::Function::New(env, PadimEmbed, "padimEmbed"));
  exports.Set("padimFit", Napi::Function::New(env, PadimFit, "padimFit"));
  exports.Set("padimScore", Napi::Function::New(env, PadimScore, "padimScore"));
}

}  // namespace
ANOMALENS_REGISTER(detect, init);
}  // namespace anomalens::bindings
