#include "core/worker.h"

#include "anomalens/core/threading.h"

namespace anomalens::bindings {

namespace {
std::vector<std::pair<const char*, InitFn>>& registry() {
  static std::vector<std::pair<const char*, InitFn>> r;
  return r;
}
}  // namespace

Registrar::Registrar(const char* name, InitFn fn) { registry().emplace_back(name, fn); }

void initAll(Napi::Env env, Napi::Object exports) {
  for (auto& [name, fn] : registry()) fn(env, exports);
}

Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

PromiseWorker::PromiseWorker(Napi::Env env, const char* name)
    : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

void PromiseWorker::pin(Napi::Value value) { pinned_.push_back(Napi::Persistent(value)); }

void PromiseWorker::Execute() {
  try {
    applyThreads();
    compute();
  } catch (const Error& e) {
    code_ = e.codeName();
    SetError(e.what());
  } catch (const std::bad_alloc&) {
    code_ = "ERR_OUT_OF_MEMORY";
    SetError("out of memory");
  } catch (const std::exception& e) {
    code_ = "ERR_INTERNAL";
    SetError(e.what());
  }
}

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  finished();
  try {
    deferred_.Resolve(result(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (const Error& e) {
    deferred_.Reject(makeError(env, e.codeName(), e.what()).Value());
  }
  pinned_.clear();
}

void PromiseWorker::OnError(const Napi::Error& e) {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  finished();
  deferred_.Reject(makeError(env, code_, e.Message()).Value());
  pinned_.clear();
}

TensorView float32View(Napi::Value value, const std::string& what, Shape shape) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(value.Env(), what + " must be a Float32Array");
  auto arr = value.As<Napi::Float32Array>();
  int64_t n = numel(shape);
  if (static_cast<int64_t>(arr.ElementLength()) != n)
    throw makeError(value.Env(), "ERR_INVALID_ARGUMENT",
                    what + " has " + std::to_string(arr.ElementLength()) + " elements but shape " +
                        shapeString(shape) + " needs " + std::to_string(n));
  return TensorView{arr.Data(), std::move(shape)};
}

Napi::Float32Array toFloat32Array(Napi::Env env, const Tensor& t) {
  auto* keep = new std::shared_ptr<float>(t.storage());
  size_t bytes = static_cast<size_t>(t.numel()) * sizeof(float);
  Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(
      env, const_cast<float*>(t.data()), bytes,
      [](Napi::Env, void*, std::shared_ptr<float>* hint) { delete hint; }, keep);
  return Napi::Float32Array::New(env, static_cast<size_t>(t.numel()), buf, 0);
}

Napi::Array shapeToJs(Napi::Env env, const Shape& shape) {
  Napi::Array a = Napi::Array::New(env, shape.size());
  for (size_t i = 0; i < shape.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(shape[i])));
  return a;
}

Shape shapeFromJs(Napi::Value value, const std::string& what) {
  if (!value.IsArray()) throw Napi::TypeError::New(value.Env(), what + " must be an array of integers");
  auto a = value.As<Napi::Array>();
  Shape s;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value v = a.Get(i);
    if (!v.IsNumber()) throw Napi::TypeError::New(value.Env(), what + " must be an array of integers");
    double d = v.As<Napi::Number>().DoubleValue();
    if (d < 0 || d != static_cast<double>(static_cast<int64_t>(d)))
      throw Napi::RangeError::New(value.Env(), what + "[" + std::to_string(i) + "] must be a non-negative integer");
    s.push_back(static_cast<int64_t>(d));
  }
  return s;
}

}  // namespace anomalens::bindings
