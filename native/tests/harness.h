// A minimal test harness for the native core: no framework, no Node. Each TEST registers a
// function; a CHECK that fails prints where and why and marks the test failed; main() runs
// every test (or those whose name contains argv[1]) and ends with "N passed, N failed".
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "anomalens/core/error.h"

namespace anomalens::tests {

struct TestCase {
  const char* name;
  std::function<void()> fn;
};
std::vector<TestCase>& registry();
struct Register {
  Register(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};
// Failures of the running test.
int& failures();

#define TEST(name)                                                               \
  static void test_##name();                                                     \
  static ::anomalens::tests::Register register_##name(#name, test_##name);       \
  static void test_##name()

#define CHECK(cond)                                                                              \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      ++::anomalens::tests::failures();                                                          \
      std::cerr << "  FAIL " << __FILE__ << ":" << __LINE__ << ": " << #cond << "\n";            \
    }                                                                                            \
  } while (0)

#define CHECK_MSG(cond, msg)                                                                     \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      ++::anomalens::tests::failures();                                                          \
      std::ostringstream os_;                                                                    \
      os_ << msg;                                                                                \
      std::cerr << "  FAIL " << __FILE__ << ":" << __LINE__ << ": " << #cond << ": " << os_.str() << "\n"; \
    }                                                                                            \
  } while (0)

// Expects `expr` to throw anomalens::Error with code `expected`.
#define CHECK_THROWS_CODE(expr, expected)                                                        \
  do {                                                                                           \
    bool thrown_ = false;                                                                        \
    try {                                                                                        \
      expr;                                                                                      \
    } catch (const ::anomalens::Error& e_) {                                                     \
      thrown_ = e_.code() == (expected);                                                             \
    }                                                                                            \
    CHECK_MSG(thrown_, "expected Error(" #expected ") from " #expr);                             \
  } while (0)

// A deterministic generator (splitmix64) for inputs.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) / 9007199254740992.0; }  // [0, 1)
  float uniform(float lo, float hi) { return lo + static_cast<float>(uniform()) * (hi - lo); }
  std::vector<float> floats(size_t n, float lo = -1.f, float hi = 1.f) {
    std::vector<float> v(n);
    for (auto& x : v) x = uniform(lo, hi);
    return v;
  }

 private:
  uint64_t s_;
};

// max |a - b| / max(max |b|, floor): a relative error against the reference's scale.
inline double relError(const float* a, const double* b, size_t n, double floor = 1e-30) {
  double err = 0, scale = floor;
  for (size_t i = 0; i < n; ++i) {
    err = std::max(err, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return err / scale;
}

// A temporary file path (removed by the caller).
std::string tempPath(const std::string& name);

}  // namespace anomalens::tests

namespace anomalens::tests {
// One tensor of a safetensors file written by the tests: raw little-endian bytes of `dtype`.
struct RawTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
RawTensor f32Tensor(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values);
// The bytes of a safetensors file (8-byte header length, JSON header, data), written by hand so
// that the reader is tested against the format, not against itself.
std::vector<uint8_t> safetensorsBytes(const std::vector<RawTensor>& tensors, const std::string& metadataJson = "");
void writeFile(const std::string& path, const std::vector<uint8_t>& bytes);
}  // namespace anomalens::tests
