// Method-specific feature kernels of the detectors (PatchCore and PaDiM). Plain pointers,
// caller-allocated outputs, NCHW float32 inputs.
#pragma once
#include <cstdint>
#include <vector>

namespace anomalens {

// PatchCore's locally aware patch features, as the original code computes them: each layer's
// 3x3 neighbourhood (zero padded) flattened channel-major to c * 9 values and adaptive-average
// pooled to `layerDim`; the deeper layer's pooled vectors are bilinearly resized
// (align_corners false) to the first layer's grid; the two pooled vectors are concatenated and
// adaptive-average pooled to `outDim`.
//   a: [n, ca, ha, wa] (layer2), b: [n, cb, hb, wb] (layer3)
//   out: [n * ha * wa, outDim], row (i, y, x) = i * ha * wa + y * wa + x
// Pooling and resizing are both linear and act on different axes, so the deeper layer is pooled
// on its own grid first and resized after (same result, far less work).
void patchcoreEmbed(const float* a, int64_t n, int64_t ca, int64_t ha, int64_t wa, const float* b, int64_t cb,
                    int64_t hb, int64_t wb, int64_t layerDim, int64_t outDim, float* out);

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
