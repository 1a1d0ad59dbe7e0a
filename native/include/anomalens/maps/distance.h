// Per-pixel distance maps between two feature maps (the Reverse Distillation building blocks).
// Plain pointers, float32, NCHW contiguous, caller-allocated outputs, multithreaded with
// OpenMP. No NaN / infinity check (firstNonFinite in anomalens/core/finite.h does); no throw
// for valid sizes.
#pragma once
#include <cstdint>

namespace anomalens {

// 1 - cosine similarity over channels per pixel, as 1 - torch 1.13's
// F.cosine_similarity(a, b, dim=1, eps): each vector is divided by max(||x||, eps) (norms
// accumulated in float32 over c in order, as torch), then the products summed over c.
//   a, b: [n, c, h, w]; out: [n, h, w]; out must not overlap a or b.
// Example: cosineDistanceMap(teacher, student, 32, 256, 64, 64, 1e-8f, map).
void cosineDistanceMap(const float* a, const float* b, int64_t n, int64_t c, int64_t h, int64_t w, float eps,
                       float* out);

// Euclidean distance over channels per pixel, sqrt(sum_c (a - b)^2) (float32 accumulation in
// channel order), or its square when `squared`.
//   a, b: [n, c, h, w]; out: [n, h, w]; out must not overlap a or b.
void l2DistanceMap(const float* a, const float* b, int64_t n, int64_t c, int64_t h, int64_t w, bool squared,
                   float* out);

}  // namespace anomalens
