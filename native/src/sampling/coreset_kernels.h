// Distance kernels of the greedy coreset loop (internal to native/src).
//
// Rows are packed in blocks of 16: block b holds, for each coordinate t, the 16 values of
// rows 16b .. 16b+15 (float32 or float16), so one vector instruction serves 16 rows and no
// horizontal sums are needed. Padding rows of the last block carry a distance of -1 so they
// are never the farthest.
#pragma once
#include <cstdint>

namespace anomalens::coreset_detail {

constexpr int64_t kLanes = 16;

// The farthest row seen so far: larger distance wins, lower index on ties.
struct Farthest {
  float dist = -2.0f;
  int64_t index = -1;
  void offer(float d, int64_t i) {
    if (d > dist || (d == dist && i < index)) {
      dist = d;
      index = i;
    }
  }
};

struct Kernels {
  // Lowers mind[16b + l] to the squared distance of row 16b + l from `c` (p values) for
  // blocks [b0, b1) and returns the farthest of those rows afterwards.
  Farthest (*update)(const void* packed, int64_t p, int64_t b0, int64_t b1, const float* c, float* mind);
  // Writes the squared distances of the 16 rows of block b from `c` to out[0..15].
  void (*blockDistances)(const void* packed, int64_t p, int64_t b, const float* c, float* out);
  const char* name;
};

// The kernels for this CPU and storage (half: float16 blocks, else float32).
const Kernels& coresetKernels(bool half);

// float <-> float16 (IEEE binary16, round to nearest even), for packing and decoding.
uint16_t floatToHalf(float f);
float halfToFloat(uint16_t h);
// Converts count floats to halves (vectorised where the CPU has F16C).
void floatsToHalves(const float* in, uint16_t* out, int64_t count);

}  // namespace anomalens::coreset_detail
