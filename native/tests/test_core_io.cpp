// core (tensor, finite) and io (safetensors): round trips through hand-written files.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>

#include "anomalens/core/error.h"
#include "anomalens/core/finite.h"
#include "anomalens/core/tensor.h"
#include "anomalens/io/safetensors.h"
#include "harness.h"

namespace anomalens::tests {

RawTensor f32Tensor(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values) {
  RawTensor t{name, "F32", std::move(shape), std::vector<uint8_t>(values.size() * 4)};
  std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  return t;
}

std::vector<uint8_t> safetensorsBytes(const std::vector<RawTensor>& tensors, const std::string& metadataJson) {
  std::string header = "{";
  uint64_t offset = 0;
  for (const RawTensor& t : tensors) {
    if (header.size() > 1) header += ",";
    header += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) header += (i ? "," : "") + std::to_string(t.shape[i]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + t.bytes.size()) + "]}";
    offset += t.bytes.size();
  }
  if (!metadataJson.empty()) header += std::string(header.size() > 1 ? "," : "") + "\"__metadata__\":" + metadataJson;
  header += "}";
  std::vector<uint8_t> out(8);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  for (const RawTensor& t : tensors) out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  return out;
}

void writeFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

namespace {

// float -> IEEE half / bfloat16 bits, for values exactly representable in both (the tests
// pick such values, so no rounding question arises).
uint16_t halfBits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const int32_t exp = static_cast<int32_t>((u >> 23) & 0xff) - 127 + 15;
  const uint32_t mant = (u >> 13) & 0x3ffu;
  if ((u & 0x7fffffffu) == 0) return static_cast<uint16_t>(sign);
  return static_cast<uint16_t>(sign | (static_cast<uint32_t>(exp) << 10) | mant);
}
uint16_t bf16Bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace

TEST(core_tensor_shapes) {
  CHECK(numel({13, 97, 1}) == 13 * 97);
  CHECK(numel({}) == 1);
  CHECK(shapeString({2, 3, 5}) == "[2, 3, 5]");
  CHECK_THROWS_CODE(numel({-1, 3}), ErrorCode::InvalidArgument);
  CHECK_THROWS_CODE(numel({1ll << 40, 1ll << 40}), ErrorCode::InvalidArgument);
  Tensor z = Tensor::zeros({3, 13});
  bool allZero = true;
  for (int64_t i = 0; i < z.numel(); ++i) allZero = allZero && z.data()[i] == 0.f;
  CHECK(allZero);
  CHECK(reinterpret_cast<uintptr_t>(z.data()) % 64 == 0);
  Tensor r = z.reshaped({39});
  CHECK(r.data() == z.data() && r.shape() == Shape{39});
  CHECK_THROWS_CODE(z.reshaped({40}), ErrorCode::InvalidArgument);
}

TEST(core_first_non_finite) {
  for (int64_t n : {int64_t(1), int64_t(13), int64_t(97), int64_t(65536 * 3 + 13)}) {
    std::vector<float> v(static_cast<size_t>(n), 1.f);
    CHECK(firstNonFinite(v.data(), n) == -1);
    for (int64_t at : {n - 1, n / 2, int64_t(0)}) {
      std::vector<float> w = v;
      w[static_cast<size_t>(at)] = std::numeric_limits<float>::quiet_NaN();
      if (at + 1 < n) w[static_cast<size_t>(n - 1)] = std::numeric_limits<float>::infinity();
      // The naive twin: the first index where !isfinite.
      int64_t naive = -1;
      for (int64_t i = 0; i < n && naive < 0; ++i)
        if (!std::isfinite(w[static_cast<size_t>(i)])) naive = i;
      CHECK_MSG(firstNonFinite(w.data(), n) == naive, "n " << n << " at " << at);
    }
  }
  CHECK(firstNonFinite(nullptr, 0) == -1);
}

TEST(io_safetensors_round_trip) {
  Rng rng(1);
  std::vector<float> a = rng.floats(13 * 7), d64src = {0.5f, -2.25f, 1e-3f};
  std::vector<float> halves = {1.f, -0.5f, 2048.f, 0.f, 0.125f};
  RawTensor h{"h", "F16", {5}, {}}, b{"b", "BF16", {5}, {}}, f64{"d", "F64", {3}, {}}, i8{"q", "I8", {2}, {7, 9}};
  for (float v : halves) {
    uint16_t x = halfBits(v), y = bf16Bits(v);
    h.bytes.push_back(static_cast<uint8_t>(x)), h.bytes.push_back(static_cast<uint8_t>(x >> 8));
    b.bytes.push_back(static_cast<uint8_t>(y)), b.bytes.push_back(static_cast<uint8_t>(y >> 8));
  }
  for (float v : d64src) {
    double x = v;
    uint8_t raw[8];
    std::memcpy(raw, &x, 8);
    f64.bytes.insert(f64.bytes.end(), raw, raw + 8);
  }
  auto bytes = safetensorsBytes({f32Tensor("layer.a", {13, 7}, a), h, b, f64, i8}, "{\"format\":\"pt\"}");
  SafetensorsFile f = SafetensorsFile::parse(bytes, "mem");
  CHECK((f.names() == std::vector<std::string>{"layer.a", "h", "b", "d", "q"}));
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.entry("layer.a").shape == (Shape{13, 7}));
  Tensor ta = f.toFloat("layer.a");
  CHECK(std::memcmp(ta.data(), a.data(), a.size() * 4) == 0);
  Tensor th = f.toFloat("h"), tb = f.toFloat("b"), td = f.toFloat("d");
  for (size_t i = 0; i < halves.size(); ++i) CHECK(th.data()[i] == halves[i] && tb.data()[i] == halves[i]);
  for (size_t i = 0; i < d64src.size(); ++i) CHECK(td.data()[i] == d64src[i]);
  CHECK(f.entry("q").dtype == DType::I8);
  CHECK_THROWS_CODE(f.toFloat("q"), ErrorCode::InvalidFile);

  // The same through a file.
  const std::string path = tempPath("round.safetensors");
  writeFile(path, bytes);
  SafetensorsFile g = SafetensorsFile::read(path);
  CHECK(std::memcmp(g.toFloat("layer.a").data(), a.data(), a.size() * 4) == 0);
  std::remove(path.c_str());
  CHECK_THROWS_CODE(SafetensorsFile::read(path), ErrorCode::Io);
}

TEST(io_safetensors_malformed) {
  auto good = safetensorsBytes({f32Tensor("x", {2, 3}, std::vector<float>(6, 1.f))});
  // Truncated data, truncated header length, header beyond the file, bad JSON, wrong size.
  std::vector<std::vector<uint8_t>> bad;
  bad.push_back(std::vector<uint8_t>(good.begin(), good.end() - 1));
  bad.push_back(std::vector<uint8_t>(good.begin(), good.begin() + 5));
  auto longHeader = good;
  longHeader[0] = 0xff, longHeader[1] = 0xff;
  bad.push_back(longHeader);
  auto badJson = good;
  badJson[9] = '!';
  bad.push_back(badJson);
  bad.push_back(safetensorsBytes({RawTensor{"x", "F32", {2, 3}, std::vector<uint8_t>(20)}}));
  bad.push_back(safetensorsBytes({RawTensor{"x", "Q7", {1}, std::vector<uint8_t>(4)}}));
  for (size_t i = 0; i < bad.size(); ++i) CHECK_THROWS_CODE(SafetensorsFile::parse(bad[i], "bad"), ErrorCode::InvalidFile);
}

}  // namespace anomalens::tests
