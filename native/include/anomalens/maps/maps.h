// Anomaly-map kernels: bilinear resize, Gaussian blur, and per-pixel distance maps between two
// feature maps (the Reverse Distillation building blocks). Plain pointers, float32, NCHW
// contiguous, caller-allocated outputs, multithreaded with OpenMP. None of them checks for NaN
// or infinity (firstNonFinite in anomalens/knn.h does); none of them throws for valid sizes.
#pragma once
#include <cstdint>
#include <vector>

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
// Example: resizeBilinear(maps, 32, 1, 28, 28, 256, 256, upsampled).
void resizeBilinear(const float* in, int64_t n, int64_t c, int64_t ih, int64_t iw, int64_t oh, int64_t ow,
                    float* out);

// Radius of scipy.ndimage's Gaussian kernel: int(truncate * sigma + 0.5).
int64_t gaussianRadius(double sigma, double truncate);

// scipy.ndimage's normalised 1-D Gaussian kernel, 2 * radius + 1 taps (float64):
// exp(-0.5 * x^2 / sigma^2) for x in [-radius, radius], divided by its sum.
std::vector<double> gaussianKernel1d(double sigma, int64_t radius);

// Gaussian blur of n maps, as scipy.ndimage.gaussian_filter(map, sigma, mode='reflect',
// truncate=truncate) on each 2-D map: separable, axis 0 (rows) then axis 1, 'reflect' =
// half-sample symmetric (d c b a | a b c d | d c b a), repeated when the map is smaller than
// the radius. Accumulates in float64 (also between the passes) and rounds once to float32, so
// the result is scipy's float64 result rounded to float32 up to a few float64 ulps.
//   in: [n, h, w]; out: [n, h, w]; sigma > 0; truncate >= 0; radius <= 65536. out may overlap in
//   (in place: the input is copied first).
// Example: gaussianBlur(maps, 32, 256, 256, 4.0, 4.0, maps).
void gaussianBlur(const float* in, int64_t n, int64_t h, int64_t w, double sigma, double truncate, float* out);

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
