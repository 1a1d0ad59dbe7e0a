// The one finiteness check of the bindings. It runs on the WORKER thread, inside compute():
// the scan is O(n) and would block the event loop for large inputs, and lib/ cannot do it
// without blocking either. The main thread then rejects (in OnOK, before result()) with one
// message format:
//   <name>[<index>] is NaN|Infinity|-Infinity (<dim> <i>, <dim> <j>, ...); all values must be finite
// e.g. "queries[6] is -Infinity (row 1, column 2); ..." for a [m, d] matrix, or
// "maps[119] is NaN (image 1, channel 2, y 3, x 4); ..." for an NCHW tensor.
// (The backbone's input is checked in lib/ for historical reasons; see README.md.)
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "anomalens/core/tensor.h"

namespace anomalens::bindings {

// Coordinate names used in messages.
extern const std::vector<std::string> kRowColumn;         // [rows, dim]
extern const std::vector<std::string> kImageChannelYX;    // [n, c, h, w]
extern const std::vector<std::string> kImageYX;           // [n, h, w]

class FiniteCheck {
 public:
  // False (and remembers the first bad element) when data[0, numel(shape)) holds a NaN or an
  // infinity. `dims` names the axes of `shape` (same length). Worker thread.
  bool check(const float* data, const Shape& shape, const std::string& name, const std::vector<std::string>& dims);
  bool found() const { return index_ >= 0; }
  // Main thread: throws the RangeError when check() found something.
  void throwIfFound(Napi::Env env) const;

 private:
  std::string name_;
  Shape shape_;
  std::vector<std::string> dims_;
  int64_t index_ = -1;
  float value_ = 0;
};

}  // namespace anomalens::bindings
