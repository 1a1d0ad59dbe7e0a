// Anomaly-map smoothing: scipy.ndimage's Gaussian filter.
// Plain pointers, float32, NCHW contiguous, caller-allocated outputs, multithreaded with
// OpenMP. No NaN / infinity check (firstNonFinite in anomalens/core/finite.h does); no throw
// for valid sizes.
#pragma once
#include <cstdint>
#include <vector>

namespace anomalens {

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

}  // namespace anomalens
