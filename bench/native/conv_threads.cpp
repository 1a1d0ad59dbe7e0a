// Times the training convolution's passes (forward, backward data, backward weights) one by
// one on the shapes of PANDA's step (ResNet-50 layer3 + layer4 at 112 px, batch 16) on 1 and 2
// threads, with the wall time and each OpenMP thread's own CPU time during the pass: a pass
// that uses both threads shows CPU time on both even on a loaded machine (where process CPU /
// wall says little), one that does not shows ~0 on thread 1. Run with OMP_WAIT_POLICY=passive
// so that idle threads sleep instead of spinning (spinning would count as CPU time).
//
//   cmake -S . -B build-native-tests -DANOMALENS_TESTS=ON
//   cmake --build build-native-tests --target anomalens_conv_threads -j2
//   ./build-native-tests/anomalens_conv_threads [reps] [threads...]
#include <omp.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "anomalens/core/threading.h"
#include "anomalens/train/ops.h"

using anomalens::train::Conv2dShape;

namespace {

double now(clockid_t id) {
  timespec t;
  clock_gettime(id, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// The CPU time of each of the first t threads of the OpenMP pool.
std::vector<double> threadCpu(int t) {
  std::vector<double> v(t, 0.0);
#pragma omp parallel num_threads(t)
  v[omp_get_thread_num()] = now(CLOCK_THREAD_CPUTIME_ID);
  return v;
}

struct Named {
  const char* name;
  Conv2dShape s;
};

Conv2dShape shape(int64_t n, int64_t c, int64_t hw, int64_t k, int64_t kk, int64_t stride) {
  Conv2dShape s;
  s.n = n, s.c = c, s.h = hw, s.w = hw, s.k = k, s.kh = kk, s.kw = kk;
  s.strideH = s.strideW = stride;
  s.padH = s.padW = kk / 2;
  return s;
}

std::vector<float> hashed(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    v[i] = static_cast<float>(h % 2001) / 1000.f - 1.f;
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 5;
  std::vector<int> threads;
  for (int i = 2; i < argc; ++i) threads.push_back(std::atoi(argv[i]));
  if (threads.empty()) threads = {1, 2};
  const std::vector<Named> shapes = {
      {"l3 3x3 256 7x7", shape(16, 256, 7, 256, 3, 1)},
      {"l3 1x1 1024->256 7x7", shape(16, 1024, 7, 256, 1, 1)},
      {"l3 1x1 256->1024 7x7", shape(16, 256, 7, 1024, 1, 1)},
      {"l3 3x3 s2 256 14->7", shape(16, 256, 14, 256, 3, 2)},
      {"l4 3x3 512 4x4", shape(16, 512, 4, 512, 3, 1)},
      {"l4 1x1 2048->512 4x4", shape(16, 2048, 4, 512, 1, 1)},
      {"l4 1x1 512->2048 4x4", shape(16, 512, 4, 2048, 1, 1)},
      {"l4 3x3 s2 512 7->4", shape(16, 512, 7, 512, 3, 2)},
      {"l3 3x3 256 14x14", shape(16, 256, 14, 256, 3, 1)},
  };
  std::printf("%-22s %3s | %-28s | %-28s | %-28s\n", "shape", "thr", "forward: wall, cpu per thread",
              "bwd data", "bwd weights");
  for (const Named& nm : shapes) {
    const Conv2dShape& s = nm.s;
    std::vector<float> x = hashed(s.n * s.c * s.h * s.w, 1), w = hashed(s.k * s.c * s.kh * s.kw, 2);
    std::vector<float> b = hashed(s.k, 3), dy = hashed(s.n * s.k * s.oh() * s.ow(), 4);
    std::vector<float> y(dy.size()), dx(x.size()), dw(w.size()), db(b.size());
    for (int t : threads) {
      anomalens::setNumThreads(t);
      auto pass = [&](int which) {
        if (which == 0) anomalens::train::conv2dForward(s, x.data(), w.data(), nullptr, y.data());
        if (which == 1) anomalens::train::conv2dBackward(s, x.data(), w.data(), dy.data(), dx.data(), nullptr, nullptr);
        if (which == 2) anomalens::train::conv2dBackward(s, x.data(), w.data(), dy.data(), nullptr, dw.data(), nullptr);
      };
      std::string line;
      for (int which = 0; which < 3; ++which) {
        pass(which);  // descriptor creation and warm-up
        double best = 1e30;
        std::vector<double> cpu(t, 0.0);
        for (int r = 0; r < reps; ++r) {
          const std::vector<double> c0 = threadCpu(t);
          const double w0 = now(CLOCK_MONOTONIC);
          pass(which);
          const double wall = now(CLOCK_MONOTONIC) - w0;
          const std::vector<double> c1 = threadCpu(t);
          for (int i = 0; i < t; ++i) cpu[i] += (c1[i] - c0[i]) / reps;
          if (wall < best) best = wall;
        }
        char buf[96];
        std::snprintf(buf, sizeof buf, " | %7.2f ms, cpu", best * 1e3);
        line += buf;
        for (int i = 0; i < t && i < 2; ++i) {
          std::snprintf(buf, sizeof buf, " %6.2f", cpu[i] * 1e3);
          line += buf;
        }
        if (t == 1) line += "       ";
      }
      std::printf("%-22s %3d%s\n", nm.name, t, line.c_str());
    }
  }
  return 0;
}
