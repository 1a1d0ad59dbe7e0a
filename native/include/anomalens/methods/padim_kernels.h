// PaDiM's kernels: the embedding gather of random channel subsets, the per-position Gaussian
// (mean, inverse covariance) and the Mahalanobis map. Plain pointers, caller-allocated
// outputs, NCHW float32 inputs.
#pragma once
#include <cstdint>
#include <vector>

namespace anomalens {

// PaDiM's embedding: the selected channels `channels` (indices into the concatenation of all
// layers' channels) gathered at the first layer's resolution; deeper layers are upsampled by
// nearest neighbour (source row floor(y * h_l / h0)), which equals the original code's
// unfold/fold concatenation when the sizes divide.
//   layers[l]: [n, c_l, h_l, w_l]; out: [n, channels.size(), h0, w0]
void padimEmbed(const std::vector<const float*>& layers, int64_t n, const std::vector<int64_t>& c,
                const std::vector<int64_t>& h, const std::vector<int64_t>& w, const std::vector<int64_t>& channels,
                float* out);

// Per-position Gaussian of PaDiM: mean and the inverse of (unbiased covariance + reg * I).
//   emb: [n, d, p] (p = h * w positions), n >= 2
//   mean: [p, d]; precision: [p, d, d] (symmetric)
// Throws Error(InvalidArgument) if a covariance is not positive definite.
void padimFit(const float* emb, int64_t n, int64_t d, int64_t p, float reg, float* mean, float* precision);

// Mahalanobis distance sqrt((x - mean)^T precision (x - mean)) per image and position.
//   emb: [n, d, p]; out: [n, p]
void padimScore(const float* emb, int64_t n, int64_t d, int64_t p, const float* mean, const float* precision, float* out);

}  // namespace anomalens
