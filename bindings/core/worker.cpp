#include "core/worker.h"

#include "anomalens/core/threading.h"

namespace anomalens::bindings {

Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

PromiseWorker::PromiseWorker(Napi::Env env, const char* name)
    : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

void PromiseWorker::pin(Napi::Value value) {
  if (value.IsUndefined() || value.IsNull()) return;
  pinned_.push_back(Napi::Persistent(value));
}

void PromiseWorker::hold(BusyState* busy, bool exclusive, Napi::Value owner, std::shared_ptr<void> keepAlive) {
  busy_ = busy;
  exclusive_ = exclusive;
  keepAlive_ = std::move(keepAlive);
  busy_->begin(exclusive_);
  pin(owner);
}

Napi::Promise PromiseWorker::start() {
  Napi::Promise p = deferred_.Promise();
  Queue();
  return p;
}

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

void PromiseWorker::release() {
  finished();
  if (busy_) busy_->end(exclusive_);
  busy_ = nullptr;
}

void PromiseWorker::OnOK() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  release();
  try {
    finite_.throwIfFound(env);
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
  release();
  deferred_.Reject(makeError(env, code_, e.Message()).Value());
  pinned_.clear();
}

Napi::Float32Array toFloat32Array(Napi::Env env, const Tensor& t) {
  auto* keep = new std::shared_ptr<float>(t.storage());
  size_t bytes = static_cast<size_t>(t.numel()) * sizeof(float);
  Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(
      env, const_cast<float*>(t.data()), bytes,
      [](Napi::Env, void*, std::shared_ptr<float>* hint) { delete hint; }, keep);
  return Napi::Float32Array::New(env, static_cast<size_t>(t.numel()), buf, 0);
}

Napi::Float64Array toFloat64Array(Napi::Env env, std::vector<double>&& values) {
  if (values.empty()) return Napi::Float64Array::New(env, 0);
  auto* keep = new std::vector<double>(std::move(values));
  Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(
      env, keep->data(), keep->size() * sizeof(double),
      [](Napi::Env, void*, std::vector<double>* hint) { delete hint; }, keep);
  return Napi::Float64Array::New(env, keep->size(), buf, 0);
}

Napi::Array shapeToJs(Napi::Env env, const Shape& shape) {
  Napi::Array a = Napi::Array::New(env, shape.size());
  for (size_t i = 0; i < shape.size(); ++i)
    a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(shape[i])));
  return a;
}

Napi::Array stringsToJs(Napi::Env env, const std::vector<std::string>& values) {
  Napi::Array a = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i) a.Set(static_cast<uint32_t>(i), values[i]);
  return a;
}

}  // namespace anomalens::bindings
