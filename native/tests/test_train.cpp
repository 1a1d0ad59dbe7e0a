// train: the convolution's forward and backward (oneDNN) against naive float64 loops, on an
// odd shape with unequal strides and paddings, on 1, 2 and again 1 thread (memoised descriptors
// are per thread count); max pooling's backward with ties (the first
// maximum of a window gets the gradient, as torch's CPU kernel); two SGD steps with momentum,
// weight decay and a frozen parameter against torch.optim.SGD's update written out.
#include <cmath>
#include <vector>

#include "../src/train/dnnl_common.h"
#include "anomalens/core/threading.h"
#include "anomalens/train/ops.h"
#include "anomalens/train/optim.h"
#include "anomalens/train/params.h"
#include "harness.h"

namespace anomalens::tests {

TEST(train_conv2d_forward_backward_vs_naive) {
  Rng rng(71);
  train::Conv2dShape s;
  s.n = 2, s.c = 3, s.h = 13, s.w = 7, s.k = 5, s.kh = 3, s.kw = 2;
  s.strideH = 2, s.strideW = 1, s.padH = 1, s.padW = 0;
  s.check();
  const int64_t oh = s.oh(), ow = s.ow();
  std::vector<float> x = rng.floats(static_cast<size_t>(s.n * s.c * s.h * s.w));
  std::vector<float> w = rng.floats(static_cast<size_t>(s.k * s.c * s.kh * s.kw));
  std::vector<float> b = rng.floats(static_cast<size_t>(s.k));
  std::vector<float> dy = rng.floats(static_cast<size_t>(s.n * s.k * oh * ow));
  std::vector<double> ry(dy.size()), rdx(x.size(), 0.0), rdw(w.size(), 0.0), rdb(b.size(), 0.0);
  auto X = [&](int64_t n, int64_t c, int64_t i, int64_t j) { return ((n * s.c + c) * s.h + i) * s.w + j; };
  auto W = [&](int64_t k, int64_t c, int64_t i, int64_t j) { return ((k * s.c + c) * s.kh + i) * s.kw + j; };
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t k = 0; k < s.k; ++k)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          const int64_t o = ((n * s.k + k) * oh + oy) * ow + ox;
          double acc = b[k];
          rdb[k] += dy[o];
          for (int64_t c = 0; c < s.c; ++c)
            for (int64_t i = 0; i < s.kh; ++i)
              for (int64_t j = 0; j < s.kw; ++j) {
                const int64_t iy = oy * s.strideH - s.padH + i, ix = ox * s.strideW - s.padW + j;
                if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                acc += static_cast<double>(x[X(n, c, iy, ix)]) * w[W(k, c, i, j)];
                rdx[X(n, c, iy, ix)] += static_cast<double>(dy[o]) * w[W(k, c, i, j)];
                rdw[W(k, c, i, j)] += static_cast<double>(dy[o]) * x[X(n, c, iy, ix)];
              }
          ry[o] = acc;
        }
  const int threads = numThreads();
  for (int t : {1, 2, 1}) {
    setNumThreads(t);
    std::vector<float> y(dy.size()), dx(x.size()), dw(w.size()), db(b.size());
    train::conv2dForward(s, x.data(), w.data(), b.data(), y.data());
    train::conv2dBackward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
    CHECK_MSG(relError(y.data(), ry.data(), ry.size()) < 1e-5, t << " y " << relError(y.data(), ry.data(), ry.size()));
    CHECK_MSG(relError(dx.data(), rdx.data(), rdx.size()) < 1e-5,
              t << " dx " << relError(dx.data(), rdx.data(), rdx.size()));
    CHECK_MSG(relError(dw.data(), rdw.data(), rdw.size()) < 1e-5,
              t << " dw " << relError(dw.data(), rdw.data(), rdw.size()));
    CHECK_MSG(relError(db.data(), rdb.data(), rdb.size()) < 1e-5,
              t << " db " << relError(db.data(), rdb.data(), rdb.size()));

    // A null output is not computed: dx alone.
    std::vector<float> dxOnly(x.size());
    train::conv2dBackward(s, x.data(), w.data(), dy.data(), dxOnly.data(), nullptr, nullptr);
    CHECK(relError(dxOnly.data(), rdx.data(), rdx.size()) < 1e-5);
  }
  setNumThreads(threads);
}

