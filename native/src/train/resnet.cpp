// The trainable ResNet: the architecture from resnet_spec (the same description the inference
// backbone uses), executed op by op on a tape. Each recorded node keeps the tensors its
// backward reads (conv/BN input, BN batch statistics, ReLU output, max-pool input); the
// backward walks the tape in reverse, accumulating the gradients of tensors used twice (a
// block's input feeds both its branch and its shortcut).
#include "anomalens/train/resnet.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <cstring>

#include "anomalens/core/error.h"
#include "anomalens/nn/resnet_spec.h"

namespace anomalens::train {

using resnet::BnDef;
using resnet::ConvDef;

namespace {

enum class Kind { Conv, Bn, Relu, Add, MaxPool, Reorder };

const char* kindName(Kind k) {
  switch (k) {
    case Kind::Conv: return "conv";
    case Kind::Bn: return "batch norm";
    case Kind::Relu: return "relu";
    case Kind::Add: return "add";
    case Kind::MaxPool: return "max pool";
    case Kind::Reorder: return "reorder";
  }
  return "?";
}

struct Node {
  Kind kind;
  std::string where;  // stage ("stem", "layer3", ...) for the profile
  int in = -1, in2 = -1, out = -1;
  const ConvDef* conv = nullptr;
  Conv2dShape cs;
  const BnDef* bn = nullptr;
  bool bnTrain = false;
  bool relu = false;  // BN or add with ReLU fused on its output
  Tensor saveMean, saveVar;
  Layout layout = Layout::Nchw;              // BN's data; a reorder's output
  Layout from = Layout::Nchw;                // a reorder's input
};

struct V {
  Tensor t;
  int id = -1;  // index on the tape, -1 when not recorded
  Layout layout = Layout::Nchw;
  int64_t c() const { return t.dim(1); }
  int64_t h() const { return t.dim(2); }
  int64_t w() const { return t.dim(3); }
  int64_t n() const { return t.dim(0); }
};

}  // namespace

struct TrainableResnet::Impl {
  resnet::ResnetDef def;
  size_t stages = 0;  // stages up to lastTap
  ParamStore* params = nullptr;
  ParamStore* buffers = nullptr;
  float eps = 1e-5f;
  // Activations with channels divisible by 16 stay in oneDNN's blocked layout (nChw16c) from the
  // first stage on: no reorders in and out of each convolution, and oneDNN's fast batch norm.
  // The stem (3-channel input, max pooling) stays NCHW; forward() returns NCHW.
  bool blocked = true;
  Layout outLayout = Layout::Nchw;

  std::vector<Tensor> vals;
  std::vector<bool> needsGrad;
  std::vector<Node> nodes;
  int outId = -1;
  Shape outShape;
  bool recording = false;
  std::string where = "stem";
  std::map<std::string, double> profile;  // "<stage> <op> forward|backward" -> seconds

  using Clock = std::chrono::steady_clock;
  void charge(const std::string& stage, Kind k, const char* pass, Clock::time_point t0) {
    profile[stage + " " + kindName(k) + " " + pass] += std::chrono::duration<double>(Clock::now() - t0).count();
  }

  // Drops every taped tensor no backward reads: conv / BN / max-pool inputs and ReLU outputs
  // stay; BN outputs (ReLU inputs) and sums go.
  void dropUnneeded() {
    std::vector<bool> keep(vals.size(), false);
    for (const auto& nd : nodes) {
      if (nd.kind == Kind::Relu || nd.relu) keep[nd.out] = true;
      if (nd.kind != Kind::Relu && nd.kind != Kind::Add && nd.kind != Kind::Reorder) keep[nd.in] = true;
    }
    for (size_t i = 0; i < vals.size(); ++i)
      if (!keep[i]) vals[i] = Tensor();
  }

  void clear() {
    outShape.clear();
    vals.clear();
    needsGrad.clear();
    nodes.clear();
    outId = -1;
  }

  int onTape(V& v) {
    if (v.id < 0) {
      v.id = static_cast<int>(vals.size());
      vals.push_back(v.t);
      needsGrad.push_back(false);
    }
    return v.id;
  }
  V result(Tensor t, Node node, bool grad, Layout layout) {
    V out{std::move(t)};
    out.layout = layout;
    if (!recording) return out;
    out.id = static_cast<int>(vals.size());
    vals.push_back(out.t);
    needsGrad.push_back(grad);
    node.out = out.id;
    node.where = where;
    nodes.push_back(std::move(node));
    return out;
  }
  bool grad(const V& v) const { return v.id >= 0 && needsGrad[v.id]; }

