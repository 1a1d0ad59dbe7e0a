// Image preprocessing: PIL's bilinear resize (bit-exact with Pillow's Resample.c, 8-bit
// fixed point, antialiased when shrinking), window crop and ImageNet-style normalisation into
// one contiguous NCHW float32 batch, as torchvision's PIL path does it:
//   Resize -> (CenterCrop) -> ToTensor (/255) -> Normalize(mean, std).
//
// Images are 8-bit HWC with 1..4 channels: grey, grey+alpha, RGB, RGBA. Grey is resampled
// once and replicated, alpha is ignored: the result is PIL's for convert('RGB') followed by
// the resize (channels are independent in PIL's "L" and "RGB" resampling). The geometry
// (torchvision's size and crop-offset rules) is decided by the caller (lib/image/images.ts); this
// file only resamples, crops and normalises.
#pragma once
#include <cstdint>

namespace anomalens {

// Resizes an 8-bit HWC image with PIL's BILINEAR filter, exactly as
// `Image.resize((outWidth, outHeight), Image.BILINEAR)` in Pillow (horizontal pass, 8-bit
// intermediate, vertical pass; antialiased support when shrinking).
//   src: height * width * channels bytes; dst: outHeight * outWidth * channels bytes
//   (caller-allocated). channels 1 (PIL "L") or 3 ("RGB"), all sizes >= 1.
// Example: resizeImageBilinear(rgb, 131, 97, 3, 80, 64, out)  // 97x131 -> 64x80 (w x h)
void resizeImageBilinear(const uint8_t* src, int64_t height, int64_t width, int64_t channels,
                    int64_t outHeight, int64_t outWidth, uint8_t* dst);

// Like resizeImageBilinear but produces only the window [top, top + outHeight) x
// [left, left + outWidth) of the resized image of size resizeHeight x resizeWidth. Window
// pixels outside the resized image are 0 (torchvision's CenterCrop pads with 0 when the crop
// is larger than the image). Each produced pixel equals the full resize's pixel bit for bit.
//   src: height * width * channels bytes (channels 1..4); dst: outHeight * outWidth *
//   dstChannels bytes. dstChannels 3: RGB, grey replicated and alpha dropped as PIL's
//   convert('RGB') does; dstChannels 1: only for a 1-channel source.
// `parallel`: spread rows over the OpenMP threads (pass false when already inside a
// parallel region over images).
void resizeImageBilinearWindow(const uint8_t* src, int64_t height, int64_t width, int64_t channels,
                          int64_t resizeHeight, int64_t resizeWidth, int64_t top, int64_t left,
                          int64_t outHeight, int64_t outWidth, int64_t dstChannels, uint8_t* dst,
                          bool parallel = true);

// One image of a preprocessing batch: where it is, and where its window lies in its resized
// image (top/left may be negative, or the window larger, when the crop pads).
struct PreprocessItem {
  const uint8_t* data = nullptr;  // height * width * channels bytes, HWC
  int64_t height = 0, width = 0, channels = 0;
  int64_t resizeHeight = 0, resizeWidth = 0;
  int64_t top = 0, left = 0;
};

// Resize + crop + (x / 255 - mean[c]) / std[c] of every item into one NCHW batch with 3
// channels (grey replicated, alpha dropped), in float32 arithmetic exactly as torchvision's
// ToTensor + Normalize compute it.
//   items: n entries; out: n * 3 * outHeight * outWidth floats (caller-allocated).
// Runs over images (n > 1) or over rows (n == 1) on the OpenMP threads.
// Example: preprocessBatch(items, 8, 224, 224, {0.485f, 0.456f, 0.406f},
//                          {0.229f, 0.224f, 0.225f}, batch)
void preprocessBatch(const PreprocessItem* items, int64_t n, int64_t outHeight, int64_t outWidth,
                     const float mean[3], const float std[3], float* out);

// Expands an 8-bit HWC image with 1..4 channels to RGB as PIL's convert('RGB') does for
// L / LA / RGB / RGBA: grey replicated, alpha dropped.
//   src: pixels * channels bytes; dst: pixels * 3 bytes (caller-allocated).
void toRgb(const uint8_t* src, int64_t pixels, int64_t channels, uint8_t* dst);

}  // namespace anomalens
