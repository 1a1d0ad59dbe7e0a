// train: the convolution's forward and backward (oneDNN) against naive float64 loops, on an
// odd shape with unequal strides and paddings, on 1, 2 and again 1 thread (memoised descriptors
// are per thread count); max pooling's backward with ties (the first
// maximum of a window gets the gradient, as torch's CPU kernel); two SGD steps with momentum,
// weight decay and a frozen parameter against torch.optim.SGD's update written out; the blocked
// activation layout (nChw16c) against its index formula, and convolution, batch norm and a whole
// trainable ResNet on it against the same on NCHW.
#include <cmath>
#include <vector>

#include "../src/train/dnnl_common.h"
#include "anomalens/core/threading.h"
#include "anomalens/train/ops.h"
#include "anomalens/train/optim.h"
#include "anomalens/train/params.h"
#include "anomalens/train/rd.h"
#include "anomalens/train/resnet.h"
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

namespace {

// nChw16c written out: element (n, c, y, x) of [N, C, H, W] sits at
// (((n * C / 16 + c / 16) * H + y) * W + x) * 16 + c % 16.
std::vector<float> blockedByFormula(const std::vector<float>& plain, int64_t N, int64_t C, int64_t H, int64_t W) {
  std::vector<float> out(plain.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x)
          out[static_cast<size_t>((((n * (C / 16) + c / 16) * H + y) * W + x) * 16 + c % 16)] =
              plain[static_cast<size_t>(((n * C + c) * H + y) * W + x)];
  return out;
}

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Seeded values, the same into two networks' stores: weights in [-scale, scale], BN weights in
// [0.5, 1.5], running means in [-0.1, 0.1], running variances in [0.5, 1.5].
void fillAlike(Rng& rng, float scale, train::ParamStore& params, train::ParamStore& buffers,
               train::ParamStore& params2, train::ParamStore& buffers2) {
  auto endsWith = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  for (const auto& name : params.names()) {
    train::Param& p = params.at(name);
    const bool bnWeight = p.shape().size() == 1 && endsWith(name, ".weight");
    const std::vector<float> v = rng.floats(static_cast<size_t>(p.numel()), bnWeight ? 0.5f : -scale, bnWeight ? 1.5f : scale);
    std::copy(v.begin(), v.end(), p.value());
    std::copy(v.begin(), v.end(), params2.at(name).value());
  }
  for (const auto& name : buffers.names()) {
    train::Param& b = buffers.at(name);
    const bool var = endsWith(name, "running_var");
    const std::vector<float> v = rng.floats(static_cast<size_t>(b.numel()), var ? 0.5f : -0.1f, var ? 1.5f : 0.1f);
    std::copy(v.begin(), v.end(), b.value());
    std::copy(v.begin(), v.end(), buffers2.at(name).value());
  }
}

}  // namespace

TEST(train_blocked_layout_round_trip_vs_index_formula) {
  Rng rng(73);
  const int64_t N = 2, C = 32, H = 3, W = 5;
  std::vector<float> x = rng.floats(static_cast<size_t>(N * C * H * W)), b(x.size()), back(x.size());
  train::reorderLayout(N, C, H, W, train::Layout::Nchw, train::Layout::Blocked16, x.data(), b.data());
  const std::vector<float> want = blockedByFormula(x, N, C, H, W);
  for (size_t i = 0; i < want.size(); ++i) CHECK_MSG(b[i] == want[i], "blocked[" << i << "]");
  train::reorderLayout(N, C, H, W, train::Layout::Blocked16, train::Layout::Nchw, b.data(), back.data());
  CHECK(back == x);
  // 24 channels do not fill blocks of 16: a clear error, not padding.
  std::vector<float> odd(2 * 24 * 3 * 5);
  CHECK_THROWS_CODE(train::reorderLayout(2, 24, 3, 5, train::Layout::Nchw, train::Layout::Blocked16, odd.data(),
                                         b.data()),
                    ErrorCode::InvalidArgument);
}

