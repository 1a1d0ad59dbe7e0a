// Shared Node-API glue. Bindings only convert: JS values -> plain C++ structs on the main
// thread, compute in AsyncWorker::Execute (no Node-API there), results -> JS in OnOK.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "anomalens/core/error.h"
#include "anomalens/core/tensor.h"

namespace anomalens::bindings {

// ---- module registration ---------------------------------------------------------------
// Each bindings/*.cpp registers its exports with ANOMALENS_REGISTER(name, fn); addon.cpp
// calls every registered function once at module load. No shared list to edit.
using InitFn = void (*)(Napi::Env env, Napi::Object exports);
struct Registrar {
  Registrar(const char* name, InitFn fn);
};
void initAll(Napi::Env env, Napi::Object exports);
#define ANOMALENS_REGISTER(name, fn) \
  static ::anomalens::bindings::Registrar anomalens_registrar_##name(#name, fn)

// ---- errors -----------------------------------------------------------------------------
// A JS Error with `.code` set to one of the stable codes (ERR_INVALID_ARGUMENT, ...).
Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message);
// Runs `fn` and turns anomalens::Error / std::exception into a thrown JS error with a code.
// For synchronous (O(1)) binding functions.
template <typename F>
auto guard(Napi::Env env, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error& e) {
    throw makeError(env, e.codeName(), e.what());
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw makeError(env, "ERR_INTERNAL", e.what());
  }
}

// ---- async work -------------------------------------------------------------------------
// A Promise-returning AsyncWorker. Subclasses implement compute() (worker thread, no
// Node-API, may throw anomalens::Error) and result() (main thread). Pinned JS values
// (input buffers) stay alive until the work is done.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env, const char* name);
  Napi::Promise promise() { return deferred_.Promise(); }
  // Keeps `value` alive (and its backing store unmoved) until the worker finishes.
  void pin(Napi::Value value);

 protected:
  virtual void compute() = 0;
  virtual Napi::Value result(Napi::Env env) = 0;
  // Called on the main thread when the work finished, successfully or not.
  virtual void finished() {}

 private:
  void Execute() final;
  void OnOK() final;
  void OnError(const Napi::Error& e) final;
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::Reference<Napi::Value>> pinned_;
  std::string code_ = "ERR_INTERNAL";
};

// ---- typed arrays ------------------------------------------------------------------------
// The data of a Float32Array (honouring byteOffset) as a view; throws a TypeError naming
// `what` when the value is not a Float32Array.
TensorView float32View(Napi::Value value, const std::string& what, Shape shape);
// A Float32Array over the tensor's own storage (no copy; the storage lives until GC).
Napi::Float32Array toFloat32Array(Napi::Env env, const Tensor& t);
Napi::Array shapeToJs(Napi::Env env, const Shape& shape);
Shape shapeFromJs(Napi::Value value, const std::string& what);

}  // namespace anomalens::bindings
