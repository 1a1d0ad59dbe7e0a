// Image preprocessing bindings. All outputs are caller-allocated typed arrays; inputs are
// pinned and read in place.
//   resizeBilinear(src: Uint8Array, height, width, channels, outHeight, outWidth, dst: Uint8Array) -> Promise<void>
//   toRgb(src: Uint8Array, pixels, channels, dst: Uint8Array) -> Promise<void>
//   preprocessBatch(images: Uint8Array[], geometry: number[] (7 per image: height, width,
//     channels, resizeHeight, resizeWidth, top, left), outHeight, outWidth, mean: number[3],
//     std: number[3], out: Float32Array) -> Promise<void>
#include <array>

#include "anomalens/image/pil_resize.h"
#include "core/worker.h"

namespace anomalens::bindings {
namespace {

int64_t integerArg(const Napi::Value& v, const std::string& what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), what + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)))
    throw Napi::RangeError::New(v.Env(), what + " must be an integer");
  return static_cast<int64_t>(d);
}

// The bytes of a Uint8Array (a Buffer is one), which must hold exactly `length` bytes.
uint8_t* uint8Data(const Napi::Value& v, const std::string& what, int64_t length) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    throw Napi::TypeError::New(v.Env(), what + " must be a Uint8Array");
  auto a = v.As<Napi::Uint8Array>();
  if (length < 0 || static_cast<int64_t>(a.ElementLength()) != length)
    throw makeError(v.Env(), "ERR_INVALID_ARGUMENT",
                    what + " has " + std::to_string(a.ElementLength()) + " bytes, expected " + std::to_string(length));
  return a.Data();
}

class ResizeWorker : public PromiseWorker {
 public:
  ResizeWorker(Napi::Env env, const uint8_t* src, int64_t h, int64_t w, int64_t c, int64_t oh, int64_t ow, uint8_t* dst)
      : PromiseWorker(env, "resizeBilinear"), src_(src), dst_(dst), h_(h), w_(w), c_(c), oh_(oh), ow_(ow) {}

 protected:
  void compute() override { resizeImageBilinear(src_, h_, w_, c_, oh_, ow_, dst_); }
  Napi::Value result(Napi::Env env) override { return env.Undefined(); }

 private:
  const uint8_t* src_;
  uint8_t* dst_;
  int64_t h_, w_, c_, oh_, ow_;
};

Napi::Value ResizeBilinear(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7) throw Napi::TypeError::New(env, "resizeBilinear: expected 7 arguments");
  const int64_t h = integerArg(info[1], "height"), w = integerArg(info[2], "width"), c = integerArg(info[3], "channels");
  const int64_t oh = integerArg(info[4], "outHeight"), ow = integerArg(info[5], "outWidth");
  if (h < 1 || w < 1 || oh < 1 || ow < 1 || (c != 1 && c != 3))
    throw Napi::RangeError::New(env, "resizeBilinear: sizes must be >= 1 and channels 1 or 3");
  const uint8_t* src = uint8Data(info[0], "src", h * w * c);
  uint8_t* dst = uint8Data(info[6], "dst", oh * ow * c);
  auto* worker = new ResizeWorker(env, src, h, w, c, oh, ow, dst);
  worker->pin(info[0]);
  worker->pin(info[6]);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

class ToRgbWorker : public PromiseWorker {
 public:
  ToRgbWorker(Napi::Env env, const uint8_t* src, int64_t pixels, int64_t c, uint8_t* dst)
      : PromiseWorker(env, "toRgb"), src_(src), dst_(dst), pixels_(pixels), c_(c) {}

 protected:
  void compute() override { toRgb(src_, pixels_, c_, dst_); }
  Napi::Value result(Napi::Env env) override { return env.Undefined(); }

 private:
  const uint8_t* src_;
  uint8_t* dst_;
  int64_t pixels_, c_;
};

Napi::Value ToRgb(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4) throw Napi::TypeError::New(env, "toRgb: expected 4 arguments");
  const int64_t pixels = integerArg(info[1], "pixels"), c = integerArg(info[2], "channels");
  if (pixels < 0 || c < 1 || c > 4) throw Napi::RangeError::New(env, "toRgb: pixels must be >= 0 and channels 1..4");
  const uint8_t* src = uint8Data(info[0], "src", pixels * c);
  uint8_t* dst = uint8Data(info[3], "dst", pixels * 3);
  auto* worker = new ToRgbWorker(env, src, pixels, c, dst);
  worker->pin(info[0]);
  worker->pin(info[3]);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

