// Losses of the training methods, each returning the scalar loss and writing its gradient
// (caller-owned; null = not wanted). Sums run in double in a fixed order: results do not
// depend on the thread count.
#pragma once
#include <cstdint>

namespace anomalens::train {

// PANDA's compactness loss: mean over the batch of ||f_i - c||^2 / d, i.e. the mean of
// (f - c)^2 over all n * d elements. features [n, d], centre [d] (a constant); grad [n, d].
double compactnessLoss(int64_t n, int64_t d, const float* features, const float* centre, float* grad);

// Reverse Distillation's loss_function for one scale: mean over the batch of
// 1 - cos(a_i, b_i), a_i and b_i each sample's flattened map (m = c * h * w values), cosine
// as torch 1.13's F.cosine_similarity(dim=1, eps=1e-8): each norm clamped to eps first.
// The whole loss is the sum of this over the scales. a, b [n, m]; gradA, gradB [n, m].
double cosineMapLoss(int64_t n, int64_t m, const float* a, const float* b, float eps, float* gradA, float* gradB);

// PANDA's EWC penalty over one parameter tensor of `count` values:
//   lambda / 2 * sum_i fisher_i * (theta_i - thetaStar_i)^2,
// grad (dL/dtheta = lambda * fisher * (theta - thetaStar)) is *added* to `grad` (the
// parameter's gradient already holds the main loss's); sum the returned value over tensors.
double ewcPenalty(int64_t count, const float* theta, const float* thetaStar, const float* fisher, double lambda,
                  float* grad);

}  // namespace anomalens::train
