// Argument helpers of the training bindings (train.cpp, train_models.cpp), on top of the one
// argument reader (core/args.h): element counts re-checked with the reader's Shape-style
// message ("x has 3 elements but shape [12] needs 12"), fixed-length size arrays, and which
// gradients are wanted.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "core/args.h"

namespace anomalens::bindings {

// A Float32Array of exactly `count` elements.
inline const float* trainData(const ArgReader& args, int key, const std::string& name, int64_t count) {
  return args.float32View(key, name, {count}).data;
}
// The same, written in place by the worker (running statistics).
inline float* trainMutableData(const ArgReader& args, int key, const std::string& name, int64_t count) {
  return const_cast<float*>(trainData(args, key, name, count));
}
// null / undefined (nullptr), or a Float32Array of `count` elements.
inline const float* trainOptionalData(const ArgReader& args, int key, const std::string& name, int64_t count) {
  return args.present(key) ? trainData(args, key, name, count) : nullptr;
}
inline float* trainOptionalMutableData(const ArgReader& args, int key, const std::string& name, int64_t count) {
  return args.present(key) ? trainMutableData(args, key, name, count) : nullptr;
}

// The length of a Float32Array whose size only it knows (element-wise ops).
inline int64_t trainLength(const ArgReader& args, int key, const std::string& name) {
  Napi::Value v = args[key];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(args.env(), name + " must be a Float32Array");
  return static_cast<int64_t>(v.As<Napi::Float32Array>().ElementLength());
}

// An array of exactly `count` non-negative integers (a shape, a geometry).
inline Shape trainSizes(const ArgReader& args, int key, const std::string& name, size_t count) {
  Shape s = args.shape(key, name);
  if (s.size() != count)
    throw Napi::RangeError::New(args.env(), name + " must have " + std::to_string(count) + " entries");
  return s;
}

// Which gradients are wanted: `count` booleans ([dx, dw, db]); all when absent.
inline std::vector<bool> trainWants(const ArgReader& args, int key, size_t count) {
  std::vector<bool> out(count, true);
  if (!args.present(key)) return out;
  Napi::Value v = args[key];
  if (!v.IsArray()) throw Napi::TypeError::New(args.env(), "wants must be an array of booleans");
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < count && i < a.Length(); ++i) out[i] = a.Get(i).ToBoolean().Value();
  return out;
}

}  // namespace anomalens::bindings