  V conv(V& x, const ConvDef& d) {
    Conv2dShape s{x.n(), x.c(), x.h(), x.w(), d.cout, d.k, d.k, d.stride, d.stride, d.pad, d.pad};
    s.src = x.layout;
    s.dst = blocked && where != "stem" && d.cout % 16 == 0 ? Layout::Blocked16 : Layout::Nchw;
    require(x.c() == d.cin, d.name + ": expected " + std::to_string(d.cin) + " input channels, received " +
                                std::to_string(x.c()));
    Tensor y({s.n, s.k, s.oh(), s.ow()});
    const auto t0 = Clock::now();
    conv2dForward(s, x.t.data(), params->at(d.weight), y.data());
    charge(where, Kind::Conv, "forward", t0);
    Node node{Kind::Conv};
    node.conv = &d;
    node.cs = s;
    if (recording) node.in = onTape(x);
    return result(std::move(y), std::move(node), grad(x) || !params->at(d.weight).frozen(), s.dst);
  }

  // relu: max(bn(x), 0) in the same pass (the ReLU's backward reads the output, kept).
  V bn(V& x, const BnDef& d, bool train, bool relu = false) {
    Tensor y(x.t.shape());
    const float* gamma = params->at(d.gamma).value();
    const float* beta = params->at(d.beta).value();
    float* rm = buffers->at(d.mean).value();
    float* rv = buffers->at(d.var).value();
    Node node{Kind::Bn};
    node.bn = &d;
    node.bnTrain = train;
    node.relu = relu;
    node.layout = x.layout;
    const auto t0 = Clock::now();
    if (train) {
      node.saveMean = Tensor({x.c()});
      node.saveVar = Tensor({x.c()});
      batchNormTrainForward(x.n(), x.c(), x.h(), x.w(), x.t.data(), gamma, beta, eps, 0.1, y.data(),
                            node.saveMean.data(), node.saveVar.data(), rm, rv, x.layout, relu);
    } else {
      batchNormFrozenForward(x.n(), x.c(), x.h(), x.w(), x.t.data(), gamma, beta, rm, rv, eps, y.data(), x.layout,
                             relu);
    }
    charge(where, Kind::Bn, "forward", t0);
    if (recording) node.in = onTape(x);
    const bool g = grad(x) || !params->at(d.gamma).frozen() || !params->at(d.beta).frozen();
    return result(std::move(y), std::move(node), g, x.layout);
  }

  V relu(V& x) {
    Tensor y(x.t.shape());
    const auto t0 = Clock::now();
    reluForward(x.t.numel(), x.t.data(), y.data());
    charge(where, Kind::Relu, "forward", t0);
    Node node{Kind::Relu};
    if (recording) node.in = onTape(x);
    return result(std::move(y), std::move(node), grad(x), x.layout);
  }

  // x in `to` (x itself when it is already): a recorded reorder, its backward the inverse.
  V toLayout(V& x, Layout to) {
    if (x.layout == to) return x;
    Tensor y(x.t.shape());
    const auto t0 = Clock::now();
    reorderLayout(x.n(), x.c(), x.h(), x.w(), x.layout, to, x.t.data(), y.data());
    charge(where, Kind::Reorder, "forward", t0);
    Node node{Kind::Reorder};
    node.from = x.layout;
    node.layout = to;
    if (recording) node.in = onTape(x);
    return result(std::move(y), std::move(node), grad(x), to);
  }

  // relu: max(a + b, 0) in the same pass (the ReLU's backward reads the output, kept).
  V add(V& a, V& bIn, bool relu = false) {
    V b = toLayout(bIn, a.layout);
    Tensor y(a.t.shape());
    const auto t0 = Clock::now();
    addForward(a.t.numel(), a.t.data(), b.t.data(), y.data(), relu);
    charge(where, Kind::Add, "forward", t0);
    Node node{Kind::Add};
    node.relu = relu;
    if (recording) node.in = onTape(a), node.in2 = onTape(b);
    return result(std::move(y), std::move(node), grad(a) || grad(b), a.layout);
  }

  V maxPool(V& xIn) {
    V x = toLayout(xIn, Layout::Nchw);
    const int64_t oh = (x.h() + 2 - 3) / 2 + 1, ow = (x.w() + 2 - 3) / 2 + 1;
    Tensor y({x.n(), x.c(), oh, ow});
    const auto t0 = Clock::now();
    maxPool2dForward(x.n(), x.c(), x.h(), x.w(), 3, 2, 1, x.t.data(), y.data());
    charge(where, Kind::MaxPool, "forward", t0);
    Node node{Kind::MaxPool};
    if (recording) node.in = onTape(x);
    return result(std::move(y), std::move(node), grad(x), Layout::Nchw);
  }

