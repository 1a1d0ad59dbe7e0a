// Core accessors: setNumThreads(n), numThreads(), backends() -> [{ name, available }].
#include <napi.h>

#include "anomalens/core/threading.h"
#include "core/errors.h"
#include "core/module.h"

namespace anomalens::bindings {
namespace {

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "setNumThreads(n): n must be a number");
  return guard(env, [&] {
    setNumThreads(info[0].As<Napi::Number>().Int32Value());
    return env.Undefined();
  });
}

Napi::Value NumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), numThreads()); }

// The backends compiled into this binary, and whether each can run here.
Napi::Value Backends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("name", "cpu");
  cpu.Set("available", true);
  out.Set(0u, cpu);
  return out;
}

void init(Napi::Env env, Napi::Object exports) {
  exportFunctions(env, exports, {
    {"setNumThreads", SetNumThreads},
    {"numThreads", NumThreads},
    {"backends", Backends}});
}

}  // namespace
ANOMALENS_REGISTER(core, init);
}  // namespace anomalens::bindings