class PreprocessWorker : public PromiseWorker {
 public:
  PreprocessWorker(Napi::Env env, std::vector<PreprocessItem> items, int64_t oh, int64_t ow, std::array<float, 6> ms,
                   float* out)
      : PromiseWorker(env, "preprocessBatch"), items_(std::move(items)), oh_(oh), ow_(ow), ms_(ms), out_(out) {}

 protected:
  void compute() override {
    preprocessBatch(items_.data(), static_cast<int64_t>(items_.size()), oh_, ow_, ms_.data(), ms_.data() + 3, out_);
  }
  Napi::Value result(Napi::Env env) override { return env.Undefined(); }

 private:
  std::vector<PreprocessItem> items_;
  int64_t oh_, ow_;
  std::array<float, 6> ms_;  // mean then std
  float* out_;
};

Napi::Value PreprocessBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7 || !info[0].IsArray() || !info[1].IsArray() || !info[4].IsArray() || !info[5].IsArray())
    throw Napi::TypeError::New(env, "preprocessBatch(images[], geometry[], outHeight, outWidth, mean[3], std[3], out)");
  auto images = info[0].As<Napi::Array>();
  auto geometry = info[1].As<Napi::Array>();
  const uint32_t n = images.Length();
  if (n == 0 || geometry.Length() != 7 * n)
    throw Napi::RangeError::New(env, "preprocessBatch: need at least one image and 7 geometry numbers per image");
  const int64_t oh = integerArg(info[2], "outHeight"), ow = integerArg(info[3], "outWidth");
  if (oh < 1 || ow < 1) throw Napi::RangeError::New(env, "preprocessBatch: output size must be >= 1");
  std::array<float, 6> ms{};
  for (uint32_t c = 0; c < 3; ++c) {
    Napi::Value m = info[4].As<Napi::Array>().Get(c), s = info[5].As<Napi::Array>().Get(c);
    if (!m.IsNumber() || !s.IsNumber()) throw Napi::TypeError::New(env, "preprocessBatch: mean and std must hold 3 numbers");
    ms[c] = m.As<Napi::Number>().FloatValue();
    ms[3 + c] = s.As<Napi::Number>().FloatValue();
  }
  std::vector<PreprocessItem> items(n);
  for (uint32_t i = 0; i < n; ++i) {
    int64_t g[7];
    for (uint32_t j = 0; j < 7; ++j) g[j] = integerArg(geometry.Get(7 * i + j), "geometry");
    PreprocessItem& it = items[i];
    it.height = g[0], it.width = g[1], it.channels = g[2], it.resizeHeight = g[3], it.resizeWidth = g[4];
    it.top = g[5], it.left = g[6];
    if (it.height < 1 || it.width < 1 || it.channels < 1 || it.channels > 4 || it.resizeHeight < 1 || it.resizeWidth < 1)
      throw Napi::RangeError::New(env, "preprocessBatch: image " + std::to_string(i) + " has an invalid geometry");
    it.data = uint8Data(images.Get(i), "images[" + std::to_string(i) + "]", it.height * it.width * it.channels);
  }
  float* out = const_cast<float*>(float32View(info[6], "out", {static_cast<int64_t>(n), 3, oh, ow}).data);
  auto* worker = new PreprocessWorker(env, std::move(items), oh, ow, ms, out);
  for (uint32_t i = 0; i < n; ++i) worker->pin(images.Get(i));
  worker->pin(info[6]);
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

void init(Napi::Env env, Napi::Object exports) {
  exports.Set("resizeBilinear", Napi::Function::New(env, ResizeBilinear, "resizeBilinear"));
  exports.Set("toRgb", Napi::Function::New(env, ToRgb, "toRgb"));
  exports.Set("preprocessBatch", Napi::Function::New(env, PreprocessBatch, "preprocessBatch"));
}

}  // namespace
ANOMALENS_REGISTER(image, init);
}  // namespace anomalens::bindings
