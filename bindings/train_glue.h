// Helpers of the training bindings (bindings/train.cpp: ops and losses; bindings/train_models.cpp:
// the parameter store and the trainable ResNet): one Promise worker over lambdas, argument
// readers that re-check element counts, result objects of native tensors.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common.h"

namespace anomalens::bindings::train_glue {

class TrainWorker : public PromiseWorker {
 public:
  TrainWorker(Napi::Env env, const char* name, std::function<void()> compute,
              std::function<Napi::Value(Napi::Env)> result, std::function<void()> finished = {})
      : PromiseWorker(env, name), compute_(std::move(compute)), result_(std::move(result)),
        finished_(std::move(finished)) {}

 protected:
  void compute() override { compute_(); }
  Napi::Value result(Napi::Env env) override { return result_(env); }
  void finished() override {
    if (finished_) finished_();
  }

 private:
  std::function<void()> compute_;
  std::function<Napi::Value(Napi::Env)> result_;
  std::function<void()> finished_;
};

inline Napi::Value queue(TrainWorker* w, const Napi::CallbackInfo& info) {
  for (size_t i = 0; i < info.Length(); ++i)
    if (info[i].IsObject()) w->pin(info[i]);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

inline bool isNone(Napi::Value v) { return v.IsUndefined() || v.IsNull(); }

inline const float* data(Napi::Value v, const std::string& what, int64_t count) {
  return float32View(v, what, {count}).data;
}
inline float* mutableData(Napi::Value v, const std::string& what, int64_t count) {
  return const_cast<float*>(data(v, what, count));
}
inline const float* optionalData(Napi::Value v, const std::string& what, int64_t count) {
  return isNone(v) ? nullptr : data(v, what, count);
}

inline std::vector<int64_t> ints(Napi::Value v, const std::string& what, size_t count) {
  Shape s = shapeFromJs(v, what);
  if (s.size() != count)
    throw Napi::RangeError::New(v.Env(), what + " must have " + std::to_string(count) + " entries");
  return s;
}

inline double number(Napi::Value v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

// Which gradients are wanted: [dx, dw, db] booleans.
inline std::vector<bool> wants(Napi::Value v, size_t count) {
  std::vector<bool> out(count, true);
  if (isNone(v)) return out;
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), "wants must be an array of booleans");
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < count && i < a.Length(); ++i) out[i] = a.Get(i).ToBoolean().Value();
  return out;
}

// Output tensors shared between compute() and result().
struct Outs {
  std::vector<Tensor> t;
  std::vector<std::string> names;
  double loss = 0;
  float* ptr(size_t i) { return t[i].empty() ? nullptr : t[i].data(); }
};

inline Napi::Value outsToJs(Napi::Env env, const Outs& o, bool withLoss) {
  Napi::Object r = Napi::Object::New(env);
  for (size_t i = 0; i < o.t.size(); ++i)
    r.Set(o.names[i], o.t[i].empty() ? env.Null() : Napi::Value(toFloat32Array(env, o.t[i])));
  if (withLoss) r.Set("loss", Napi::Number::New(env, o.loss));
  return r;
}

inline std::shared_ptr<Outs> makeOuts(std::vector<std::pair<std::string, int64_t>> spec) {
  auto o = std::make_shared<Outs>();
  for (auto& [name, count] : spec) {
    o->names.push_back(name);
    o->t.push_back(count > 0 ? Tensor({count}) : Tensor());
  }
  return o;
}

inline Napi::Value single(Napi::Env env, const Tensor& t) { return toFloat32Array(env, t); }

inline int64_t lengthOf(Napi::Value v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Float32Array");
  return static_cast<int64_t>(v.As<Napi::Float32Array>().ElementLength());
}

}  // namespace anomalens::bindings::train_glue
