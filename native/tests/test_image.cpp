// image: PIL-exact uint8 bilinear resize against a port of Pillow's Resample.c written for
// clarity (each output value on its own), plus window, toRgb and preprocessBatch.
#include <algorithm>
#include <cstring>

#include "anomalens/image/pil_resize.h"
#include "harness.h"

namespace anomalens::tests {
namespace {

constexpr int kPrecisionBits = 22;

struct Coeffs {
  int64_t start;
  std::vector<int64_t> weights;
};

// Pillow's precompute_coeffs for the bilinear filter (support 1), 22-bit fixed point.
std::vector<Coeffs> pilCoefficients(int64_t inSize, int64_t outSize) {
  const double scale = static_cast<double>(inSize) / static_cast<double>(outSize);
  const double filterscale = std::max(scale, 1.0);
  const double support = filterscale, ss = 1.0 / filterscale;
  std::vector<Coeffs> out;
  for (int64_t xx = 0; xx < outSize; ++xx) {
    const double center = (static_cast<double>(xx) + 0.5) * scale;
    const int64_t xmin = std::max<int64_t>(0, static_cast<int64_t>(center - support + 0.5));
    const int64_t xmax = std::min<int64_t>(inSize, static_cast<int64_t>(center + support + 0.5));
    std::vector<double> w;
    for (int64_t x = xmin; x < xmax; ++x) {
      const double t = std::abs((static_cast<double>(x) - center + 0.5) * ss);
      w.push_back(t < 1 ? 1 - t : 0);
    }
    double sum = 0;
    for (double v : w) sum += v;
    Coeffs c{xmin, {}};
    for (double v : w) {
      const double n = sum != 0 ? v / sum : v;
      c.weights.push_back(static_cast<int64_t>(n < 0 ? n * (1 << kPrecisionBits) - 0.5 : n * (1 << kPrecisionBits) + 0.5));
    }
    out.push_back(std::move(c));
  }
  return out;
}

uint8_t clip8(int64_t acc) { return static_cast<uint8_t>(std::min<int64_t>(255, std::max<int64_t>(0, acc >> kPrecisionBits))); }

// HWC h x w x c -> oh x ow x c: horizontal pass into 8 bits, then vertical (as Image.resize).
std::vector<uint8_t> referenceResize(const std::vector<uint8_t>& src, int64_t h, int64_t w, int64_t c, int64_t oh,
                                     int64_t ow) {
  std::vector<uint8_t> img = src;
  int64_t iw = w;
  if (ow != w) {
    auto k = pilCoefficients(w, ow);
    std::vector<uint8_t> tmp(static_cast<size_t>(ow * h * c));
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < ow; ++x)
        for (int64_t ch = 0; ch < c; ++ch) {
          int64_t acc = int64_t(1) << (kPrecisionBits - 1);
          for (size_t j = 0; j < k[x].weights.size(); ++j)
            acc += src[((y * w + k[x].start + static_cast<int64_t>(j)) * c + ch)] * k[x].weights[j];
          tmp[(y * ow + x) * c + ch] = clip8(acc);
        }
    img = tmp;
    iw = ow;
  }
  if (oh == h) return img;
  auto k = pilCoefficients(h, oh);
  std::vector<uint8_t> out(static_cast<size_t>(ow * oh * c));
  for (int64_t y = 0; y < oh; ++y)
    for (int64_t x = 0; x < iw; ++x)
      for (int64_t ch = 0; ch < c; ++ch) {
        int64_t acc = int64_t(1) << (kPrecisionBits - 1);
        for (size_t j = 0; j < k[y].weights.size(); ++j)
          acc += img[((k[y].start + static_cast<int64_t>(j)) * iw + x) * c + ch] * k[y].weights[j];
        out[(y * ow + x) * c + ch] = clip8(acc);
      }
  return out;
}

std::vector<uint8_t> randomImage(Rng& rng, int64_t n) {
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<uint8_t>(rng.next() & 0xff);
  return v;
}

}  // namespace

