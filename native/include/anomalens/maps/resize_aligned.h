// Bilinear resize with align_corners = true: torch's F.interpolate(mode='bilinear',
// align_corners=True), which Reverse Distillation's cal_anomaly_map uses (the corners of input
// and output coincide; source x = dst x * (iw - 1) / (ow - 1)). n * c independent planes, in
// [n, c, ih, iw] -> out [n, c, oh, ow], caller-owned. The four taps are weighted in float64
// and rounded once: within 1 ulp of torch's float32 kernel.
// Example: resizeMapsBilinearAlignCorners(maps, 8, 1, 16, 16, 256, 256, upsampled).
#pragma once
#include <cstdint>

namespace anomalens {

void resizeMapsBilinearAlignCorners(const float* in, int64_t n, int64_t c, int64_t ih, int64_t iw, int64_t oh, int64_t ow,
                                float* out);

}  // namespace anomalens
