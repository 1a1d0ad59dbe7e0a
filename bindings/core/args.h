// Argument conversion shared by the kNN bindings (knn.cpp, knn_faiss.cpp, knn_coreset.cpp).
// lib/knn.ts has validated every argument already; these checks only protect memory.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>

#include "anomalens/core/finite.h"
#include "anomalens/knn/knn.h"
#include "core/worker.h"

namespace anomalens::bindings {

class ArgReader {
 public:
  ArgReader(const Napi::CallbackInfo& info, const char* fn) : info_(info), fn_(fn) {}

  int64_t integer(size_t i, const char* name) const {
    Napi::Value v = info_[i];
    double x = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(x >= 0 && x <= 9007199254740991.0 && std::floor(x) == x))
      throw Napi::TypeError::New(info_.Env(), fn_ + ": " + name + " must be a non-negative integer");
    return static_cast<int64_t>(x);
  }
  double number(size_t i, const char* name) const {
    Napi::Value v = info_[i];
    if (!v.IsNumber()) throw Napi::TypeError::New(info_.Env(), fn_ + ": " + name + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  }
  std::string string(size_t i, const char* name) const {
    Napi::Value v = info_[i];
    if (!v.IsString()) throw Napi::TypeError::New(info_.Env(), fn_ + ": " + name + " must be a string");
    return v.As<Napi::String>().Utf8Value();
  }
  // Data of a Float32Array of exactly `length` elements (byteOffset honoured).
  float* float32(size_t i, const char* name, int64_t length) const {
    return typed<float, napi_float32_array>(i, name, length, "Float32Array");
  }
  int32_t* int32(size_t i, const char* name, int64_t length) const {
    return typed<int32_t, napi_int32_array>(i, name, length, "Int32Array");
  }

 private:
  template <typename T, napi_typedarray_type Kind>
  T* typed(size_t i, const char* name, int64_t length, const char* type) const {
    Napi::Value v = info_[i];
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != Kind)
      throw Napi::TypeError::New(info_.Env(), fn_ + ": " + name + " must be a " + type);
    auto arr = v.As<Napi::TypedArrayOf<T>>();
    if (length < 0 || static_cast<uint64_t>(arr.ElementLength()) != static_cast<uint64_t>(length))
      throw Napi::RangeError::New(info_.Env(), fn_ + ": " + name + " must have " + std::to_string(length) +
                                                   " elements, received " + std::to_string(arr.ElementLength()));
    return arr.Data();
  }
  const Napi::CallbackInfo& info_;
  std::string fn_;
};

// 'auto' | 'off' | 'bf16' (lib/ has validated it).
inline KnnScreening parseScreening(Napi::Env env, const std::string& s) {
  if (s == "auto") return KnnScreening::Auto;
  if (s == "off") return KnnScreening::Off;
  if (s == "bf16") return KnnScreening::Force;
  throw Napi::RangeError::New(env, "screening must be 'auto', 'off' or 'bf16', received '" + s + "'");
}

// Finds the first NaN / infinity of an input on the worker thread; the main thread then
// rejects with a RangeError naming the element.
class FiniteCheck {
 public:
  // False (and remembers the element) when data[0, count) holds a non-finite value.
  bool check(const float* data, int64_t count, const char* name, int64_t dim) {
    int64_t i = firstNonFinite(data, count);
    if (i < 0) return true;
    name_ = name;
    index_ = i;
    dim_ = dim;
    value_ = data[i];
    return false;
  }
  void throwIfFound(Napi::Env env) const {
    if (index_ < 0) return;
    std::string v = std::isnan(value_) ? "NaN" : (value_ > 0 ? "Infinity" : "-Infinity");
    throw Napi::RangeError::New(env, name_ + "[" + std::to_string(index_) + "] is " + v + " (row " +
                                         std::to_string(index_ / dim_) + ", column " + std::to_string(index_ % dim_) +
                                         "); all values must be finite");
  }

 private:
  std::string name_;
  int64_t index_ = -1;
  int64_t dim_ = 1;
  float value_ = 0;
};

// In-flight bookkeeping of a wrapped native object: readers (search, save) may overlap each
// other; writers (add, train, setters) and dispose() need the object to themselves.
struct BusyState {
  int readers = 0;
  bool writing = false;

  // Throws ERR_DISPOSED / ERR_BUSY as a JS error when `op` may not start now.
  void check(Napi::Env env, const std::string& what, bool disposed, bool exclusive) const {
    if (disposed) throw makeError(env, "ERR_DISPOSED", what + ": the object was disposed");
    if (writing || (exclusive && readers > 0))
      throw makeError(env, "ERR_BUSY", what + ": " +
                                           (writing ? std::string("a write (add/train) is in flight")
                                                    : std::string("a search or save is in flight")) +
                                           "; await it first");
  }
};

// A PromiseWorker that runs `work` on the worker thread, keeps `owner` (the JS wrapper) and
// `keepAlive` (the native object) alive, and releases the busy mark when done. NaN found by
// `finite` rejects with a RangeError.
class GuardedWorker : public PromiseWorker {
 public:
  GuardedWorker(Napi::Env env, const char* name, Napi::Object owner, BusyState* busy, bool exclusive,
                std::shared_ptr<void> keepAlive)
      : PromiseWorker(env, name), busy_(busy), exclusive_(exclusive), keepAlive_(std::move(keepAlive)) {
    pin(owner);
    if (exclusive_) busy_->writing = true;
    else ++busy_->readers;
  }
  std::function<void()> work;
  FiniteCheck finite;

 protected:
  void compute() override { work(); }
  Napi::Value result(Napi::Env env) override {
    finite.throwIfFound(env);
    return env.Undefined();
  }
  void finished() override {
    if (exclusive_) busy_->writing = false;
    else --busy_->readers;
  }

 private:
  BusyState* busy_;
  bool exclusive_;
  std::shared_ptr<void> keepAlive_;
};

}  // namespace anomalens::bindings
