// Map kernels (all Promises; lib/maps/maps.ts validates first, this file re-checks what protects memory):
//   mapsResizeBilinear(maps, [n, c, ih, iw], [oh, ow], out?) -> Float32Array [n, c, oh, ow]
//   mapsResizeBilinearAlignCorners(maps, [n, c, ih, iw], [oh, ow], out?) -> the same, align_corners = true
//   mapsGaussianBlur(maps, [n, h, w], sigma, truncate, out?) -> Float32Array [n, h, w]
//   mapsCosineDistance(a, b, [n, c, h, w], eps, out?)        -> Float32Array [n, h, w]
//   mapsL2Distance(a, b, [n, c, h, w], squared, out?)        -> Float32Array [n, h, w]
// Inputs are read in place; `out` (a Float32Array of the output's size) is written in place and
// resolved, otherwise a new external Float32Array over native storage is. A NaN or infinite
// input rejects with a RangeError naming the element (found on the worker thread).
#include <cmath>
#include <functional>

#include "anomalens/core/finite.h"
#include "anomalens/maps/blur.h"
#include "anomalens/maps/distance.h"
#include "anomalens/maps/resize.h"
#include "anomalens/maps/resize_aligned.h"
#include "core/args.h"
#include "core/module.h"
#include "core/worker.h"

namespace anomalens::bindings {
namespace {

struct Input {
  const float* data;
  std::string name;
  Shape shape;  // for the element's coordinates in messages
};

// Runs `kernel` into `out` (a caller's Float32Array, written in place and resolved) or into a
// new native tensor (resolved as an external Float32Array). checkInputsFirst: scan inputs
// before computing (a kernel that may skip input elements); otherwise only when the output
// holds a NaN / infinity, which every non-finite input of these kernels produces.
Napi::Value startMaps(Napi::Env env, const char* name, std::vector<Input> inputs, bool checkInputsFirst,
                      int64_t outCount, Napi::Value out, std::function<void(float*)> kernel,
                      std::initializer_list<Napi::Value> pins) {
  const bool given = !out.IsUndefined() && !out.IsNull();
  float* outData = given ? out.As<Napi::Float32Array>().Data() : nullptr;
  auto tensor = std::make_shared<Tensor>();
  auto findNonFinite = [inputs](FiniteCheck& finite) {
    for (const Input& in : inputs)
      if (!finite.check(in.data, in.shape, in.name, in.shape.size() == 4 ? kImageChannelYX : kImageYX)) return true;
    return false;
  };
  auto* w = new TaskWorker(
      env, name,
      [=](FiniteCheck& finite) {
        if (checkInputsFirst && findNonFinite(finite)) return;
        float* o = outData;
        if (!o) {
          *tensor = Tensor({outCount});
          o = tensor->data();
        }
        kernel(o);
        if (!checkInputsFirst && firstNonFinite(o, outCount) >= 0) findNonFinite(finite);
      },
      [given, tensor, ref = std::make_shared<Napi::Reference<Napi::Value>>(given ? Napi::Persistent(out)
                                                                                 : Napi::Reference<Napi::Value>())](
          Napi::Env env) -> Napi::Value {
        if (given) return ref->Value();
        return toFloat32Array(env, *tensor);
      });
  for (const auto& v : pins) w->pin(v);
  return w->start();
}

Shape dims(Napi::Value v, const std::string& what, size_t rank) {
  Shape s = shapeFromJs(v, what);
  if (s.size() != rank)
    throw Napi::RangeError::New(v.Env(), what + " must have " + std::to_string(rank) + " dimensions");
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i] < 1) throw Napi::RangeError::New(v.Env(), what + "[" + std::to_string(i) + "] must be >= 1");
  return s;
}

