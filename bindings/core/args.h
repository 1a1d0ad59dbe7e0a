// The one argument reader of the bindings: positional arguments of a call, or fields of an
// options object, into plain C++ values. lib/ has validated and normalised every argument
// already; these checks only protect memory and types, and each message names the argument,
// what was expected and (for lengths) what was received.
//
//   ArgReader args(info, "knnSearch: ");               // positional: args.integer(1, "n")
//   ArgReader opts(info[3], "coreset: options.", "coreset: options must be an object");
//   int64_t count = opts.integer("count", "count");    // -> "coreset: options.count must be ..."
//
// Numbers that stand for sizes and counts must be safe integers (|x| <= 2^53 - 1): that rule
// is safeInteger() and exists only here.
#pragma once
#include <napi.h>

#include <cstdint>
#include <optional>
#include <string>

#include "anomalens/core/tensor.h"

namespace anomalens::bindings {

// x as int64 when `v` is a number holding an integer in [-(2^53 - 1), 2^53 - 1] (and >= 0
// unless allowNegative), else nothing.
std::optional<int64_t> safeInteger(const Napi::Value& v, bool allowNegative = false);

class ArgReader {
 public:
  // Where an argument is: a position (positional reader) or a field name (object reader).
  struct Key {
    Key(int i) : index(static_cast<uint32_t>(i)) {}
    Key(uint32_t i) : index(i) {}
    Key(const char* f) : field(f) {}
    uint32_t index = 0;
    const char* field = nullptr;
  };
  // How a typed array's wrong length is reported (three styles exist in the JS surface).
  enum class LengthStyle {
    Range,   // RangeError "<name> must have N elements, received M"
    Shape,   // ERR_INVALID_ARGUMENT "<name> has M elements but shape [..] needs N"
    Bytes,   // ERR_INVALID_ARGUMENT "<name> has M bytes, expected N"
  };
  enum class ErrorKind { Type, Range };

  // Positional arguments of `info`; `prefix` starts every message (e.g. "knnSearch: ", or "").
  ArgReader(const Napi::CallbackInfo& info, std::string prefix);
  // Fields of `object`; throws TypeError(notObject) when it is not an object.
  ArgReader(Napi::Value object, std::string prefix, const std::string& notObject);

  Napi::Env env() const { return env_; }
  Napi::Value operator[](Key key) const;
  // Not undefined / null.
  bool present(Key key) const;

  // A safe integer >= 0. Error "<prefix><name> must be a non-negative integer" (TypeError,
  // or RangeError with ErrorKind::Range).
  int64_t integer(Key key, const std::string& name, ErrorKind kind = ErrorKind::Type) const;
  // A safe integer of any sign: TypeError "<name> must be a number", RangeError "<name> must be an integer".
  int64_t signedInteger(Key key, const std::string& name) const;
  // TypeError "<prefix><name> must be a number".
  double number(Key key, const std::string& name) const;
  // TypeError "<prefix><name> must be a string".
  std::string string(Key key, const std::string& name) const;
  // TypeError "<prefix><name> must be an array".
  Napi::Array array(Key key, const std::string& name) const;
  // An array of non-negative integers: TypeError "<name> must be an array of integers",
  // RangeError "<name>[i] must be a non-negative integer".
  Shape shape(Key key, const std::string& name) const;

  // The data of a typed array of exactly `length` elements (byteOffset honoured); TypeError
  // "<prefix><name> must be a Float32Array" (Int32Array, Uint8Array).
  float* float32(Key key, const std::string& name, int64_t length, LengthStyle style = LengthStyle::Range) const;
  int32_t* int32(Key key, const std::string& name, int64_t length, LengthStyle style = LengthStyle::Range) const;
  uint8_t* uint8(Key key, const std::string& name, int64_t length, LengthStyle style = LengthStyle::Range) const;
  // A Float32Array holding numel(shape) elements, as a view with that shape (Shape style).
  TensorView float32View(Key key, const std::string& name, Shape shape) const;

 private:
  template <typename T, napi_typedarray_type Kind>
  T* typed(Key key, const std::string& name, int64_t length, LengthStyle style, const char* type,
           const Shape* shape) const;
  std::string label(const std::string& name) const { return prefix_ + name; }

  Napi::Env env_;
  const Napi::CallbackInfo* info_ = nullptr;
  Napi::Object object_;
  std::string prefix_;
};

// The same rules for one value that is not an argument (an array element): TypeError
// "<what> must be a <type>", Shape-style length errors.
TensorView float32View(Napi::Value value, const std::string& what, Shape shape);
Shape shapeFromJs(Napi::Value value, const std::string& what);

}  // namespace anomalens::bindings
