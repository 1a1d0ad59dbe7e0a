// The per-pixel cosine loss of the Reverse Distillation paper (Deng & Li 2022, eq. 2-3), an
// option beside the original code's whole-map loss (losses.h cosineMapLoss): for one scale,
// the mean over the batch and the h * w positions of 1 - cos(a[i, :, p], b[i, :, p]), the
// cosine over the c channels as torch 1.13's F.cosine_similarity(dim=1, eps) (each norm clamped
// to eps). a, b [n, c, hw]; gradA, gradB [n, c, hw] (null = not wanted). Sums in double; the
// result does not depend on the thread count.
//
// Example: double l = cosinePixelLoss(16, 256, 64 * 64, teacher, student, 1e-8f, nullptr, dStudent);
#pragma once
#include <cstdint>

namespace anomalens::train {

double cosinePixelLoss(int64_t n, int64_t c, int64_t hw, const float* a, const float* b, float eps, float* gradA,
                       float* gradB);

}  // namespace anomalens::train