  bool anyTrainable(const std::vector<std::string>& names) const {
    for (const auto& n : names)
      if (params->has(n) && !params->at(n).frozen()) return true;
    return false;
  }

  static std::vector<std::string> blockParams(const resnet::BlockDef& b) {
    std::vector<std::string> out;
    for (const auto& c : b.convs) out.push_back(c.weight);
    for (const auto& n : b.bns) out.insert(out.end(), {n.gamma, n.beta});
    if (b.hasProj) out.push_back(b.proj.weight);
    if (b.hasProj && !b.projBn.gamma.empty()) out.insert(out.end(), {b.projBn.gamma, b.projBn.beta});
    return out;
  }

  // v2 (pre-activation): p = relu(bns[0](x)); y = conv_0(p), then relu(bns[i](y)) before each
  // further conv_i; out = y + (proj(p) or x), no ReLU after (the raw residual stream).
  V blockV2(V& x, const resnet::BlockDef& b, bool train) {
    V p = bn(x, b.bns[0], train, true);
    V y = conv(p, b.convs[0]);
    for (size_t i = 1; i < b.convs.size(); ++i) {
      V t = bn(y, b.bns[i], train, true);
      y = conv(t, b.convs[i]);
    }
    V sc = x;
    if (b.hasProj) sc = conv(p, b.proj);
    return add(y, sc);
  }

  V block(V& x, const resnet::BlockDef& b, bool train) {
    if (def.v2) return blockV2(x, b, train);
    V o = x;
    const size_t last = b.convs.size() - 1;
    for (size_t i = 0; i < b.convs.size(); ++i) {
      V c = conv(o, b.convs[i]);
      o = bn(c, b.bns[i], train, i < last);
    }
    V sc = x;
    if (b.hasProj) {
      V p = conv(x, b.proj);
      sc = bn(p, b.projBn, train);
    }
    return add(o, sc, true);
  }

  // ---- backward ----
  std::vector<Tensor> grads;

  void addGrad(int id, Tensor g) {
    if (id < 0 || !needsGrad[id]) return;
    if (grads[id].empty())
      grads[id] = std::move(g);
    else
      accumulate(g.numel(), g.data(), grads[id].data());
  }