TEST(train_conv_and_batch_norm_on_the_blocked_layout_match_nchw) {
  Rng rng(74);
  using train::Layout;
  train::Conv2dShape s;
  s.n = 2, s.c = 32, s.h = 9, s.w = 7, s.k = 48, s.kh = 3, s.kw = 3, s.strideH = 2, s.strideW = 1, s.padH = 1,
  s.padW = 1;
  const int64_t oh = s.oh(), ow = s.ow();
  const std::vector<float> x = rng.floats(static_cast<size_t>(s.n * s.c * s.h * s.w)),
                           w = rng.floats(static_cast<size_t>(s.k * s.c * s.kh * s.kw)),
                           dy = rng.floats(static_cast<size_t>(s.n * s.k * oh * ow));
  std::vector<float> y(dy.size()), dx(x.size()), dw(w.size());
  train::conv2dForward(s, x.data(), w.data(), nullptr, y.data());
  train::conv2dBackward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), nullptr);
  train::Conv2dShape sb = s;
  sb.src = sb.dst = Layout::Blocked16;
  const std::vector<float> xb = blockedByFormula(x, s.n, s.c, s.h, s.w), dyb = blockedByFormula(dy, s.n, s.k, oh, ow);
  std::vector<float> yb(dy.size()), dxb(x.size()), dwb(w.size());
  train::conv2dForward(sb, xb.data(), w.data(), nullptr, yb.data());
  train::conv2dBackward(sb, xb.data(), w.data(), dyb.data(), dxb.data(), dwb.data(), nullptr);
  const auto wantY = widen(blockedByFormula(y, s.n, s.k, oh, ow)), wantDx = widen(blockedByFormula(dx, s.n, s.c, s.h, s.w));
  CHECK_MSG(relError(yb.data(), wantY.data(), yb.size()) < 1e-6, "y " << relError(yb.data(), wantY.data(), yb.size()));
  CHECK_MSG(relError(dxb.data(), wantDx.data(), dxb.size()) < 1e-6, "dx");
  const auto wantDw = widen(dw);
  CHECK_MSG(relError(dwb.data(), wantDw.data(), dwb.size()) < 1e-5, "dw " << relError(dwb.data(), wantDw.data(), dwb.size()));
  // A blocked input with a plain output (and the reverse) meets the same numbers.
  train::Conv2dShape mixed = s;
  mixed.src = Layout::Blocked16;
  std::vector<float> ym(dy.size());
  train::conv2dForward(mixed, xb.data(), w.data(), nullptr, ym.data());
  const auto plainY = widen(y);
  CHECK(relError(ym.data(), plainY.data(), ym.size()) < 1e-6);
  // Blocked needs channels divisible by 16.
  train::Conv2dShape bad = s;
  bad.k = 40, bad.dst = Layout::Blocked16;
  std::vector<float> yBad(static_cast<size_t>(s.n * 40 * oh * ow));
  CHECK_THROWS_CODE(train::conv2dForward(bad, x.data(), w.data(), nullptr, yBad.data()), ErrorCode::InvalidArgument);

  // Batch norm in both modes, forward and backward.
  const int64_t n = 3, c = 32, h = 4, wd = 5, count = n * c * h * wd;
  const std::vector<float> bx = rng.floats(static_cast<size_t>(count)), bdy = rng.floats(static_cast<size_t>(count)),
                           gamma = rng.floats(static_cast<size_t>(c), 0.5f, 1.5f), beta = rng.floats(static_cast<size_t>(c)),
                           rm = rng.floats(static_cast<size_t>(c)), rv = rng.floats(static_cast<size_t>(c), 0.5f, 2.f);
  const std::vector<float> bxb = blockedByFormula(bx, n, c, h, wd), bdyb = blockedByFormula(bdy, n, c, h, wd);
  for (bool frozen : {true, false}) {
    std::vector<float> out(count), outB(count), gx(count), gxB(count), gg(c), ggB(c), gb(c), gbB(c), m(c), v(c),
        mB(c), vB(c);
    if (frozen) {
      train::batchNormFrozenForward(n, c, h, wd, bx.data(), gamma.data(), beta.data(), rm.data(), rv.data(), 1e-5f,
                                    out.data());
      train::batchNormFrozenForward(n, c, h, wd, bxb.data(), gamma.data(), beta.data(), rm.data(), rv.data(), 1e-5f,
                                    outB.data(), Layout::Blocked16);
    } else {
      train::batchNormTrainForward(n, c, h, wd, bx.data(), gamma.data(), beta.data(), 1e-5f, 0.1, out.data(),
                                   m.data(), v.data(), nullptr, nullptr);
      train::batchNormTrainForward(n, c, h, wd, bxb.data(), gamma.data(), beta.data(), 1e-5f, 0.1, outB.data(),
                                   mB.data(), vB.data(), nullptr, nullptr, Layout::Blocked16);
      const auto wm = widen(m), wv = widen(v);
      CHECK(relError(mB.data(), wm.data(), c) < 1e-5 && relError(vB.data(), wv.data(), c) < 1e-5);
    }
    const float* mean = frozen ? rm.data() : m.data();
    const float* var = frozen ? rv.data() : v.data();
    train::batchNormBackward(n, c, h, wd, bx.data(), gamma.data(), mean, var, 1e-5f, frozen, bdy.data(), gx.data(),
                             gg.data(), gb.data());
    train::batchNormBackward(n, c, h, wd, bxb.data(), gamma.data(), mean, var, 1e-5f, frozen, bdyb.data(),
                             gxB.data(), ggB.data(), gbB.data(), Layout::Blocked16);
    const auto wo = widen(blockedByFormula(out, n, c, h, wd)), wgx = widen(blockedByFormula(gx, n, c, h, wd)),
               wgg = widen(gg), wgb = widen(gb);
    CHECK_MSG(relError(outB.data(), wo.data(), count) < 1e-5, (frozen ? "frozen" : "train") << " y");
    CHECK_MSG(relError(gxB.data(), wgx.data(), count) < 1e-5, (frozen ? "frozen" : "train") << " dx");
    CHECK_MSG(relError(ggB.data(), wgg.data(), c) < 1e-5 && relError(gbB.data(), wgb.data(), c) < 1e-5,
              (frozen ? "frozen" : "train") << " dgamma / dbeta");
  }
}

