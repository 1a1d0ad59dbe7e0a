// Image preprocessing bindings. All outputs are caller-allocated typed arrays; inputs are
// pinned and read in place.
//   resizeBilinear(src: Uint8Array, height, width, channels, outHeight, outWidth, dst: Uint8Array) -> Promise<void>
//     (PIL-exact uint8 resize: resizeImageBilinear in anomalens/image/pil_resize.h)
//   toRgb(src: Uint8Array, pixels, channels, dst: Uint8Array) -> Promise<void>
//   preprocessBatch(images: Uint8Array[], geometry: number[] (7 per image: height, width,
//     channels, resizeHeight, resizeWidth, top, left), outHeight, outWidth, mean: number[3],
//     std: number[3], out: Float32Array) -> Promise<void>
#include <array>

#include "anomalens/image/pil_resize.h"
#include "core/args.h"
#include "core/module.h"
#include "core/worker.h"

namespace anomalens::bindings {
namespace {

using Style = ArgReader::LengthStyle;

Napi::Value ResizeBilinear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7) throw Napi::TypeError::New(env, "resizeBilinear: expected 7 arguments");
  ArgReader args(info, "");
  const int64_t h = args.signedInteger(1, "height"), w = args.signedInteger(2, "width"),
                c = args.signedInteger(3, "channels");
  const int64_t oh = args.signedInteger(4, "outHeight"), ow = args.signedInteger(5, "outWidth");
  if (h < 1 || w < 1 || oh < 1 || ow < 1 || (c != 1 && c != 3))
    throw Napi::RangeError::New(env, "resizeBilinear: sizes must be >= 1 and channels 1 or 3");
  const uint8_t* src = args.uint8(0, "src", h * w * c, Style::Bytes);
  uint8_t* dst = args.uint8(6, "dst", oh * ow * c, Style::Bytes);
  auto* worker = new TaskWorker(env, "resizeBilinear",
                                [=](FiniteCheck&) { resizeImageBilinear(src, h, w, c, oh, ow, dst); });
  worker->pin(info[0]);
  worker->pin(info[6]);
  return worker->start();
}

Napi::Value ToRgb(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4) throw Napi::TypeError::New(env, "toRgb: expected 4 arguments");
  ArgReader args(info, "");
  const int64_t pixels = args.signedInteger(1, "pixels"), c = args.signedInteger(2, "channels");
  if (pixels < 0 || c < 1 || c > 4) throw Napi::RangeError::New(env, "toRgb: pixels must be >= 0 and channels 1..4");
  const uint8_t* src = args.uint8(0, "src", pixels * c, Style::Bytes);
  uint8_t* dst = args.uint8(3, "dst", pixels * 3, Style::Bytes);
  auto* worker = new TaskWorker(env, "toRgb", [=](FiniteCheck&) { toRgb(src, pixels, c, dst); });
  worker->pin(info[0]);
  worker->pin(info[3]);
  return worker->start();
}

Napi::Value PreprocessBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7 || !info[0].IsArray() || !info[1].IsArray() || !info[4].IsArray() || !info[5].IsArray())
    throw Napi::TypeError::New(env, "preprocessBatch(images[], geometry[], outHeight, outWidth, mean[3], std[3], out)");
  ArgReader args(info, "");
  auto images = info[0].As<Napi::Array>();
  ArgReader geometry(info[1], "", "");
  const uint32_t n = images.Length();
  if (n == 0 || info[1].As<Napi::Array>().Length() != 7 * n)
    throw Napi::RangeError::New(env, "preprocessBatch: need at least one image and 7 geometry numbers per image");
  const int64_t oh = args.signedInteger(2, "outHeight"), ow = args.signedInteger(3, "outWidth");
  if (oh < 1 || ow < 1) throw Napi::RangeError::New(env, "preprocessBatch: output size must be >= 1");
  std::array<float, 6> ms{};  // mean then std
  for (uint32_t c = 0; c < 3; ++c) {
    Napi::Value m = info[4].As<Napi::Array>().Get(c), s = info[5].As<Napi::Array>().Get(c);
    if (!m.IsNumber() || !s.IsNumber()) throw Napi::TypeError::New(env, "preprocessBatch: mean and std must hold 3 numbers");
    ms[c] = m.As<Napi::Number>().FloatValue();
    ms[3 + c] = s.As<Napi::Number>().FloatValue();
  }
  std::vector<PreprocessItem> items(n);
  for (uint32_t i = 0; i < n; ++i) {
    int64_t g[7];
    for (uint32_t j = 0; j < 7; ++j) g[j] = geometry.signedInteger(7 * i + j, "geometry");
    PreprocessItem& it = items[i];
    it.height = g[0], it.width = g[1], it.channels = g[2], it.resizeHeight = g[3], it.resizeWidth = g[4];
    it.top = g[5], it.left = g[6];
    if (it.height < 1 || it.width < 1 || it.channels < 1 || it.channels > 4 || it.resizeHeight < 1 || it.resizeWidth < 1)
      throw Napi::RangeError::New(env, "preprocessBatch: image " + std::to_string(i) + " has an invalid geometry");
    ArgReader list(images, "", "");
    it.data = list.uint8(i, "images[" + std::to_string(i) + "]", it.height * it.width * it.channels, Style::Bytes);
  }
  float* out = const_cast<float*>(args.float32View(6, "out", {static_cast<int64_t>(n), 3, oh, ow}).data);
  auto* worker = new TaskWorker(env, "preprocessBatch", [items = std::move(items), oh, ow, ms, out](FiniteCheck&) {
    preprocessBatch(items.data(), static_cast<int64_t>(items.size()), oh, ow, ms.data(), ms.data() + 3, out);
  });
  for (uint32_t i = 0; i < n; ++i) worker->pin(images.Get(i));
  worker->pin(info[6]);
  return worker->start();
}

void init(Napi::Env env, Napi::Object exports) {
  exportFunctions(env, exports, {
    {"resizeBilinear", ResizeBilinear},
    {"toRgb", ToRgb},
    {"preprocessBatch", PreprocessBatch}});
}

}  // namespace
ANOMALENS_REGISTER(image, init);
}  // namespace anomalens::bindings
