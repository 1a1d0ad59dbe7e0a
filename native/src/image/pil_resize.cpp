// PIL-exact bilinear resampling and torchvision-exact normalisation (see image.h).
//
// The resampler follows Pillow's src/libImaging/Resample.c (precompute_coeffs,
// normalize_coeffs_8bpc, ImagingResampleHorizontal_8bpc / Vertical_8bpc, ImagingResampleInner)
// operation for operation, because bit-exactness depends on every detail: coefficients in
// double, the support widened by the scale factor when shrinking, bounds rounded with
// (int)(x + 0.5), each row of coefficients divided by its own sum, then converted to 22-bit
// fixed point with round-half-away, sums started at 1 << 21 and clipped to 0..255 after
// >> 22, horizontal pass first into an 8-bit intermediate, vertical pass second, and a pass
// skipped when its size does not change.
#include "anomalens/image/pil_resize.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <exception>
#include <string>
#include <vector>

#include "anomalens/core/error.h"

// Coefficients must be computed with separately rounded multiply and add, as Pillow's own
// (non-FMA) build computes them; a contracted fma could move a bound or a weight by 1 ulp.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace anomalens {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS

// One axis of a resize: for each output index, the first input index, the number of taps and
// ksize fixed-point weights (zero beyond the taps).
struct Coefficients {
  int64_t ksize = 0;
  std::vector<int> start;
  std::vector<int> count;
  std::vector<int32_t> weights;  // outSize * ksize
};

inline double bilinearFilter(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=off")))
#endif
Coefficients computeCoefficients(int64_t inSize, int64_t outSize) {
  // Pillow passes the box (0, 0, w, h) as floats: in0 = 0.0f, in1 = (float)inSize.
  const float in0 = 0.0f, in1 = static_cast<float>(inSize);
  double scale = static_cast<double>(in1 - in0) / static_cast<double>(outSize);
  double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 1.0 * filterscale;  // BILINEAR's support is 1
  Coefficients c;
  c.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  c.start.resize(outSize);
  c.count.resize(outSize);
  c.weights.assign(static_cast<size_t>(outSize * c.ksize), 0);
  std::vector<double> k(static_cast<size_t>(c.ksize));
  const double ss = 1.0 / filterscale;
  for (int64_t xx = 0; xx < outSize; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > inSize) xmax = static_cast<int>(inSize);
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = bilinearFilter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x)
      if (ww != 0.0) k[x] /= ww;
    int32_t* kw = &c.weights[static_cast<size_t>(xx * c.ksize)];
    for (int x = 0; x < xmax; ++x)
      kw[x] = k[x] < 0 ? static_cast<int32_t>(-0.5 + k[x] * (1 << kPrecisionBits))
                       : static_cast<int32_t>(0.5 + k[x] * (1 << kPrecisionBits));
    c.start[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t v) {
  v >>= kPrecisionBits;  // arithmetic shift, as Pillow's lookup table index
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// The window [top, top + outHeight) x [left, left + outWidth) of the NCH-channel resample of
// a `channels`-channel image (channel j of the resample is source channel j), written as
// NCH-channel HWC into dst; pixels outside the resized image are 0.
template <int NCH>
void resizeWindow(const uint8_t* src, int64_t height, int64_t width, int64_t channels,
                  int64_t rh, int64_t rw, int64_t top, int64_t left, int64_t outHeight,
                  int64_t outWidth, uint8_t* dst, bool parallel) {
  std::fill(dst, dst + outHeight * outWidth * NCH, uint8_t{0});
  // Output rows / columns of the resized image that fall inside the window.
  const int64_t y0 = std::max<int64_t>(top, 0), y1 = std::min(top + outHeight, rh);
  const int64_t x0 = std::max<int64_t>(left, 0), x1 = std::min(left + outWidth, rw);
  if (y0 >= y1 || x0 >= x1) return;
  const int64_t cols = x1 - x0;
  const bool needHorizontal = rw != width;
  const bool needVertical = rh != height;

  Coefficients cv;
  int64_t r0 = y0, r1 = y1;  // source rows the vertical pass reads
  if (needVertical) {
    cv = computeCoefficients(height, rh);
    r0 = cv.start[y0];
    r1 = 0;
    for (int64_t y = y0; y < y1; ++y) {
      r0 = std::min<int64_t>(r0, cv.start[y]);
      r1 = std::max<int64_t>(r1, cv.start[y] + cv.count[y]);
    }
  }

  // Horizontal pass (or column copy) of rows [r0, r1) into an 8-bit intermediate.
  const int64_t rowLen = cols * NCH;
  std::vector<uint8_t> temp(static_cast<size_t>((r1 - r0) * rowLen));
  if (needHorizontal) {
    const Coefficients ch = computeCoefficients(width, rw);
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* in = src + r * width * channels;
      uint8_t* o = temp.data() + (r - r0) * rowLen;
      for (int64_t x = x0; x < x1; ++x) {
        const int32_t* k = &ch.weights[static_cast<size_t>(x * ch.ksize)];
        const uint8_t* p = in + static_cast<int64_t>(ch.start[x]) * channels;
        const int n = ch.count[x];
        int32_t ss[NCH];
        for (int c = 0; c < NCH; ++c) ss[c] = 1 << (kPrecisionBits - 1);
        for (int j = 0; j < n; ++j)
          for (int c = 0; c < NCH; ++c) ss[c] += static_cast<int32_t>(p[j * channels + c]) * k[j];
        for (int c = 0; c < NCH; ++c) o[(x - x0) * NCH + c] = clip8(ss[c]);
      }
    }
  } else {
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* in = src + (r * width + x0) * channels;
      uint8_t* o = temp.data() + (r - r0) * rowLen;
      for (int64_t x = 0; x < cols; ++x)
        for (int c = 0; c < NCH; ++c) o[x * NCH + c] = in[x * channels + c];
    }
  }

  // Vertical pass (or row copy) into the window.
  auto outRow = [&](int64_t y) { return dst + ((y - top) * outWidth + (x0 - left)) * NCH; };
  if (needVertical) {
    std::vector<int32_t> acc(static_cast<size_t>(omp_get_max_threads()) * rowLen);
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t y = y0; y < y1; ++y) {
      int32_t* a = acc.data() + static_cast<int64_t>(omp_get_thread_num()) * rowLen;
      std::fill(a, a + rowLen, 1 << (kPrecisionBits - 1));
      const int32_t* k = &cv.weights[static_cast<size_t>(y * cv.ksize)];
      for (int j = 0; j < cv.count[y]; ++j) {
        const uint8_t* row = temp.data() + (cv.start[y] + j - r0) * rowLen;
        const int32_t kj = k[j];
        for (int64_t e = 0; e < rowLen; ++e) a[e] += static_cast<int32_t>(row[e]) * kj;
      }
      uint8_t* o = outRow(y);
      for (int64_t e = 0; e < rowLen; ++e) o[e] = clip8(a[e]);
    }
  } else {
    for (int64_t y = y0; y < y1; ++y) std::copy_n(temp.data() + (y - r0) * rowLen, rowLen, outRow(y));
  }
}

