// Method kernels (all Promises): patchcoreEmbed, padimEmbed, padimFit, padimScore.
// Outputs are native-allocated tensors handed over as external Float32Arrays (the caller does
// not know their sizes in advance in lib/'s flow); inputs are pinned and read in place.
//   patchcoreEmbed(a, aShape, b, bShape, layerDim, outDim) -> Float32Array [n * ha * wa, outDim]
//   padimEmbed(layers: Float32Array[], shapes: number[][], channels: Int32Array) -> Float32Array
//   padimFit(embeddings, [n, d, p], reg) -> [mean, precision]
//   padimScore(embeddings, [n, d, p], mean, precision) -> Float32Array [n, p]
#include "anomalens/methods/padim_kernels.h"
#include "anomalens/methods/patchcore_kernels.h"
#include "core/args.h"
#include "core/module.h"
#include "core/worker.h"

namespace anomalens::bindings {
namespace {

Shape shape4(Napi::Value v, const std::string& what) {
  Shape s = shapeFromJs(v, what);
  if (s.size() != 4) throw Napi::RangeError::New(v.Env(), what + " must be [n, c, h, w]");
  return s;
}

Shape shape3(Napi::Value v) {
  Shape s = shapeFromJs(v, "shape");
  if (s.size() != 3) throw Napi::RangeError::New(v.Env(), "shape must be [n, d, p]");
  return s;
}

// A worker that resolves with the tensors `fn` returns (one: a Float32Array; several: an array).
TaskWorker* tensorsWorker(Napi::Env env, const char* name, std::function<std::vector<Tensor>()> fn, bool single) {
  auto out = std::make_shared<std::vector<Tensor>>();
  return new TaskWorker(
      env, name, [fn = std::move(fn), out](FiniteCheck&) { *out = fn(); },
      [out, single](Napi::Env env) -> Napi::Value {
        if (single) return toFloat32Array(env, out->at(0));
        Napi::Array a = Napi::Array::New(env, out->size());
        for (size_t i = 0; i < out->size(); ++i) a.Set(static_cast<uint32_t>(i), toFloat32Array(env, (*out)[i]));
        return a;
      });
}

Napi::Value PatchcoreEmbed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info, "patchcoreEmbed: ");
  Shape sa = shape4(info[1], "aShape"), sb = shape4(info[3], "bShape");
  TensorView a = float32View(info[0], "a", sa), b = float32View(info[2], "b", sb);
  const int64_t layerDim = args.integer(4, "layerDim"), outDim = args.integer(5, "outDim");
  if (sa[0] != sb[0]) throw makeError(env, "ERR_INVALID_ARGUMENT", "patchcoreEmbed: batch sizes differ");
  auto* w = tensorsWorker(env, "patchcoreEmbed", [=] {
    Tensor out({sa[0] * sa[2] * sa[3], outDim});
    patchcoreEmbed(a.data, sa[0], sa[1], sa[2], sa[3], b.data, sb[1], sb[2], sb[3], layerDim, outDim, out.data());
    return std::vector<Tensor>{out};
  }, true);
  w->pin(info[0]);
  w->pin(info[2]);
  return w->start();
}

Napi::Value PadimEmbed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info, "padimEmbed: ");
  auto arr = args.array(0, "layers");
  auto shapes = args.array(1, "shapes");
  if (shapes.Length() != arr.Length() || arr.Length() == 0)
    throw Napi::RangeError::New(env, "padimEmbed: layers and shapes must be non-empty and of equal length");
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
  Napi::Value idxValue = info[2];
  if (!idxValue.IsTypedArray() || idxValue.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw Napi::TypeError::New(env, "padimEmbed: channels must be a Int32Array");
  auto idx = idxValue.As<Napi::Int32Array>();
  int64_t total = 0;
  for (int64_t ci : c) total += ci;
  std::vector<int64_t> channels(idx.Data(), idx.Data() + idx.ElementLength());
  for (int64_t ch : channels)
    if (ch < 0 || ch >= total)
      throw Napi::RangeError::New(env, "padimEmbed: channel " + std::to_string(ch) + " is outside [0, " +
                                           std::to_string(total) + ")");
  auto* wk = tensorsWorker(env, "padimEmbed", [=] {
    Tensor out({n, static_cast<int64_t>(channels.size()), h[0], w[0]});
    padimEmbed(layers, n, c, h, w, channels, out.data());
    return std::vector<Tensor>{out};
  }, true);
  for (auto& v : pins) wk->pin(v);
  return wk->start();
}

Napi::Value PadimFit(const Napi::CallbackInfo& info) {
  ArgReader args(info, "padimFit: ");
  Shape s = shape3(info[1]);
  TensorView e = float32View(info[0], "embeddings", s);
  const float reg = static_cast<float>(args.number(2, "reg"));
  auto* w = tensorsWorker(info.Env(), "padimFit", [=] {
    Tensor mean({s[2], s[1]}), precision({s[2], s[1], s[1]});
    padimFit(e.data, s[0], s[1], s[2], reg, mean.data(), precision.data());
    return std::vector<Tensor>{mean, precision};
  }, false);
  w->pin(info[0]);
  return w->start();
}

Napi::Value PadimScore(const Napi::CallbackInfo& info) {
  Shape s = shape3(info[1]);
  TensorView e = float32View(info[0], "embeddings", s);
  TensorView m = float32View(info[2], "mean", {s[2], s[1]});
  TensorView pr = float32View(info[3], "precision", {s[2], s[1], s[1]});
  auto* w = tensorsWorker(info.Env(), "padimScore", [=] {
    Tensor out({s[0], s[2]});
    padimScore(e.data, s[0], s[1], s[2], m.data, pr.data, out.data());
    return std::vector<Tensor>{out};
  }, true);
  for (int i : {0, 2, 3}) w->pin(info[i]);
  return w->start();
}

void init(Napi::Env env, Napi::Object exports) {
  exportFunctions(env, exports, {
    {"patchcoreEmbed", PatchcoreEmbed},
    {"padimEmbed", PadimEmbed},
    {"padimFit", PadimFit},
    {"padimScore", PadimScore}});
}

}  // namespace
ANOMALENS_REGISTER(detect, init);
}  // namespace anomalens::bindings
