// Errors across the boundary: the core's anomalens::Error becomes a JS Error whose `.code` is
// the stable code (ERR_INVALID_ARGUMENT, ...); lib/ rethrows it as an AnomalensError.
#pragma once
#include <napi.h>

#include <string>

#include "anomalens/core/error.h"

namespace anomalens::bindings {

// A JS Error with `.code` set to one of the stable codes.
Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message);

// Runs `fn` and turns anomalens::Error / std::exception into a thrown JS error with a code.
// For synchronous (O(1)) binding functions and for the main-thread part of async ones.
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

}  // namespace anomalens::bindings