void checkImage(const void* src, int64_t height, int64_t width, int64_t channels, const char* what) {
  require(src != nullptr, std::string(what) + ": null image data");
  require(height >= 1 && width >= 1,
          std::string(what) + ": image size must be at least 1x1, received " + std::to_string(width) + "x" +
              std::to_string(height));
  require(channels >= 1 && channels <= 4,
          std::string(what) + ": channels must be 1..4, received " + std::to_string(channels));
}

// Replicates or drops channels: dst channel j = src channel min(j, srcCh - 1).
void mapChannels(const uint8_t* src, int64_t pixels, int64_t srcCh, uint8_t* dst, int64_t dstCh) {
  for (int64_t p = 0; p < pixels; ++p)
    for (int64_t j = 0; j < dstCh; ++j) dst[p * dstCh + j] = src[p * srcCh + std::min(j, srcCh - 1)];
}

}  // namespace

void resizeImageBilinearWindow(const uint8_t* src, int64_t height, int64_t width, int64_t channels,
                          int64_t resizeHeight, int64_t resizeWidth, int64_t top, int64_t left,
                          int64_t outHeight, int64_t outWidth, int64_t dstChannels, uint8_t* dst,
                          bool parallel) {
  checkImage(src, height, width, channels, "resizeImageBilinearWindow");
  require(resizeHeight >= 1 && resizeWidth >= 1 && outHeight >= 1 && outWidth >= 1,
          "resizeImageBilinearWindow: sizes must be >= 1");
  require(dstChannels == 3 || (dstChannels == 1 && channels == 1),
          "resizeImageBilinearWindow: dstChannels must be 3, or 1 for a 1-channel image");
  require(dst != nullptr, "resizeImageBilinearWindow: null output");
  const int64_t pixels = outHeight * outWidth;
  if (dstChannels == 1) {
    resizeWindow<1>(src, height, width, 1, resizeHeight, resizeWidth, top, left, outHeight, outWidth, dst, parallel);
    return;
  }
  // dstChannels == 3: grey (+alpha) resampled once and replicated, RGB(A) resampled as RGB.
  if (channels <= 2) {
    std::vector<uint8_t> grey(static_cast<size_t>(pixels));
    resizeWindow<1>(src, height, width, channels, resizeHeight, resizeWidth, top, left, outHeight, outWidth,
                    grey.data(), parallel);
    mapChannels(grey.data(), pixels, 1, dst, 3);
  } else {
    resizeWindow<3>(src, height, width, channels, resizeHeight, resizeWidth, top, left, outHeight, outWidth, dst,
                    parallel);
  }
}

