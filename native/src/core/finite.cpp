// The finiteness scan shared by every family's input checks, see anomalens/core/finite.h.
#include "anomalens/core/finite.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace anomalens {

int64_t firstNonFinite(const float* data, int64_t count) {
  constexpr int64_t kChunk = 1 << 16;
  int64_t chunks = (count + kChunk - 1) / kChunk;
  int64_t first = -1;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t begin = c * kChunk, end = std::min(count, begin + kChunk);
    // One branch-free pass on the exponent bits (all ones = NaN or infinity), then a rare rescan.
    uint32_t bad = 0;
    for (int64_t i = begin; i < end; ++i) {
      uint32_t u;
      std::memcpy(&u, data + i, sizeof u);
      bad |= static_cast<uint32_t>((u & 0x7f800000u) == 0x7f800000u);
    }
    if (!bad) continue;
    for (int64_t i = begin; i < end; ++i) {
      if (!std::isfinite(data[i])) {
#pragma omp critical(anomalens_first_non_finite)
        if (first < 0 || i < first) first = i;
        break;
      }
    }
  }
  return first;
}

}  // namespace anomalens
