// Module entry: creates this environment's instance data, then registers what every
// bindings/<family>.cpp contributed. Runs once per environment that loads the addon.
#include <napi.h>

#include <utility>
#include <vector>

#include "core/instance.h"
#include "core/module.h"

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

void exportFunctions(Napi::Env env, Napi::Object exports, std::initializer_list<std::pair<const char*, Callback>> fns) {
  for (const auto& [name, fn] : fns) exports.Set(name, Napi::Function::New(env, fn, name));
}

AddonData& addonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace anomalens::bindings

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  // Freed by node-addon-api's default finalizer when the environment shuts down.
  env.SetInstanceData(new anomalens::bindings::AddonData());
  anomalens::bindings::initAll(env, exports);
  return exports;
}

NODE_API_MODULE(anomalens, InitModule)
