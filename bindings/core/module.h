// Module registration. Each bindings/<family>.cpp registers its exports with
// ANOMALENS_REGISTER(name, fn); the module entry (core/addon.cpp) creates the environment's
// instance data, then calls every registered function once per environment (the main thread
// and every worker_thread that loads the addon). The registry holds only function pointers,
// fixed at static initialisation, so it is safe to share between environments; everything
// an environment owns (constructors) lives in its instance data (instance.h).
#pragma once
#include <napi.h>

#include <initializer_list>
#include <utility>

namespace anomalens::bindings {

using InitFn = void (*)(Napi::Env env, Napi::Object exports);
struct Registrar {
  Registrar(const char* name, InitFn fn);
};
void initAll(Napi::Env env, Napi::Object exports);

// exports[name] = a JS function named `name` calling `fn`, for each pair.
using Callback = Napi::Value (*)(const Napi::CallbackInfo&);
void exportFunctions(Napi::Env env, Napi::Object exports, std::initializer_list<std::pair<const char*, Callback>> fns);
#define ANOMALENS_REGISTER(name, fn) \
  static ::anomalens::bindings::Registrar anomalens_registrar_##name(#name, fn)

}  // namespace anomalens::bindings
