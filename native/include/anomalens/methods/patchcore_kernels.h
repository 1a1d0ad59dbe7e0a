// PatchCore's feature kernel: locally aware patch features. Plain pointers, caller-allocated
// outputs, NCHW float32 inputs. PaDiM's kernels are in padim_kernels.h.
#pragma once
#include <cstdint>

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

}  // namespace anomalens
