// The one busy state of a wrapped native object (Backbone, MemoryBank, FaissIndex).
// Readers (search, save, extract) may overlap each other; writers (add, train, setters) and
// dispose() need the object to themselves. Touched only on the main thread: a worker marks
// the object when it is queued and releases it in OnOK / OnError (worker.h, hold()).
#pragma once
#include <napi.h>

#include <string>

namespace anomalens::bindings {

struct BusyState {
  int readers = 0;
  bool writing = false;

  bool mayStart(bool exclusive) const { return !writing && !(exclusive && readers > 0); }
  void begin(bool exclusive) {
    if (exclusive) writing = true;
    else ++readers;
  }
  void end(bool exclusive) {
    if (exclusive) writing = false;
    else --readers;
  }
  // Throws ERR_DISPOSED / ERR_BUSY as a JS error naming `what` when an operation may not
  // start now.
  void check(Napi::Env env, const std::string& what, bool disposed, bool exclusive) const;
};

}  // namespace anomalens::bindings