  void backwardNode(const Node& nd) {
    Tensor g = grads[nd.out];
    if (g.empty()) return;
    const auto t0 = Clock::now();
    if (nd.relu) {  // a BN or add with its ReLU fused: through the ReLU first, from the kept output
      Tensor dz(g.shape());
      reluBackward(g.numel(), vals[nd.out].data(), g.data(), dz.data());
      g = std::move(dz);
    }
    const Tensor& x = vals[nd.in];  // empty for ReLU and add inputs (not kept)
    const bool wantDx = needsGrad[nd.in];
    switch (nd.kind) {
      case Kind::Conv: {
        Param& w = params->at(nd.conv->weight);
        Tensor dx = wantDx ? Tensor(x.shape()) : Tensor();
        conv2dBackward(nd.cs, x.data(), w, g.data(), wantDx ? dx.data() : nullptr, !w.frozen());
        if (wantDx) addGrad(nd.in, std::move(dx));
        break;
      }
      case Kind::Bn: {
        Param& gm = params->at(nd.bn->gamma);
        Param& bt = params->at(nd.bn->beta);
        const float* mean = nd.bnTrain ? nd.saveMean.data() : buffers->at(nd.bn->mean).value();
        const float* var = nd.bnTrain ? nd.saveVar.data() : buffers->at(nd.bn->var).value();
        Tensor dx = wantDx ? Tensor(x.shape()) : Tensor();
        batchNormBackward(x.dim(0), x.dim(1), x.dim(2), x.dim(3), x.data(), gm.value(), mean, var, eps, !nd.bnTrain,
                          g.data(), wantDx ? dx.data() : nullptr, gm.frozen() ? nullptr : gm.grad(),
                          bt.frozen() ? nullptr : bt.grad(), nd.layout);
        if (wantDx) addGrad(nd.in, std::move(dx));
        break;
      }
      case Kind::Relu: {
        if (!wantDx) break;
        Tensor dx(g.shape());
        reluBackward(g.numel(), vals[nd.out].data(), g.data(), dx.data());
        addGrad(nd.in, std::move(dx));
        break;
      }
      case Kind::Add: {
        // The same gradient flows to both inputs; copy for the second so accumulation into
        // one does not alias the other.
        if (needsGrad[nd.in2]) {
          Tensor copy(g.shape());
          std::memcpy(copy.data(), g.data(), static_cast<size_t>(g.numel()) * sizeof(float));
          addGrad(nd.in2, std::move(copy));
        }
        if (wantDx) addGrad(nd.in, g);
        break;
      }
      case Kind::Reorder: {
        if (!wantDx) break;
        Tensor dx(g.shape());
        reorderLayout(g.dim(0), g.dim(1), g.dim(2), g.dim(3), nd.layout, nd.from, g.data(), dx.data());
        addGrad(nd.in, std::move(dx));
        break;
      }
      case Kind::MaxPool: {
        if (!wantDx) break;
        Tensor dx(x.shape());
        maxPool2dBackward(x.dim(0), x.dim(1), x.dim(2), x.dim(3), 3, 2, 1, x.data(), g.data(), dx.data());
        addGrad(nd.in, std::move(dx));
        break;
      }
    }
    grads[nd.out] = Tensor();  // consumed
    charge(nd.where, nd.kind, "backward", t0);
  }
};

TrainableResnet::TrainableResnet(const std::string& arch, const std::string& lastTap, const std::string& v2Prefix)
    : impl_(std::make_unique<Impl>()), params_(std::make_shared<ParamStore>()),
      buffers_(std::make_shared<ParamStore>()) {
  impl_->def = resnet::makeResnet(arch, v2Prefix);
  size_t stages = 0;
  for (size_t s = 0; s < impl_->def.stages.size(); ++s)
    if (impl_->def.stages[s].tap == lastTap) stages = s + 1;
  require(stages > 0, "TrainableResnet: unknown lastTap '" + lastTap + "'; expected " +
                          (impl_->def.v2 ? "stage1 .. stage4" : "layer1 .. layer4"));
  impl_->stages = stages;
  impl_->eps = impl_->def.eps;
  impl_->params = params_.get();
  impl_->buffers = buffers_.get();
  auto addConv = [&](const ConvDef& c) {
    std::vector<float> zeros(static_cast<size_t>(c.cout * c.cin * c.k * c.k), 0.f);
    params_->add(c.weight, {c.cout, c.cin, c.k, c.k}, zeros.data());
  };
  auto addBn = [&](const BnDef& b) {
    std::vector<float> ones(b.c, 1.f), zeros(b.c, 0.f);
    params_->add(b.gamma, {b.c}, ones.data());
    params_->add(b.beta, {b.c}, zeros.data());
    buffers_->add(b.mean, {b.c}, zeros.data());
    buffers_->add(b.var, {b.c}, ones.data());
    buffers_->at(b.mean).setFrozen(true);
    buffers_->at(b.var).setFrozen(true);
  };
  const auto& d = impl_->def;
  if (d.v2) addBn(d.dataBn);
  addConv(d.stemConv);
  addBn(d.stemBn);
  for (size_t s = 0; s < stages; ++s)
    for (const auto& b : d.stages[s].blocks) {
      if (d.v2) {
        for (size_t i = 0; i < b.convs.size(); ++i) addBn(b.bns[i]), addConv(b.convs[i]);
        if (b.hasProj) addConv(b.proj);
      } else {
        for (size_t i = 0; i < b.convs.size(); ++i) addConv(b.convs[i]), addBn(b.bns[i]);
        if (b.hasProj) addConv(b.proj), addBn(b.projBn);
      }
    }
}

TrainableResnet::~TrainableResnet() = default;

std::vector<std::string> TrainableResnet::taps() const {
  std::vector<std::string> out{"input"};
  for (size_t s = 0; s < impl_->stages; ++s) out.push_back(impl_->def.stages[s].tap);
  return out;
}

Shape TrainableResnet::tapShape(const std::string& tap, int64_t n, int64_t h, int64_t w) const {
  if (tap == "input") return {n, 3, h, w};
  auto down = [](int64_t v, int64_t k, int64_t s, int64_t p) { return (v + 2 * p - k) / s + 1; };
  h = down(down(h, 7, 2, 3), 3, 2, 1);
  w = down(down(w, 7, 2, 3), 3, 2, 1);
  for (size_t s = 0; s < impl_->stages; ++s) {
    if (s > 0) h = down(h, 3, 2, 1), w = down(w, 3, 2, 1);
    if (impl_->def.stages[s].tap == tap) return {n, impl_->def.stages[s].outChannels, h, w};
  }
  throw Error(ErrorCode::InvalidArgument, "unknown tap '" + tap + "'");
}

Tensor TrainableResnet::forward(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, bool bnTrain,
                                const std::string& startTap) {
  Impl& m = *impl_;
  m.clear();
  const auto& d = m.def;
  // Units: 0 = stem, then each block; start after startTap's stage.
  size_t firstStage = 0;
  bool fromInput = startTap == "input";
  if (!fromInput) {
    firstStage = d.stages.size();
    for (size_t s = 0; s < m.stages; ++s)
      if (d.stages[s].tap == startTap) firstStage = s + 1;
    require(firstStage <= m.stages && firstStage < d.stages.size() + 1 && firstStage > 0,
            "TrainableResnet.forward: unknown startTap '" + startTap + "'");
    require(firstStage < m.stages || startTap != d.stages[m.stages - 1].tap,
            "TrainableResnet.forward: startTap '" + startTap + "' is the last tap: nothing to run");
  }
  const int64_t wantC = fromInput ? 3 : d.stages[firstStage - 1].outChannels;
  require(c == wantC, "TrainableResnet.forward: x must have " + std::to_string(wantC) + " channels at '" + startTap +
                          "', received " + std::to_string(c));
  require(n >= 1 && h >= 1 && w >= 1, "TrainableResnet.forward: n, h, w must be >= 1");

  V cur;
  cur.t = Tensor({n, c, h, w});
  std::memcpy(cur.t.data(), x, static_cast<size_t>(n * c * h * w) * sizeof(float));
  m.recording = false;
  m.where = "stem";
  if (fromInput) {
    std::vector<std::string> stem{d.stemConv.weight, d.stemBn.gamma, d.stemBn.beta};
    if (d.v2) stem.insert(stem.end(), {d.dataBn.gamma, d.dataBn.beta});
    m.recording = m.anyTrainable(stem);
    if (d.v2) cur = m.bn(cur, d.dataBn, bnTrain);
    V y = m.conv(cur, d.stemConv);
    y = m.bn(y, d.stemBn, bnTrain, true);
    cur = m.maxPool(y);
  }
  if (m.blocked && firstStage < m.stages && cur.c() % 16 == 0) {
    m.where = d.stages[firstStage].tap;
    cur = m.toLayout(cur, Layout::Blocked16);
  }
  for (size_t s = firstStage; s < m.stages; ++s)
    for (const auto& b : d.stages[s].blocks) {
      m.where = d.stages[s].tap;
      if (!m.recording) m.recording = m.anyTrainable(Impl::blockParams(b));
      cur = m.block(cur, b, bnTrain);
    }
  m.outId = cur.id;
  m.outShape = cur.t.shape();
  m.outLayout = cur.layout;
  m.dropUnneeded();
  if (cur.layout == Layout::Nchw) return cur.t;
  Tensor out(cur.t.shape());
  reorderLayout(cur.n(), cur.c(), cur.h(), cur.w(), cur.layout, Layout::Nchw, cur.t.data(), out.data());
  return out;
}

void TrainableResnet::backward(const float* dOut) {
  Impl& m = *impl_;
  require(!m.outShape.empty(), "TrainableResnet.backward: no forward to differentiate");
  if (m.outId < 0) {  // nothing trainable was run
    m.clear();
    return;
  }
  m.grads.assign(m.vals.size(), Tensor());
  Tensor g(m.outShape);
  if (m.outLayout == Layout::Nchw)
    std::memcpy(g.data(), dOut, static_cast<size_t>(g.numel()) * sizeof(float));
  else
    reorderLayout(g.dim(0), g.dim(1), g.dim(2), g.dim(3), Layout::Nchw, m.outLayout, dOut, g.data());
  m.grads[m.outId] = std::move(g);
  for (size_t i = m.nodes.size(); i-- > 0;) m.backwardNode(m.nodes[i]);
  m.grads.clear();
  m.clear();
}

void TrainableResnet::release() { impl_->clear(); }

void TrainableResnet::setBlockedActivations(bool on) {
  impl_->clear();
  impl_->blocked = on;
}

std::map<std::string, double> TrainableResnet::profile() const { return impl_->profile; }
void TrainableResnet::resetProfile() { impl_->profile.clear(); }

Shape TrainableResnet::outputShape() const {
  return impl_->outShape.empty() ? Shape{0} : impl_->outShape;
}

int64_t TrainableResnet::keptFloats() const {
  int64_t total = 0;
  for (const auto& t : impl_->vals) total += t.numel();
  for (const auto& nd : impl_->nodes) total += nd.saveMean.empty() ? 0 : 2 * nd.saveMean.numel();
  return total;
}

}  // namespace anomalens::train