// A convolution given its weights as a parameter stores them in the layout its kernels read,
// computes what the plain-pointer form computes, and every plain accessor gives the plain
// values back; the optimiser steps on that storage equal steps on plain storage, bit for bit. A
// layout that would need padding (40 output channels) leaves the parameter plain.
TEST(train_conv_weights_stored_in_the_kernel_layout) {
  Rng rng(78);
  train::Conv2dShape s;
  s.n = 2, s.c = 32, s.h = 7, s.w = 7, s.k = 48, s.kh = 3, s.kw = 3, s.padH = 1, s.padW = 1;
  s.src = s.dst = train::Layout::Blocked16;
  const std::vector<float> w0 = rng.floats(static_cast<size_t>(s.k * s.c * 9)),
                           x = rng.floats(static_cast<size_t>(s.n * s.c * 49)),
                           dy = rng.floats(static_cast<size_t>(s.n * s.k * 49));
  train::ParamStore blocked, plain;
  train::Param& pb = blocked.add("conv.weight", {s.k, s.c, 3, 3}, w0.data());
  train::Param& pp = plain.add("conv.weight", {s.k, s.c, 3, 3}, w0.data());
  train::SgdOptions o;
  o.lr = 0.1, o.momentum = 0.9, o.weightDecay = 0.01;
  for (int step = 0; step < 2; ++step) {
    std::vector<float> y(dy.size()), yp(dy.size()), dx(x.size()), dxp(x.size());
    train::conv2dForward(s, x.data(), pb, y.data());
    CHECK(pb.storageLayout() != nullptr);
    train::conv2dForward(s, x.data(), pp.value(), nullptr, yp.data());
    CHECK(y == yp);
    train::conv2dBackward(s, x.data(), pb, dy.data(), dx.data(), true);
    train::conv2dBackward(s, x.data(), pp.value(), dy.data(), dxp.data(), pp.grad(), nullptr);
    CHECK(dx == dxp);
    CHECK(pb.storageLayout() != nullptr);  // the backward kept the storage
    train::sgdStep(blocked, o);
    train::sgdStep(plain, o);
  }
  // Plain accessors convert back: value, gradient and momentum equal the plain run's exactly.
  const std::vector<float> v(pb.value(), pb.value() + pb.numel()), vp(pp.value(), pp.value() + pp.numel());
  CHECK(pb.storageLayout() == nullptr);
  CHECK(v == vp);
  const std::vector<float> g(pb.gradData(), pb.gradData() + pb.numel()), gp(pp.gradData(), pp.gradData() + pp.numel());
  CHECK(g == gp);
  const Tensor* m = pb.state("momentum_buffer");
  const Tensor* mp = pp.state("momentum_buffer");
  CHECK(m && mp && std::equal(m->data(), m->data() + m->numel(), mp->data()));
  // 40 output channels: oneDNN's blocked layout would pad them to 48; the weights stay plain.
  train::Conv2dShape s3 = s;
  s3.c = 3, s3.k = 40, s3.src = s3.dst = train::Layout::Nchw;
  const std::vector<float> w3 = rng.floats(static_cast<size_t>(40 * 3 * 9)), x3 = rng.floats(static_cast<size_t>(s.n * 3 * 49));
  train::Param& p3 = blocked.add("stem.weight", {40, 3, 3, 3}, w3.data());
  std::vector<float> y3(static_cast<size_t>(s.n * 40 * 49));
  train::conv2dForward(s3, x3.data(), p3, y3.data());
  CHECK(p3.storageLayout() == nullptr);
  // A parameter of the wrong shape is refused, naming it.
  CHECK_THROWS_CODE(train::conv2dForward(s3, x3.data(), pb, y3.data()), ErrorCode::InvalidArgument);
}