void resizeImageBilinear(const uint8_t* src, int64_t height, int64_t width, int64_t channels, int64_t outHeight,
                    int64_t outWidth, uint8_t* dst) {
  require(channels == 1 || channels == 3, "resizeImageBilinear: channels must be 1 or 3, received " + std::to_string(channels));
  resizeImageBilinearWindow(src, height, width, channels, outHeight, outWidth, 0, 0, outHeight, outWidth, channels, dst);
}

void toRgb(const uint8_t* src, int64_t pixels, int64_t channels, uint8_t* dst) {
  require(src != nullptr && dst != nullptr, "toRgb: null data");
  require(channels >= 1 && channels <= 4, "toRgb: channels must be 1..4, received " + std::to_string(channels));
  // Grey + alpha keeps only grey: channel map {0, 0, 0}; RGB(A) keeps {0, 1, 2}.
  const int64_t used = channels <= 2 ? 1 : 3;
#pragma omp parallel for schedule(static) if (pixels > (1 << 16))
  for (int64_t p = 0; p < pixels; ++p)
    for (int64_t j = 0; j < 3; ++j) dst[p * 3 + j] = src[p * channels + std::min(j, used - 1)];
}

void preprocessBatch(const PreprocessItem* items, int64_t n, int64_t outHeight, int64_t outWidth,
                     const float mean[3], const float std[3], float* out) {
  require(n >= 1 && items != nullptr && out != nullptr, "preprocessBatch: empty batch or null output");
  require(outHeight >= 1 && outWidth >= 1, "preprocessBatch: output size must be >= 1");
  for (int64_t i = 0; i < n; ++i) {
    const PreprocessItem& it = items[i];
    checkImage(it.data, it.height, it.width, it.channels, "preprocessBatch");
    require(it.resizeHeight >= 1 && it.resizeWidth >= 1, "preprocessBatch: resize size must be >= 1");
  }
  // torchvision: ToTensor divides the uint8 value by 255 in float32, Normalize subtracts the
  // float32 mean and divides by the float32 std. A 256-entry table per channel holds exactly
  // those float32 results.
  std::array<std::array<float, 256>, 3> lut;
  for (int c = 0; c < 3; ++c) {
    require(std[c] != 0.0f, "preprocessBatch: std must be non-zero");
    for (int v = 0; v < 256; ++v) {
      const float x = static_cast<float>(v) / 255.0f;
      lut[c][v] = (x - mean[c]) / std[c];
    }
  }
  const int64_t plane = outHeight * outWidth;
  const bool overImages = n > 1;
  std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 1) if (overImages)
  for (int64_t i = 0; i < n; ++i) {
    try {
      const PreprocessItem& it = items[i];
      const int64_t nch = it.channels <= 2 ? 1 : 3;
      std::vector<uint8_t> window(static_cast<size_t>(plane * nch));
      if (nch == 1)
        resizeWindow<1>(it.data, it.height, it.width, it.channels, it.resizeHeight, it.resizeWidth, it.top, it.left,
                        outHeight, outWidth, window.data(), !overImages);
      else
        resizeWindow<3>(it.data, it.height, it.width, it.channels, it.resizeHeight, it.resizeWidth, it.top, it.left,
                        outHeight, outWidth, window.data(), !overImages);
      float* o = out + i * 3 * plane;
      for (int64_t c = 0; c < 3; ++c) {
        const float* t = lut[c].data();
        const uint8_t* w = window.data() + std::min<int64_t>(c, nch - 1);
        float* oc = o + c * plane;
        for (int64_t p = 0; p < plane; ++p) oc[p] = t[w[p * nch]];
      }
    } catch (...) {
#pragma omp critical(anomalens_preprocess_failure)
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
}

}  // namespace anomalens
