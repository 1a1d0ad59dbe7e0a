// Reverse Distillation's bottleneck and decoder on the training tape (tape.h). Parameter
// creation follows torch's registration order of the original modules, so names() lists
// named_parameters() of BN_layer then de_resnet.
#include <chrono>
#include <cstring>

#include "anomalens/core/error.h"
#include "anomalens/train/loss_pixel_cosine.h"
#include "anomalens/train/losses.h"
#include "anomalens/train/optim.h"
#include "anomalens/train/rd.h"
#include "tape.h"

namespace anomalens::train {

RdConfig RdConfig::forTeacher(const std::string& arch) {
  RdConfig c;
  if (arch == "resnet18") {
    c.bottleneck = false, c.bnBlocks = 2, c.decoderBlocks = {2, 2, 2};
  } else if (arch == "resnet34") {
    c.bottleneck = false, c.bnBlocks = 3, c.decoderBlocks = {3, 4, 6};
  } else if (arch == "resnet50" || arch == "resnet50_v2") {
    c.bottleneck = true, c.bnBlocks = 3, c.decoderBlocks = {3, 4, 6};
  } else if (arch == "wide_resnet50_2") {
    c.bottleneck = true, c.widthPerGroup = 128, c.bnBlocks = 3, c.decoderBlocks = {3, 4, 6};
  } else {
    throw Error(ErrorCode::InvalidArgument, "Reverse Distillation: unsupported teacher arch '" + arch +
                                                "'; expected resnet18, resnet34, resnet50, resnet50_v2 or wide_resnet50_2");
  }
  return c;
}

namespace {

// One residual block of either module: how it is built and how it runs.
struct Block {
  std::string prefix;      // "bn.bn_layer.0"
  int64_t stride = 1;      // 2: downsample (encoder) / upsample (decoder) in this block
  bool decoder = false;
  bool hasShortcut = false;
  std::string shortcut;    // "downsample" / "upsample"
};

}  // namespace

struct RdStudent::Impl {
  Tape tape;
  std::vector<Block> bnBlocks, decBlocks[3];
  bool bottleneck = true;
  std::vector<int> outs;
  std::vector<Shape> outShapes;
  Impl(ParamStore& p, ParamStore& b) : tape(p, b) {}

