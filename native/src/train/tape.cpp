#include "tape.h"

#include <cstring>

#include "anomalens/core/error.h"

namespace anomalens::train {

void Tape::begin(bool record) {
  release();
  record_ = record;
}

void Tape::release() {
  vals_.clear();
  layouts_.clear();
  grads_.clear();
  needsGrad_.clear();
  nodes_.clear();
}

int Tape::input(const float* x, Shape shape) {
  Tensor t(shape);
  std::memcpy(t.data(), x, static_cast<size_t>(t.numel()) * sizeof(float));
  vals_.push_back(std::move(t));
  layouts_.push_back(Layout::Nchw);
  needsGrad_.push_back(false);
  return static_cast<int>(vals_.size()) - 1;
}

int Tape::push(Tensor t, Node node, bool grad, Layout layout) {
  const int id = static_cast<int>(vals_.size());
  vals_.push_back(std::move(t));
  layouts_.push_back(layout);
  needsGrad_.push_back(record_ && grad);
  if (record_) {
    node.out = id;
    nodes_.push_back(std::move(node));
  }
  return id;
}

static bool trainable(const Param* p) { return p && !p->frozen(); }

int Tape::conv(int x, const std::string& module, int64_t stride, int64_t pad) {
  const Tensor& v = vals_.at(static_cast<size_t>(x));
  Param& w = params_.at(module + ".weight");
  require(w.shape().size() == 4 && w.shape()[1] == v.dim(1),
          module + ": expected " + std::to_string(w.shape()[1]) + " input channels, received " +
              std::to_string(v.dim(1)));
  Conv2dShape s{v.dim(0), v.dim(1), v.dim(2), v.dim(3), w.shape()[0], w.shape()[2], w.shape()[3],
                stride, stride, pad, pad};
  s.src = layout(x);
  s.dst = outLayout(s.k);
  Tensor y({s.n, s.k, s.oh(), s.ow()});
  conv2dForward(s, v.data(), w, y.data());
  Node nd;
  nd.kind = Kind::Conv;
  nd.in = {x};
  nd.weight = &w;
  nd.cs = s;
  return push(std::move(y), std::move(nd), needsGrad_[x] || trainable(&w), s.dst);
}

int Tape::convTranspose(int x, const std::string& module, int64_t stride) {
  const Tensor& v = vals_.at(static_cast<size_t>(x));
  Param& w = params_.at(module + ".weight");
  require(w.shape().size() == 4 && w.shape()[0] == v.dim(1),
          module + ": expected " + std::to_string(w.shape()[0]) + " input channels, received " +
              std::to_string(v.dim(1)));
  ConvTranspose2dShape s{v.dim(0), v.dim(1), v.dim(2), v.dim(3), w.shape()[1], w.shape()[2], w.shape()[3],
                         stride, stride, 0, 0};
  s.src = layout(x);
  s.dst = outLayout(s.k);
  Tensor y({s.n, s.k, s.oh(), s.ow()});
  convTranspose2dForward(s, v.data(), w, y.data());
  Node nd;
  nd.kind = Kind::ConvT;
  nd.in = {x};
  nd.weight = &w;
  nd.ts = s;
  return push(std::move(y), std::move(nd), needsGrad_[x] || trainable(&w), s.dst);
}

int Tape::bn(int x, const std::string& module, bool train, bool relu) {
  const Tensor& v = vals_.at(static_cast<size_t>(x));
  Param& gamma = params_.at(module + ".weight");
  Param& beta = params_.at(module + ".bias");
  float* rm = buffers_.at(module + ".running_mean").value();
  float* rv = buffers_.at(module + ".running_var").value();
  require(gamma.numel() == v.dim(1), module + ": expected " + std::to_string(gamma.numel()) +
                                         " channels, received " + std::to_string(v.dim(1)));
  Tensor y(v.shape());
  Node nd;
  nd.kind = Kind::Bn;
  nd.in = {x};
  nd.weight = &gamma;
  nd.beta = &beta;
  nd.bnTrain = train;
  nd.relu = relu;
  nd.layout = layout(x);
  if (train) {
    require(v.dim(0) * v.dim(2) * v.dim(3) > 1,
            module + ": batch norm in training mode needs more than one value per channel, received input " +
                shapeString(v.shape()));
    nd.saveMean = Tensor({v.dim(1)});
    nd.saveVar = Tensor({v.dim(1)});
    batchNormTrainForward(v.dim(0), v.dim(1), v.dim(2), v.dim(3), v.data(), gamma.value(), beta.value(), eps_, 0.1,
                          y.data(), nd.saveMean.data(), nd.saveVar.data(), rm, rv, nd.layout, relu);
  } else {
    batchNormFrozenForward(v.dim(0), v.dim(1), v.dim(2), v.dim(3), v.data(), gamma.value(), beta.value(), rm, rv,
                           eps_, y.data(), nd.layout, relu);
    nd.frozenMean = rm;
    nd.frozenVar = rv;
  }
  return push(std::move(y), std::move(nd), needsGrad_[x] || trainable(&gamma) || trainable(&beta), nd.layout);
}

int Tape::relu(int x) {
  const Tensor& v = vals_.at(static_cast<size_t>(x));
  Tensor y(v.shape());
  reluForward(v.numel(), v.data(), y.data());
  Node nd;
  nd.kind = Kind::Relu;
  nd.in = {x};
  return push(std::move(y), std::move(nd), needsGrad_[x], layout(x));
}

int Tape::toLayout(int x, Layout to) {
  if (layout(x) == to) return x;
  const Tensor& v = vals_.at(static_cast<size_t>(x));
  Tensor y(v.shape());
  reorderLayout(v.dim(0), v.dim(1), v.dim(2), v.dim(3), layout(x), to, v.data(), y.data());
  Node nd;
  nd.kind = Kind::Reorder;
  nd.in = {x};
  nd.from = layout(x);
  nd.layout = to;
  return push(std::move(y), std::move(nd), needsGrad_[x], to);
}

int Tape::plain(int x) { return toLayout(x, Layout::Nchw); }

int Tape::add(int a, int bIn, bool relu) {
  const int b = toLayout(bIn, layout(a));
  const Tensor& va = vals_.at(static_cast<size_t>(a));
  const Tensor& vb = vals_.at(static_cast<size_t>(b));
  require(va.shape() == vb.shape(), "add: shapes " + shapeString(va.shape()) + " and " + shapeString(vb.shape()) +
                                        " differ");
  Tensor y(va.shape());
  addForward(va.numel(), va.data(), vb.data(), y.data(), relu);
  Node nd;
  nd.kind = Kind::Add;
  nd.relu = relu;
  nd.in = {a, b};
  return push(std::move(y), std::move(nd), needsGrad_[a] || needsGrad_[b], layout(a));
}

int Tape::concat(const std::vector<int>& xsIn) {
  require(!xsIn.empty(), "concat: no inputs");
  std::vector<int> xs;
  for (int id : xsIn) xs.push_back(plain(id));
  const Tensor& v0 = vals_.at(static_cast<size_t>(xs[0]));
  std::vector<int64_t> cs;
  std::vector<const float*> ptrs;
  int64_t total = 0;
  bool grad = false;
  for (int id : xs) {
    const Tensor& v = vals_.at(static_cast<size_t>(id));
    require(v.dim(0) == v0.dim(0) && v.dim(2) == v0.dim(2) && v.dim(3) == v0.dim(3),
            "concat: input " + shapeString(v.shape()) + " does not match " + shapeString(v0.shape()) +
                " in n, h, w");
    cs.push_back(v.dim(1));
    ptrs.push_back(v.data());
    total += v.dim(1);
    grad = grad || needsGrad_[id];
  }
  Tensor y({v0.dim(0), total, v0.dim(2), v0.dim(3)});
  concatForward(v0.dim(0), static_cast<int64_t>(xs.size()), cs.data(), v0.dim(2), v0.dim(3), ptrs.data(), y.data());
  Node nd;
  nd.kind = Kind::Concat;
  nd.in = xs;
  nd.parts = cs;
  return push(std::move(y), std::move(nd), grad);
}

void Tape::finish(const std::vector<int>& outputs) {
  std::vector<bool> keep(vals_.size(), false);
  for (int o : outputs) keep[static_cast<size_t>(o)] = true;
  for (const auto& nd : nodes_) {
    if (nd.kind == Kind::Relu || nd.relu) keep[static_cast<size_t>(nd.out)] = true;
    if (nd.kind == Kind::Conv || nd.kind == Kind::ConvT || nd.kind == Kind::Bn) keep[static_cast<size_t>(nd.in[0])] = true;
    // Add, concat and reorder keep nothing.
  }
  for (size_t i = 0; i < vals_.size(); ++i)
    if (!keep[i]) vals_[i] = Tensor();
}

int64_t Tape::keptFloats() const {
  int64_t total = 0;
  for (const auto& t : vals_) total += t.empty() ? 0 : t.numel();
  for (const auto& nd : nodes_) total += nd.saveMean.empty() ? 0 : 2 * nd.saveMean.numel();
  return total;
}

void Tape::addGrad(int id, Tensor g) {
  if (id < 0 || !needsGrad_[static_cast<size_t>(id)]) return;
  Tensor& slot = grads_[static_cast<size_t>(id)];
  if (slot.empty())
    slot = std::move(g);
  else
    accumulate(g.numel(), g.data(), slot.data());
}

void Tape::backward(const std::vector<int>& outputs, const std::vector<const float*>& grads) {
  require(record_ && !nodes_.empty(), "backward: no recorded forward to differentiate");
  require(outputs.size() == grads.size(), "backward: one gradient per output");
  grads_.assign(vals_.size(), Tensor());
  for (size_t i = 0; i < outputs.size(); ++i) {
    const int id = outputs[i];
    require(layout(id) == Layout::Nchw, "backward: output " + std::to_string(id) + " is blocked; seed plain() values");
    const Tensor& v = vals_.at(static_cast<size_t>(id));
    Tensor g(v.shape());
    std::memcpy(g.data(), grads[i], static_cast<size_t>(g.numel()) * sizeof(float));
    addGrad(id, std::move(g));
  }
  for (size_t i = nodes_.size(); i-- > 0;) backwardNode(nodes_[i]);
  release();
}

void Tape::backwardNode(const Node& nd) {
  Tensor g = grads_[static_cast<size_t>(nd.out)];
  if (g.empty()) return;
  if (nd.relu) {  // a BN or add with its ReLU fused: through the ReLU first, from the kept output
    Tensor dz(g.shape());
    reluBackward(g.numel(), vals_[static_cast<size_t>(nd.out)].data(), g.data(), dz.data());
    g = std::move(dz);
  }
  const int in = nd.in[0];
  const bool wantDx = needsGrad_[static_cast<size_t>(in)];
  const Tensor& x = vals_[static_cast<size_t>(in)];  // empty for ReLU / add / concat inputs
  switch (nd.kind) {
    case Kind::Conv: {
      Tensor dx = wantDx ? Tensor(x.shape()) : Tensor();
      conv2dBackward(nd.cs, x.data(), *nd.weight, g.data(), wantDx ? dx.data() : nullptr, trainable(nd.weight));
      if (wantDx) addGrad(in, std::move(dx));
      break;
    }
    case Kind::ConvT: {
      Tensor dx = wantDx ? Tensor(x.shape()) : Tensor();
      convTranspose2dBackward(nd.ts, x.data(), *nd.weight, g.data(), wantDx ? dx.data() : nullptr,
                              trainable(nd.weight));
      if (wantDx) addGrad(in, std::move(dx));
      break;
    }
    case Kind::Bn: {
      const float* mean = nd.bnTrain ? nd.saveMean.data() : nd.frozenMean;
      const float* var = nd.bnTrain ? nd.saveVar.data() : nd.frozenVar;
      Tensor dx = wantDx ? Tensor(x.shape()) : Tensor();
      batchNormBackward(x.dim(0), x.dim(1), x.dim(2), x.dim(3), x.data(), nd.weight->value(), mean, var, eps_,
                        !nd.bnTrain, g.data(), wantDx ? dx.data() : nullptr,
                        trainable(nd.weight) ? nd.weight->grad() : nullptr,
                        trainable(nd.beta) ? nd.beta->grad() : nullptr, nd.layout);
      if (wantDx) addGrad(in, std::move(dx));
      break;
    }
    case Kind::Relu: {
      if (!wantDx) break;
      Tensor dx(g.shape());
      reluBackward(g.numel(), vals_[static_cast<size_t>(nd.out)].data(), g.data(), dx.data());
      addGrad(in, std::move(dx));
      break;
    }
    case Kind::Reorder: {
      if (!wantDx) break;
      Tensor dx(g.shape());
      reorderLayout(g.dim(0), g.dim(1), g.dim(2), g.dim(3), nd.layout, nd.from, g.data(), dx.data());
      addGrad(in, std::move(dx));
      break;
    }
    case Kind::Add: {
      // The same gradient flows to both inputs: copy it for the second so that accumulating
      // into one does not alias the other.
      const int b = nd.in[1];
      if (needsGrad_[static_cast<size_t>(b)]) {
        Tensor copy(g.shape());
        std::memcpy(copy.data(), g.data(), static_cast<size_t>(g.numel()) * sizeof(float));
        addGrad(b, std::move(copy));
      }
      if (wantDx) addGrad(in, g);
      break;
    }
    case Kind::Concat: {
      std::vector<Tensor> dxs;
      std::vector<float*> ptrs;
      bool any = false;
      for (size_t i = 0; i < nd.in.size(); ++i) {
        const bool want = needsGrad_[static_cast<size_t>(nd.in[i])];
        any = any || want;
        dxs.push_back(want ? Tensor({g.dim(0), nd.parts[i], g.dim(2), g.dim(3)}) : Tensor());
        ptrs.push_back(want ? dxs.back().data() : nullptr);
      }
      if (!any) break;
      concatBackward(g.dim(0), static_cast<int64_t>(nd.in.size()), nd.parts.data(), g.dim(2), g.dim(3), g.data(),
                     ptrs.data());
      for (size_t i = 0; i < nd.in.size(); ++i)
        if (ptrs[i]) addGrad(nd.in[i], std::move(dxs[i]));
      break;
    }
  }
  grads_[static_cast<size_t>(nd.out)] = Tensor();
}

}  // namespace anomalens::train
