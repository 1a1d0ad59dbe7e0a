// Map kernels (all Promises; lib/maps.ts validates first, this file re-checks what protects memory):
//   mapsResizeBilinear(maps, [n, c, ih, iw], [oh, ow], out?) -> Float32Array [n, c, oh, ow]
//   mapsGaussianBlur(maps, [n, h, w], sigma, truncate, out?) -> Float32Array [n, h, w]
//   mapsCosineDistance(a, b, [n, c, h, w], eps, out?)        -> Float32Array [n, h, w]
//   mapsL2Distance(a, b, [n, c, h, w], squared, out?)        -> Float32Array [n, h, w]
// Inputs are read in place; `out` (a Float32Array of the output's size) is written in place and
// resolved, otherwise a new external Float32Array over native storage is. A NaN or infinite
// input rejects with a RangeError naming the element (found on the worker thread).
#include <cmath>
#include <functional>

#include "anomalens/knn.h"
#include "anomalens/maps.h"
#include "anomalens/maps_resize_aligned.h"
#include "common.h"

namespace anomalens::bindings {
namespace {

struct Input {
  const float* data;
  int64_t count;
  std::string name;
  Shape shape;  // for the element's coordinates in messages
};

class MapsWorker : public PromiseWorker {
 public:
  using Kernel = std::function<void(float* out)>;
  // checkInputsFirst: scan inputs before computing (a kernel that may skip input elements);
  // otherwise only when the output holds a NaN / infinity, which every non-finite input of
  // these kernels produces.
  MapsWorker(Napi::Env env, const char* name, std::vector<Input> inputs, bool checkInputsFirst, int64_t outCount,
             Napi::Value out, Kernel kernel)
      : PromiseWorker(env, name), inputs_(std::move(inputs)), checkFirst_(checkInputsFirst), outCount_(outCount),
        kernel_(std::move(kernel)) {
    if (!out.IsUndefined() && !out.IsNull()) {
      outData_ = out.As<Napi::Float32Array>().Data();
      out_ = Napi::Persistent(out);
    }
  }

 protected:
  void compute() override {
    if (checkFirst_ && findNonFinite()) return;
    float* o = outData_;
    if (!o) {
      tensor_ = Tensor({outCount_});
      o = tensor_.data();
    }
    kernel_(o);
    if (!checkFirst_ && firstNonFinite(o, outCount_) >= 0) findNonFinite();
  }

  Napi::Value result(Napi::Env env) override {
    if (badInput_ >= 0) {
      const Input& in = inputs_[badInput_];
      const float v = in.data[badIndex_];
      std::string where;
      int64_t rest = badIndex_;
      static const char* const kNames4[] = {"image", "channel", "y", "x"};
      static const char* const kNames3[] = {"image", "y", "x"};
      const char* const* names = in.shape.size() == 4 ? kNames4 : kNames3;
      std::vector<int64_t> coord(in.shape.size());
      for (size_t d = in.shape.size(); d-- > 0;) {
        coord[d] = rest % in.shape[d];
        rest /= in.shape[d];
      }
      for (size_t d = 0; d < coord.size(); ++d)
        where += std::string(d ? ", " : "") + names[d] + " " + std::to_string(coord[d]);
      throw Napi::RangeError::New(env, in.name + "[" + std::to_string(badIndex_) + "] is " +
                                           (std::isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity")) + " (" + where +
                                           "); all values must be finite");
    }
    if (!out_.IsEmpty()) return out_.Value();
    return toFloat32Array(env, tensor_);
  }

 private:
  bool findNonFinite() {
    for (size_t k = 0; k < inputs_.size(); ++k) {
      const int64_t i = firstNonFinite(inputs_[k].data, inputs_[k].count);
      if (i >= 0) {
        badInput_ = static_cast<int>(k);
        badIndex_ = i;
        return true;
      }
    }
    return false;
  }

  std::vector<Input> inputs_;
  bool checkFirst_;
  int64_t outCount_;
  Kernel kernel_;
  float* outData_ = nullptr;
  Napi::Reference<Napi::Value> out_;
  Tensor tensor_;
  int badInput_ = -1;
  int64_t badIndex_ = -1;
};

Shape dims(Napi::Value v, const std::string& what, size_t rank) {
  Shape s = shapeFromJs(v, what);
  if (s.size() != rank)
    throw Napi::RangeError::New(v.Env(), what + " must have " + std::to_string(rank) + " dimensions");
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i] < 1) throw Napi::RangeError::New(v.Env(), what + "[" + std::to_string(i) + "] must be >= 1");
  return s;
}

// The Float32Array `value` of exactly numel(shape) elements.
const float* inputData(Napi::Value value, const std::string& what, const Shape& shape) {
  return float32View(value, what, shape).data;
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

Napi::Value queue(MapsWorker* w, std::initializer_list<Napi::Value> pins) {
  for (const auto& v : pins)
    if (!v.IsUndefined() && !v.IsNull()) w->pin(v);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

double numberArg(Napi::Value v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

Napi::Value ResizeBilinear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    const Shape s = dims(info[1], "shape", 4), size = dims(info[2], "size", 2);
    const float* in = inputData(info[0], "maps", s);
    const int64_t count = numel({s[0], s[1], size[0], size[1]});
    checkOut(info[3], count);
    auto* w = new MapsWorker(env, "resizeBilinear", {{in, numel(s), "maps", s}}, true, count, info[3], [=](float* out) {
      resizeBilinear(in, s[0], s[1], s[2], s[3], size[0], size[1], out);
    });
    return queue(w, {info[0], info[3]});
  });
}

Napi::Value ResizeBilinearAlignCorners(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    const Shape s = dims(info[1], "shape", 4), size = dims(info[2], "size", 2);
    const float* in = inputData(info[0], "maps", s);
    const int64_t count = numel({s[0], s[1], size[0], size[1]});
    checkOut(info[3], count);
    auto* w = new MapsWorker(env, "resizeBilinearAlignCorners", {{in, numel(s), "maps", s}}, true, count, info[3],
                             [=](float* out) { resizeBilinearAlignCorners(in, s[0], s[1], s[2], s[3], size[0], size[1], out); });
    return queue(w, {info[0], info[3]});
  });
}

