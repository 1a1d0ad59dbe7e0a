#include "anomalens/core/error.h"

namespace anomalens {

const char* errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument: return "ERR_INVALID_ARGUMENT";
    case ErrorCode::InvalidFile: return "ERR_INVALID_FILE";
    case ErrorCode::Io: return "ERR_IO";
    case ErrorCode::WeightsMismatch: return "ERR_WEIGHTS_MISMATCH";
    case ErrorCode::Unsupported: return "ERR_UNSUPPORTED";
    case ErrorCode::Busy: return "ERR_BUSY";
    case ErrorCode::Disposed: return "ERR_DISPOSED";
    case ErrorCode::Internal: return "ERR_INTERNAL";
  }
  return "ERR_INTERNAL";
}

}  // namespace anomalens
