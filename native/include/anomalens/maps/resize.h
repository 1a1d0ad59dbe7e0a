// Anomaly-map resize: torch-exact bilinear upsampling of float maps (the JS name is
// mapsResizeBilinear). Not the image resize: that one is PIL-exact on uint8 pixels,
// resizeImageBilinear in anomalens/image/pil_resize.h.
// Plain pointers, float32, NCHW contiguous, caller-allocated outputs, multithreaded with
// OpenMP. No NaN / infinity check (firstNonFinite in anomalens/core/finite.h does); no throw
// for valid sizes.
#pragma once
#include <cstdint>

namespace anomalens {

// Bilinear resize of n * c independent planes, bit-identical to PyTorch 1.13's CPU kernels
// (AVX2 build) for F.interpolate(x, size=(oh, ow), mode='bilinear', align_corners=False,
// antialias=False). Per axis: scale = float(in) / out (float), source = scale * (dst + 0.5) - 0.5
// (in double) clamped at 0, i0 = trunc(source), i1 = min(i0 + 1, in - 1),
// l1 = float(clamp(source - i0, 0, 1)), l0 = 1 - l1 (an axis whose size does not change is
// copied). The arithmetic follows the kernel PyTorch picks for the input:
//   c == 1 or ih * iw == 1 ("channels-last contiguous"): w = float(ly * lx) for the four taps,
//     out = float(sum of w * v in float64);
//   otherwise: h = fma(v0, lx0, v1 * lx1) for the two source rows,
//     out = fma(h0, ly0, h1 * ly1) (exact on any CPU; fast where FMA exists).
//   in: [n, c, ih, iw]; out: [n, c, oh, ow]; all sizes >= 1; out must not overlap in.
// Example: resizeMapsBilinear(maps, 32, 1, 28, 28, 256, 256, upsampled).
void resizeMapsBilinear(const float* in, int64_t n, int64_t c, int64_t ih, int64_t iw, int64_t oh, int64_t ow,
                    float* out);

}  // namespace anomalens