Napi::Value GaussianBlur(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    const Shape s = dims(info[1], "shape", 3);
    const float* in = inputData(info[0], "maps", s);
    const double sigma = numberArg(info[2], "sigma"), truncate = numberArg(info[3], "truncate");
    if (!(sigma > 0) || !std::isfinite(sigma)) throw Napi::RangeError::New(env, "sigma must be a finite number > 0");
    if (!(truncate >= 0) || !std::isfinite(truncate))
      throw Napi::RangeError::New(env, "options.truncate must be a finite number >= 0");
    const int64_t count = numel(s);
    checkOut(info[4], count);
    auto* w = new MapsWorker(env, "gaussianBlur", {{in, count, "maps", s}}, false, count, info[4], [=](float* out) {
      gaussianBlur(in, s[0], s[1], s[2], sigma, truncate, out);
    });
    return queue(w, {info[0], info[4]});
  });
}

template <class Fn>
Napi::Value distance(const Napi::CallbackInfo& info, const char* name, Fn fn) {
  Napi::Env env = info.Env();
  return guard(env, [&] {
    const Shape s = dims(info[2], "shape", 4);
    const float* a = inputData(info[0], "a", s);
    const float* b = inputData(info[1], "b", s);
    const double option = info[3].IsBoolean() ? (info[3].As<Napi::Boolean>().Value() ? 1.0 : 0.0) : numberArg(info[3], "option");
    const int64_t count = numel({s[0], s[2], s[3]});
    checkOut(info[4], count);
    auto* w = new MapsWorker(env, name, {{a, numel(s), "a", s}, {b, numel(s), "b", s}}, false, count, info[4],
                             [=](float* out) { fn(a, b, s, option, out); });
    return queue(w, {info[0], info[1], info[4]});
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
  exports.Set("mapsResizeBilinear", Napi::Function::New(env, ResizeBilinear, "mapsResizeBilinear"));
  exports.Set("mapsResizeBilinearAlignCorners", Napi::Function::New(env, ResizeBilinearAlignCorners, "mapsResizeBilinearAlignCorners"));
  exports.Set("mapsGaussianBlur", Napi::Function::New(env, GaussianBlur, "mapsGaussianBlur"));
  exports.Set("mapsCosineDistance", Napi::Function::New(env, CosineDistance, "mapsCosineDistance"));
  exports.Set("mapsL2Distance", Napi::Function::New(env, L2Distance, "mapsL2Distance"));
}

}  // namespace
ANOMALENS_REGISTER(maps, init);
}  // namespace anomalens::bindings