// oneDNN fixes a primitive's thread count when its descriptor is made, so a descriptor is
// memoised per problem AND per thread count: one made on 1 thread must not serve 2 threads
// (it would run on one), nor the reverse.
TEST(train_memoised_descriptors_are_per_thread_count) {
  const int threads = numThreads();
  int made = 0;
  auto make = [&] { return ++made; };
  setNumThreads(1);
  const int a1 = train::detail::cachedPd<int>("test problem", make);
  const int a2 = train::detail::cachedPd<int>("test problem", make);
  setNumThreads(2);
  const int b1 = train::detail::cachedPd<int>("test problem", make);
  const int b2 = train::detail::cachedPd<int>("test problem", make);
  setNumThreads(1);
  const int a3 = train::detail::cachedPd<int>("test problem", make);
  const int c1 = train::detail::cachedPd<int>("another problem", make);
  setNumThreads(threads);
  CHECK_MSG(a1 == 1 && a2 == 1 && a3 == 1, "1 thread: " << a1 << " " << a2 << " " << a3);
  CHECK_MSG(b1 == 2 && b2 == 2, "2 threads: " << b1 << " " << b2);
  CHECK_MSG(c1 == 3 && made == 3, "another problem: " << c1 << ", made " << made);
}

TEST(train_max_pool_backward_ties_go_to_the_first_maximum) {
  // One 1 x 1 x 4 x 4 map of equal values: each 2 x 2 window's gradient lands on its top-left.
  std::vector<float> x(16, 1.f), dy = {1.f, 2.f, 3.f, 4.f}, y(4), dx(16, -1.f);
  train::maxPool2dForward(1, 1, 4, 4, 2, 2, 0, x.data(), y.data());
  train::maxPool2dBackward(1, 1, 4, 4, 2, 2, 0, x.data(), dy.data(), dx.data());
  for (float v : y) CHECK(v == 1.f);
  const std::vector<float> want = {1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4, 0, 0, 0, 0, 0};
  for (size_t i = 0; i < want.size(); ++i) CHECK_MSG(dx[i] == want[i], "dx[" << i << "] = " << dx[i]);
}

TEST(train_sgd_momentum_weight_decay_vs_formula) {
  Rng rng(72);
  const int64_t count = 13;
  std::vector<float> v0 = rng.floats(count), g1 = rng.floats(count), g2 = rng.floats(count), frozen0 = rng.floats(3);
  train::ParamStore store;
  store.add("a.weight", {count}, v0.data());
  store.add("b.weight", {3}, frozen0.data());
  store.freeze("b.");
  train::SgdOptions o;
  o.lr = 0.1, o.momentum = 0.9, o.weightDecay = 0.01;
  // torch.optim.SGD, float32: d = g + wd p; buf = d (first step) | momentum buf + d; p -= lr buf.
  std::vector<float> p = v0, buf(count);
  for (int step = 0; step < 2; ++step) {
    const std::vector<float>& g = step == 0 ? g1 : g2;
    std::copy(g.begin(), g.end(), store.at("a.weight").grad());
    std::copy(g.begin(), g.begin() + 3, store.at("b.weight").grad());
    train::sgdStep(store, o);
    for (int64_t i = 0; i < count; ++i) {
      const float d = g[i] + static_cast<float>(o.weightDecay) * p[i];
      buf[i] = step == 0 ? d : static_cast<float>(o.momentum) * buf[i] + d;
      p[i] -= static_cast<float>(o.lr) * buf[i];
    }
  }
  const float* got = store.at("a.weight").value();
  for (int64_t i = 0; i < count; ++i)
    CHECK_MSG(std::abs(got[i] - p[i]) <= 1e-6f * std::max(1.f, std::abs(p[i])), "a.weight[" << i << "] " << got[i] << " vs " << p[i]);
  const float* still = store.at("b.weight").value();
  for (int64_t i = 0; i < 3; ++i) CHECK(still[i] == frozen0[i]);
  CHECK(!store.at("b.weight").hasState("momentum_buffer"));
}

}  // namespace anomalens::tests
