// The one exception type of the native core. Every failure the caller can act on is an
// anomalens::Error with a stable code; bindings turn it into a rejected Promise whose
// error carries `.code`, and lib/ rethrows it as an AnomalensError.
#pragma once
#include <stdexcept>
#include <string>

namespace anomalens {

// Stable error codes (also documented in lib/core/errors.ts; keep both lists in sync).
enum class ErrorCode {
  InvalidArgument,   // ERR_INVALID_ARGUMENT: a value the caller passed is out of range / wrong shape
  InvalidFile,       // ERR_INVALID_FILE: a file exists but its content is malformed
  Io,                // ERR_IO: open/read/write/rename failed
  WeightsMismatch,   // ERR_WEIGHTS_MISMATCH: missing, unexpected or mis-shaped tensors
  Unsupported,       // ERR_UNSUPPORTED: a feature not available in this build or backend
  Busy,              // ERR_BUSY: an object is in use by an in-flight operation
  Disposed,          // ERR_DISPOSED: the object was disposed
  Internal,          // ERR_INTERNAL: a bug or a library failure we did not expect
};

const char* errorCodeName(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }
  const char* codeName() const { return errorCodeName(code_); }

 private:
  ErrorCode code_;
};

// Throws Error(InvalidArgument, message) when `condition` is false.
inline void require(bool condition, const std::string& message,
                    ErrorCode code = ErrorCode::InvalidArgument) {
  if (!condition) throw Error(code, message);
}

}  // namespace anomalens