// Batch norm and the residual add with their ReLU fused equal the op then reluForward, bit for bit.
TEST(train_fused_relu_equals_the_op_then_relu) {
  Rng rng(77);
  const int64_t n = 2, c = 32, h = 3, w = 5, count = n * c * h * w;
  const std::vector<float> x = rng.floats(static_cast<size_t>(count)), x2 = rng.floats(static_cast<size_t>(count)),
                           gamma = rng.floats(static_cast<size_t>(c), 0.5f, 1.5f), beta = rng.floats(static_cast<size_t>(c)),
                           rm = rng.floats(static_cast<size_t>(c)), rv = rng.floats(static_cast<size_t>(c), 0.5f, 2.f);
  for (train::Layout layout : {train::Layout::Nchw, train::Layout::Blocked16}) {
    std::vector<float> a(count), ar(count), f(count), m(c), v(c), m2(c), v2(c);
    train::batchNormFrozenForward(n, c, h, w, x.data(), gamma.data(), beta.data(), rm.data(), rv.data(), 1e-5f, a.data(),
                                  layout);
    train::reluForward(count, a.data(), ar.data());
    train::batchNormFrozenForward(n, c, h, w, x.data(), gamma.data(), beta.data(), rm.data(), rv.data(), 1e-5f, f.data(),
                                  layout, true);
    CHECK(f == ar);
    train::batchNormTrainForward(n, c, h, w, x.data(), gamma.data(), beta.data(), 1e-5f, 0.1, a.data(), m.data(),
                                 v.data(), nullptr, nullptr, layout);
    train::reluForward(count, a.data(), ar.data());
    train::batchNormTrainForward(n, c, h, w, x.data(), gamma.data(), beta.data(), 1e-5f, 0.1, f.data(), m2.data(),
                                 v2.data(), nullptr, nullptr, layout, true);
    CHECK(f == ar && m == m2 && v == v2);
  }
  std::vector<float> s(count), sr(count), fs(count);
  train::addForward(count, x.data(), x2.data(), s.data());
  train::reluForward(count, s.data(), sr.data());
  train::addForward(count, x.data(), x2.data(), fs.data(), true);
  CHECK(fs == sr);
}

