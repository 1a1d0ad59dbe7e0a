#include "core/args.h"

#include <cmath>

#include "core/errors.h"

namespace anomalens::bindings {
namespace {

template <typename T, napi_typedarray_type Kind>
T* typedData(Napi::Value v, const std::string& what, int64_t length, ArgReader::LengthStyle style, const char* type,
             const Shape* shape) {
  using LengthStyle = ArgReader::LengthStyle;
  Napi::Env env = v.Env();
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != Kind)
    throw Napi::TypeError::New(env, what + " must be a " + type);
  auto arr = v.As<Napi::TypedArrayOf<T>>();
  const size_t have = arr.ElementLength();
  if (length >= 0 && static_cast<uint64_t>(have) == static_cast<uint64_t>(length)) return arr.Data();
  switch (style) {
    case LengthStyle::Range:
      throw Napi::RangeError::New(env, what + " must have " + std::to_string(length) + " elements, received " +
                                           std::to_string(have));
    case LengthStyle::Shape:
      throw makeError(env, "ERR_INVALID_ARGUMENT",
                      what + " has " + std::to_string(have) + " elements but shape " +
                          (shape ? shapeString(*shape) : std::string("[?]")) + " needs " + std::to_string(length));
    case LengthStyle::Bytes:
      break;
  }
  throw makeError(env, "ERR_INVALID_ARGUMENT",
                  what + " has " + std::to_string(have) + " bytes, expected " + std::to_string(length));
}

}  // namespace

std::optional<int64_t> safeInteger(const Napi::Value& v, bool allowNegative) {
  if (!v.IsNumber()) return std::nullopt;
  const double x = v.As<Napi::Number>().DoubleValue();
  constexpr double kMax = 9007199254740991.0;  // 2^53 - 1
  if (!(x <= kMax && x >= (allowNegative ? -kMax : 0.0)) || std::floor(x) != x) return std::nullopt;
  return static_cast<int64_t>(x);
}

ArgReader::ArgReader(const Napi::CallbackInfo& info, std::string prefix)
    : env_(info.Env()), info_(&info), prefix_(std::move(prefix)) {}

ArgReader::ArgReader(Napi::Value object, std::string prefix, const std::string& notObject)
    : env_(object.Env()), prefix_(std::move(prefix)) {
  if (!object.IsObject()) throw Napi::TypeError::New(env_, notObject);
  object_ = object.As<Napi::Object>();
}

Napi::Value ArgReader::operator[](Key key) const {
  if (info_) return (*info_)[key.index];
  return key.field ? object_.Get(key.field) : object_.Get(key.index);
}

bool ArgReader::present(Key key) const {
  Napi::Value v = (*this)[key];
  return !v.IsUndefined() && !v.IsNull();
}

int64_t ArgReader::integer(Key key, const std::string& name, ErrorKind kind) const {
  if (auto x = safeInteger((*this)[key])) return *x;
  const std::string m = label(name) + " must be a non-negative integer";
  if (kind == ErrorKind::Range) throw Napi::RangeError::New(env_, m);
  throw Napi::TypeError::New(env_, m);
}

int64_t ArgReader::signedInteger(Key key, const std::string& name) const {
  Napi::Value v = (*this)[key];
  if (!v.IsNumber()) throw Napi::TypeError::New(env_, label(name) + " must be a number");
  if (auto x = safeInteger(v, true)) return *x;
  throw Napi::RangeError::New(env_, label(name) + " must be an integer");
}

double ArgReader::number(Key key, const std::string& name) const {
  Napi::Value v = (*this)[key];
  if (!v.IsNumber()) throw Napi::TypeError::New(env_, label(name) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

std::string ArgReader::string(Key key, const std::string& name) const {
  Napi::Value v = (*this)[key];
  if (!v.IsString()) throw Napi::TypeError::New(env_, label(name) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Array ArgReader::array(Key key, const std::string& name) const {
  Napi::Value v = (*this)[key];
  if (!v.IsArray()) throw Napi::TypeError::New(env_, label(name) + " must be an array");
  return v.As<Napi::Array>();
}

Shape ArgReader::shape(Key key, const std::string& name) const { return shapeFromJs((*this)[key], label(name)); }

template <typename T, napi_typedarray_type Kind>
T* ArgReader::typed(Key key, const std::string& name, int64_t length, LengthStyle style, const char* type,
                    const Shape* shape) const {
  return typedData<T, Kind>((*this)[key], label(name), length, style, type, shape);
}

float* ArgReader::float32(Key key, const std::string& name, int64_t length, LengthStyle style) const {
  return typed<float, napi_float32_array>(key, name, length, style, "Float32Array", nullptr);
}
int32_t* ArgReader::int32(Key key, const std::string& name, int64_t length, LengthStyle style) const {
  return typed<int32_t, napi_int32_array>(key, name, length, style, "Int32Array", nullptr);
}
uint8_t* ArgReader::uint8(Key key, const std::string& name, int64_t length, LengthStyle style) const {
  return typed<uint8_t, napi_uint8_array>(key, name, length, style, "Uint8Array", nullptr);
}
TensorView ArgReader::float32View(Key key, const std::string& name, Shape shape) const {
  return bindings::float32View((*this)[key], label(name), std::move(shape));
}

TensorView float32View(Napi::Value value, const std::string& what, Shape shape) {
  const int64_t n = numel(shape);
  float* data = typedData<float, napi_float32_array>(value, what, n, ArgReader::LengthStyle::Shape, "Float32Array", &shape);
  return TensorView{data, std::move(shape)};
}

Shape shapeFromJs(Napi::Value value, const std::string& what) {
  if (!value.IsArray()) throw Napi::TypeError::New(value.Env(), what + " must be an array of integers");
  auto a = value.As<Napi::Array>();
  Shape s;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value v = a.Get(i);
    if (!v.IsNumber()) throw Napi::TypeError::New(value.Env(), what + " must be an array of integers");
    auto x = safeInteger(v);
    if (!x) throw Napi::RangeError::New(value.Env(), what + "[" + std::to_string(i) + "] must be a non-negative integer");
    s.push_back(*x);
  }
  return s;
}

}  // namespace anomalens::bindings
