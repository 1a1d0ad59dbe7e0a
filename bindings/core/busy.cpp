#include "core/busy.h"

#include "core/errors.h"

namespace anomalens::bindings {

void BusyState::check(Napi::Env env, const std::string& what, bool disposed, bool exclusive) const {
  if (disposed) throw makeError(env, "ERR_DISPOSED", what + ": the object was disposed");
  if (!mayStart(exclusive))
    throw makeError(env, "ERR_BUSY", what + ": " +
                                         (writing ? std::string("a write (add/train) is in flight")
                                                  : std::string("a search or save is in flight")) +
                                         "; await it first");
}

}  // namespace anomalens::bindings