  int block(int x, const Block& b, bool train) {
    Tape& t = tape;
    const std::string& p = b.prefix;
    int o;
    if (bottleneck) {
      o = t.bn(t.conv(x, p + ".conv1", 1, 0), p + ".bn1", train, true);
      int c2 = b.decoder && b.stride == 2 ? t.convTranspose(o, p + ".conv2", 2) : t.conv(o, p + ".conv2", b.stride, 1);
      o = t.bn(c2, p + ".bn2", train, true);
      o = t.bn(t.conv(o, p + ".conv3", 1, 0), p + ".bn3", train);
    } else {
      int c1 = b.decoder && b.stride == 2 ? t.convTranspose(x, p + ".conv1", 2) : t.conv(x, p + ".conv1", b.stride, 1);
      o = t.bn(c1, p + ".bn1", train, true);
      o = t.bn(t.conv(o, p + ".conv2", 1, 1), p + ".bn2", train);
    }
    int sc = x;
    if (b.hasShortcut) {
      const std::string s = p + "." + b.shortcut;
      int c = b.decoder ? t.convTranspose(x, s + ".0", b.stride) : t.conv(x, s + ".0", b.stride, 0);
      sc = t.bn(c, s + ".1", train);
    }
    return t.add(o, sc, true);
  }
};

RdStudent::RdStudent(const RdConfig& config)
    : config_(config), params_(std::make_shared<ParamStore>()), buffers_(std::make_shared<ParamStore>()) {
  require(config.bnBlocks >= 1 && config.decoderBlocks.size() == 3, "RdStudent: bnBlocks >= 1 and 3 decoder stages");
  require(config.bottleneck || config.widthPerGroup == 64, "RdStudent: basic blocks support only width_per_group 64");
  impl_ = std::make_unique<Impl>(*params_, *buffers_);
  impl_->bottleneck = config.bottleneck;
  const int64_t e = config.expansion();
  auto conv = [&](const std::string& m, int64_t cout, int64_t cin, int64_t k) {
    std::vector<float> z(static_cast<size_t>(cout * cin * k * k), 0.f);
    params_->add(m + ".weight", {cout, cin, k, k}, z.data());
  };
  auto deconv = [&](const std::string& m, int64_t cin, int64_t cout) {
    std::vector<float> z(static_cast<size_t>(cin * cout * 4), 0.f);
    params_->add(m + ".weight", {cin, cout, 2, 2}, z.data());
  };
  auto bn = [&](const std::string& m, int64_t c) {
    std::vector<float> ones(static_cast<size_t>(c), 1.f), zeros(static_cast<size_t>(c), 0.f);
    params_->add(m + ".weight", {c}, ones.data());
    params_->add(m + ".bias", {c}, zeros.data());
    buffers_->add(m + ".running_mean", {c}, zeros.data());
    buffers_->add(m + ".running_var", {c}, ones.data());
    buffers_->at(m + ".running_mean").setFrozen(true);
    buffers_->at(m + ".running_var").setFrozen(true);
  };
  // One block's tensors, in the module's registration order (conv1, bn1, conv2, bn2, [conv3,
  // bn3,] then the shortcut's 0 / 1).
  auto makeBlock = [&](Block b, int64_t inplanes, int64_t planes) {
    const std::string& p = b.prefix;
    const bool up = b.decoder && b.stride == 2;
    if (config.bottleneck) {
      const int64_t width = planes * config.widthPerGroup / 64;
      conv(p + ".conv1", width, inplanes, 1), bn(p + ".bn1", width);
      if (up) deconv(p + ".conv2", width, width); else conv(p + ".conv2", width, width, 3);
      bn(p + ".bn2", width);
      conv(p + ".conv3", planes * 4, width, 1), bn(p + ".bn3", planes * 4);
    } else {
      if (up) deconv(p + ".conv1", inplanes, planes); else conv(p + ".conv1", planes, inplanes, 3);
      bn(p + ".bn1", planes);
      conv(p + ".conv2", planes, planes, 3), bn(p + ".bn2", planes);
    }
    if (b.hasShortcut) {
      const std::string s = p + "." + b.shortcut;
      if (b.decoder) deconv(s + ".0", inplanes, planes * e); else conv(s + ".0", planes * e, inplanes, 1);
      bn(s + ".1", planes * e);
    }
    return b;
  };
  // BN_layer registers bn_layer first, then conv1, bn1, conv2, bn2, conv3, bn3, conv4, bn4.
  int64_t inplanes = 256 * e;
  for (int64_t i = 0; i < config.bnBlocks; ++i) {
    Block b{"bn.bn_layer." + std::to_string(i), i == 0 ? 2 : 1, false, i == 0, "downsample"};
    impl_->bnBlocks.push_back(makeBlock(b, i == 0 ? 3 * inplanes : 512 * e, 512));
  }
  conv("bn.conv1", 128 * e, 64 * e, 3), bn("bn.bn1", 128 * e);
  conv("bn.conv2", 256 * e, 128 * e, 3), bn("bn.bn2", 256 * e);
  conv("bn.conv3", 256 * e, 128 * e, 3), bn("bn.bn3", 256 * e);
  conv("bn.conv4", 512 * e, 1024 * e, 1), bn("bn.bn4", 512 * e);
  // de_resnet: inplanes 512e; layer1 256 planes, layer2 128, layer3 64, each first block stride 2.
  inplanes = 512 * e;
  const int64_t planes[3] = {256, 128, 64};
  for (int s = 0; s < 3; ++s)
    for (int64_t i = 0; i < config.decoderBlocks[s]; ++i) {
      Block b{"decoder.layer" + std::to_string(s + 1) + "." + std::to_string(i), i == 0 ? 2 : 1, true, i == 0,
              "upsample"};
      impl_->decBlocks[s].push_back(makeBlock(b, i == 0 ? inplanes : planes[s] * e, planes[s]));
      if (i == 0) inplanes = planes[s] * e;
    }
}

RdStudent::~RdStudent() = default;

int64_t RdStudent::tapChannels(int i) const {
  require(i >= 0 && i < 3, "RdStudent.tapChannels: i must be 0, 1 or 2");
  return (64 << i) * config_.expansion();
}

std::vector<Tensor> RdStudent::forward(const std::vector<const float*>& f, int64_t n, const std::vector<int64_t>& h,
                                       const std::vector<int64_t>& w, bool bnTrain, bool record) {
  require(f.size() == 3 && h.size() == 3 && w.size() == 3, "RdStudent.forward: three teacher features");
  require(n >= 1, "RdStudent.forward: n must be >= 1");
  for (int i = 0; i < 2; ++i)
    require(h[i] == 2 * h[i + 1] && w[i] == 2 * w[i + 1],
            "RdStudent.forward: teacher feature " + std::to_string(i) + " must be twice the size of feature " +
                std::to_string(i + 1) + ", received " + std::to_string(h[i]) + "x" + std::to_string(w[i]) + " and " +
                std::to_string(h[i + 1]) + "x" + std::to_string(w[i + 1]));
  require(h[2] % 2 == 0 && w[2] % 2 == 0 && h[2] > 0 && w[2] > 0,
          "RdStudent.forward: the deepest teacher feature must have even height and width (an input size that is a "
          "multiple of 32), received " + std::to_string(h[2]) + "x" + std::to_string(w[2]));
  Impl& m = *impl_;
  Tape& t = m.tape;
  t.begin(record);
  int in[3];
  for (int i = 0; i < 3; ++i) in[i] = t.input(f[i], {n, tapChannels(i), h[i], w[i]});
  int l1 = t.bn(t.conv(in[0], "bn.conv1", 2, 1), "bn.bn1", bnTrain, true);
  l1 = t.bn(t.conv(l1, "bn.conv2", 2, 1), "bn.bn2", bnTrain, true);
  int l2 = t.bn(t.conv(in[1], "bn.conv3", 2, 1), "bn.bn3", bnTrain, true);
  int x = t.concat({l1, l2, in[2]});
  for (const auto& b : m.bnBlocks) x = m.block(x, b, bnTrain);
  int feat[3];
  for (int s = 0; s < 3; ++s) {
    for (const auto& b : m.decBlocks[s]) x = m.block(x, b, bnTrain);
    feat[s] = x;
  }
  // The outputs in NCHW (the losses read them so); the decoder itself runs blocked.
  m.outs = {t.plain(feat[2]), t.plain(feat[1]), t.plain(feat[0])};
  std::vector<Tensor> out;
  for (int id : m.outs) out.push_back(t.value(id));
  t.finish(m.outs);
  m.outShapes.clear();
  if (record)
    for (const auto& o : out) m.outShapes.push_back(o.shape());
  else
    t.release();
  return out;
}

void RdStudent::backward(const std::vector<const float*>& grads) {
  require(grads.size() == 3, "RdStudent.backward: three output gradients");
  require(!impl_->outShapes.empty(), "RdStudent.backward: no recorded forward to differentiate");
  impl_->outShapes.clear();
  impl_->tape.backward(impl_->outs, grads);
}

void RdStudent::release() {
  impl_->outShapes.clear();
  impl_->tape.release();
}

std::vector<Shape> RdStudent::outputShapes() const { return impl_->outShapes; }

void RdStudent::setBlockedActivations(bool on) {
  release();
  impl_->tape.setBlockedActivations(on);
}

int64_t RdStudent::keptFloats() const { return impl_->tape.keptFloats(); }

double rdTrainStep(RdStudent& rd, const std::vector<const float*>& f, int64_t n, const std::vector<int64_t>& h,
                   const std::vector<int64_t>& w, const AdamOptions& adam, double* scaleLosses, double* seconds, bool pixelLoss) {
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  std::vector<Tensor> out = rd.forward(f, n, h, w, true, true);
  auto t1 = clock::now();
  std::vector<Tensor> g;
  std::vector<const float*> gp;
  double total = 0;
  for (int i = 0; i < 3; ++i) {
    const int64_t m = out[i].numel() / n;
    g.emplace_back(out[i].shape());
    const int64_t hw = h[i] * w[i];
    const double l = pixelLoss ? cosinePixelLoss(n, m / hw, hw, f[i], out[i].data(), 1e-8f, nullptr, g.back().data())
                               : cosineMapLoss(n, m, f[i], out[i].data(), 1e-8f, nullptr, g.back().data());
    if (scaleLosses) scaleLosses[i] = l;
    total += l;
    gp.push_back(g.back().data());
  }
  out.clear();
  auto t2 = clock::now();
  rd.backward(gp);
  auto t3 = clock::now();
  adamStep(rd.params(), adam);
  auto t4 = clock::now();
  if (seconds) {
    const auto sec = [](clock::duration d) { return std::chrono::duration<double>(d).count(); };
    seconds[0] = sec(t1 - t0), seconds[1] = sec(t2 - t1), seconds[2] = sec(t3 - t2), seconds[3] = sec(t4 - t3);
  }
  return total;
}

}  // namespace anomalens::train