TEST(image_resize_matches_pil) {
  Rng rng(2);
  struct Case { int64_t h, w, c, oh, ow; };
  for (Case k : {Case{13, 97, 3, 7, 29}, Case{97, 13, 1, 131, 5}, Case{1, 1, 3, 13, 13}, Case{31, 17, 3, 31, 40},
                 Case{64, 48, 1, 1, 1}, Case{5, 7, 3, 97, 13}}) {
    auto src = randomImage(rng, k.h * k.w * k.c);
    std::vector<uint8_t> dst(static_cast<size_t>(k.oh * k.ow * k.c));
    resizeImageBilinear(src.data(), k.h, k.w, k.c, k.oh, k.ow, dst.data());
    CHECK_MSG(dst == referenceResize(src, k.h, k.w, k.c, k.oh, k.ow),
              k.h << "x" << k.w << "x" << k.c << " -> " << k.oh << "x" << k.ow);
  }
}

TEST(image_window_is_a_crop_of_the_full_resize) {
  Rng rng(3);
  const int64_t h = 29, w = 41, rh = 23, rw = 31;
  for (int64_t c : {1, 2, 3, 4}) {
    auto src = randomImage(rng, h * w * c);
    // The full resize of the RGB (or grey) image, by the reference.
    std::vector<uint8_t> rgb(static_cast<size_t>(h * w * 3));
    toRgb(src.data(), h * w, c, rgb.data());
    const int64_t rc = c <= 2 ? 1 : 3;
    std::vector<uint8_t> base(static_cast<size_t>(h * w * rc));
    for (int64_t p = 0; p < h * w; ++p)
      for (int64_t j = 0; j < rc; ++j) base[p * rc + j] = src[p * c + j];
    auto full = referenceResize(base, h, w, rc, rh, rw);
    // A window that pads (top -2, left 5, 13 x 97 pixels): outside the resized image is 0.
    const int64_t top = -2, left = 5, oh = 13, ow = 97;
    std::vector<uint8_t> win(static_cast<size_t>(oh * ow * 3));
    resizeImageBilinearWindow(src.data(), h, w, c, rh, rw, top, left, oh, ow, 3, win.data());
    bool same = true;
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t x = 0; x < ow; ++x)
        for (int64_t j = 0; j < 3; ++j) {
          const int64_t sy = y + top, sx = x + left;
          const bool inside = sy >= 0 && sy < rh && sx >= 0 && sx < rw;
          const uint8_t want = inside ? full[(sy * rw + sx) * rc + std::min(j, rc - 1)] : 0;
          same = same && win[(y * ow + x) * 3 + j] == want;
        }
    CHECK_MSG(same, "channels " << c);
  }
}

TEST(image_to_rgb) {
  Rng rng(4);
  for (int64_t c : {1, 2, 3, 4}) {
    auto src = randomImage(rng, 97 * c);
    std::vector<uint8_t> dst(97 * 3);
    toRgb(src.data(), 97, c, dst.data());
    bool same = true;
    for (int64_t p = 0; p < 97; ++p)
      for (int64_t j = 0; j < 3; ++j) same = same && dst[p * 3 + j] == src[p * c + (c <= 2 ? 0 : j)];
    CHECK_MSG(same, "channels " << c);
  }
}

TEST(image_preprocess_batch) {
  Rng rng(5);
  const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
  const int64_t oh = 13, ow = 11;
  std::vector<std::vector<uint8_t>> images;
  std::vector<PreprocessItem> items;
  const int64_t dims[3][3] = {{17, 19, 3}, {13, 11, 1}, {40, 9, 4}};
  for (auto& d : dims) images.push_back(randomImage(rng, d[0] * d[1] * d[2]));
  for (int i = 0; i < 3; ++i) {
    PreprocessItem it;
    it.data = images[i].data();
    it.height = dims[i][0], it.width = dims[i][1], it.channels = dims[i][2];
    it.resizeHeight = 15, it.resizeWidth = 12, it.top = 1, it.left = 0;
    items.push_back(it);
  }
  std::vector<float> out(static_cast<size_t>(3 * 3 * oh * ow));
  preprocessBatch(items.data(), 3, oh, ow, mean, stdv, out.data());
  bool same = true;
  for (int i = 0; i < 3; ++i) {
    std::vector<uint8_t> win(static_cast<size_t>(oh * ow * 3));
    const auto& it = items[i];
    resizeImageBilinearWindow(it.data, it.height, it.width, it.channels, it.resizeHeight, it.resizeWidth, it.top, it.left,
                              oh, ow, 3, win.data(), false);
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t p = 0; p < oh * ow; ++p) {
        const float want = (static_cast<float>(win[p * 3 + c]) / 255.f - mean[c]) / stdv[c];
        same = same && out[((i * 3 + c) * oh * ow) + p] == want;
      }
  }
  CHECK(same);
}

}  // namespace anomalens::tests