// The whole trainable ResNet-18 (BN frozen and in training mode, everything trainable, so the
// stem's NCHW -> blocked reorder is differentiated too) gives the same output and gradients with
// its activations blocked as on NCHW.
TEST(train_resnet_blocked_activations_match_nchw) {
  for (bool bnTrain : {false, true}) {
    Rng rng(75);
    const int64_t n = 2, h = 40, w = 40;
    train::TrainableResnet plain("resnet18", "layer4"), blocked("resnet18", "layer4");
    plain.setBlockedActivations(false);
    fillAlike(rng, 0.2f, plain.params(), plain.buffers(), blocked.params(), blocked.buffers());
    const std::vector<float> x = rng.floats(static_cast<size_t>(n * 3 * h * w));
    Tensor a = plain.forward(x.data(), n, 3, h, w, bnTrain), b = blocked.forward(x.data(), n, 3, h, w, bnTrain);
    CHECK(a.shape() == b.shape());
    const std::vector<double> wa(a.data(), a.data() + a.numel());
    CHECK_MSG(relError(b.data(), wa.data(), wa.size()) < 1e-5, "output " << relError(b.data(), wa.data(), wa.size()));
    const std::vector<float> dy = rng.floats(static_cast<size_t>(a.numel()));
    plain.backward(dy.data());
    blocked.backward(dy.data());
    for (const auto& name : plain.params().names()) {
      const train::Param& pa = plain.params().at(name);
      const std::vector<double> want(pa.gradData(), pa.gradData() + pa.numel());
      const double e = relError(blocked.params().at(name).grad(), want.data(), want.size());
      // BN in training mode with few values per channel (layer4: n * 2 * 2 = 8) cancels heavily.
      CHECK_MSG(e < (bnTrain ? 1e-3 : 1e-5), (bnTrain ? "train " : "frozen ") << name << " " << e);
    }
    for (const auto& name : plain.buffers().names()) {
      const train::Param& ba = plain.buffers().at(name);
      const std::vector<double> want(ba.value(), ba.value() + ba.numel());
      CHECK_MSG(relError(blocked.buffers().at(name).value(), want.data(), want.size()) < 1e-5, name);
    }
  }
}

// Reverse Distillation's student (convolutions, transposed convolutions, BN, the concatenation)
// gives the same outputs, parameter gradients and running statistics with its activations
// blocked as on NCHW: the basic-block student with BN in training mode and the bottleneck one
// with BN frozen (the bottleneck students in training mode are ill-conditioned in float32: their
// BN gradients are sums of nearly cancelling terms, so accumulation order alone moves them by
// 1e-2, as torch's own float32 against float64; see test/fixtures/train/make_fixtures.py).
TEST(train_rd_student_blocked_activations_match_nchw) {
  for (const auto& [arch, bnTrain] : {std::pair<const char*, bool>{"resnet18", true}, {"resnet50", false}}) {
    Rng rng(76);
    train::RdStudent plain(train::RdConfig::forTeacher(arch)), blocked(train::RdConfig::forTeacher(arch));
    plain.setBlockedActivations(false);
    fillAlike(rng, 0.05f, plain.params(), plain.buffers(), blocked.params(), blocked.buffers());
    const int64_t n = 2;
    const std::vector<int64_t> h = {16, 8, 4};
    std::vector<std::vector<float>> f;
    std::vector<const float*> fp;
    for (int i = 0; i < 3; ++i) {
      f.push_back(rng.floats(static_cast<size_t>(n * plain.tapChannels(i) * h[i] * h[i]), 0.f, 1.f));
      fp.push_back(f.back().data());
    }
    std::vector<Tensor> a = plain.forward(fp, n, h, h, bnTrain, true), b = blocked.forward(fp, n, h, h, bnTrain, true);
    std::vector<std::vector<float>> g;
    std::vector<const float*> gp;
    for (int i = 0; i < 3; ++i) {
      CHECK(a[i].shape() == b[i].shape());
      const std::vector<double> want(a[i].data(), a[i].data() + a[i].numel());
      CHECK_MSG(relError(b[i].data(), want.data(), want.size()) < 1e-5, arch << " output " << i);
      g.push_back(rng.floats(static_cast<size_t>(a[i].numel())));
      gp.push_back(g.back().data());
    }
    plain.backward(gp);
    blocked.backward(gp);
    for (const auto& name : plain.params().names()) {
      const train::Param& pa = plain.params().at(name);
      if (!pa.hasGrad()) continue;
      const std::vector<double> want(pa.gradData(), pa.gradData() + pa.numel());
      const double e = relError(blocked.params().at(name).grad(), want.data(), want.size());
      CHECK_MSG(e < 1e-4, arch << " " << name << " " << e);
    }
    for (const auto& name : plain.buffers().names()) {
      const train::Param& ba = plain.buffers().at(name);
      const std::vector<double> want(ba.value(), ba.value() + ba.numel());
      CHECK_MSG(relError(blocked.buffers().at(name).value(), want.data(), want.size()) < 1e-5, arch << " " << name);
    }
  }
}

}  // namespace anomalens::tests