// `out` when given: a Float32Array of `count` elements.
void checkOut(Napi::Value out, int64_t count) {
  if (out.IsUndefined() || out.IsNull()) return;
  if (!out.IsTypedArray() || out.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(out.Env(), "options.out must be a Float32Array");
  if (static_cast<int64_t>(out.As<Napi::Float32Array>().ElementLength()) != count)
    throw Napi::RangeError::New(out.Env(), "options.out must have " + std::to_string(count) + " elements, received " +
                                               std::to_string(out.As<Napi::Float32Array>().ElementLength()));
}

double numberArg(Napi::Value v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

Napi::Value ResizeBilinear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    const Shape s = dims(info[1], "shape", 4), size = dims(info[2], "size", 2);
    const float* in = float32View(info[0], "maps", s).data;
    const int64_t count = numel({s[0], s[1], size[0], size[1]});
    checkOut(info[3], count);
    return startMaps(env, "resizeBilinear", {{in, "maps", s}}, true, count, info[3], [=](float* out) {
      resizeMapsBilinear(in, s[0], s[1], s[2], s[3], size[0], size[1], out);
    }, {info[0], info[3]});
  });
}

Napi::Value ResizeBilinearAlignCorners(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    const Shape s = dims(info[1], "shape", 4), size = dims(info[2], "size", 2);
    const float* in = float32View(info[0], "maps", s).data;
    const int64_t count = numel({s[0], s[1], size[0], size[1]});
    checkOut(info[3], count);
    return startMaps(env, "resizeBilinearAlignCorners", {{in, "maps", s}}, true, count, info[3], [=](float* out) {
      resizeMapsBilinearAlignCorners(in, s[0], s[1], s[2], s[3], size[0], size[1], out);
    }, {info[0], info[3]});
  });
}

Napi::Value GaussianBlur(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    const Shape s = dims(info[1], "shape", 3);
    const float* in = float32View(info[0], "maps", s).data;
    const double sigma = numberArg(info[2], "sigma"), truncate = numberArg(info[3], "truncate");
    if (!(sigma > 0) || !std::isfinite(sigma)) throw Napi::RangeError::New(env, "sigma must be a finite number > 0");
    if (!(truncate >= 0) || !std::isfinite(truncate))
      throw Napi::RangeError::New(env, "options.truncate must be a finite number >= 0");
    const int64_t count = numel(s);
    checkOut(info[4], count);
    return startMaps(env, "gaussianBlur", {{in, "maps", s}}, false, count, info[4], [=](float* out) {
      gaussianBlur(in, s[0], s[1], s[2], sigma, truncate, out);
    }, {info[0], info[4]});
  });
}

template <class Fn>
Napi::Value distance(const Napi::CallbackInfo& info, const char* name, Fn fn) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    const Shape s = dims(info[2], "shape", 4);
    const float* a = float32View(info[0], "a", s).data;
    const float* b = float32View(info[1], "b", s).data;
    const double option = info[3].IsBoolean() ? (info[3].As<Napi::Boolean>().Value() ? 1.0 : 0.0) : numberArg(info[3], "option");
    const int64_t count = numel({s[0], s[2], s[3]});
    checkOut(info[4], count);
    return startMaps(env, name, {{a, "a", s}, {b, "b", s}}, false, count, info[4],
                     [=](float* out) { fn(a, b, s, option, out); }, {info[0], info[1], info[4]});
  });
}

Napi::Value CosineDistance(const Napi::CallbackInfo& info) {
  return distance(info, "cosineDistanceMap", [](const float* a, const float* b, const Shape& s, double eps, float* out) {
    cosineDistanceMap(a, b, s[0], s[1], s[2], s[3], static_cast<float>(eps), out);
  });
}

Napi::Value L2Distance(const Napi::CallbackInfo& info) {
  return distance(info, "l2DistanceMap", [](const float* a, const float* b, const Shape& s, double squared, float* out) {
    l2DistanceMap(a, b, s[0], s[1], s[2], s[3], squared != 0, out);
  });
}

void init(Napi::Env env, Napi::Object exports) {
  exportFunctions(env, exports, {
    {"mapsResizeBilinear", ResizeBilinear},
    {"mapsResizeBilinearAlignCorners", ResizeBilinearAlignCorners},
    {"mapsGaussianBlur", GaussianBlur},
    {"mapsCosineDistance", CosineDistance},
    {"mapsL2Distance", L2Distance}});
}

}  // namespace
ANOMALENS_REGISTER(maps, init);
}  // namespace anomalens::bindings
