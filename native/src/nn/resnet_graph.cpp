// The ResNet graph walk, device-neutral. See anomalens/nn/resnet_graph.h.
#include "anomalens/nn/resnet_graph.h"

#include <algorithm>

#include "anomalens/core/error.h"

namespace anomalens::nn {
namespace {

// Appends ops to a graph, numbering values as they are written.
class GraphBuilder {
 public:
  GraphBuilder(ResnetGraph& g, const SafetensorsFile& f, float eps) : g_(g), f_(f), eps_(eps) {}

  int conv(int input, const resnet::ConvDef& d) {
    Conv2dParams c;
    c.name = d.name;
    c.weightName = d.weight;
    c.cin = d.cin, c.cout = d.cout, c.k = d.k, c.stride = d.stride, c.pad = d.pad;
    c.weight = f_.toFloat(d.weight);
    g_.convs.push_back(std::move(c));
    Op op;
    op.kind = OpKind::Conv2d;
    op.name = d.name;
    op.param = static_cast<int>(g_.convs.size()) - 1;
    return push(std::move(op), input);
  }

  int batchNorm(int input, const resnet::BnDef& d, const std::string& name, bool relu) {
    BatchNormParams b;
    b.name = name;
    b.varName = d.var;
    b.c = d.c;
    b.eps = eps_;
    b.gamma = f_.toFloat(d.gamma);
    b.beta = f_.toFloat(d.beta);
    b.mean = f_.toFloat(d.mean);
    b.var = f_.toFloat(d.var);
    g_.bns.push_back(std::move(b));
    Op op;
    op.kind = OpKind::BatchNorm;
    op.name = name;
    op.relu = relu;
    op.param = static_cast<int>(g_.bns.size()) - 1;
    return push(std::move(op), input);
  }

  int add(int main, int shortcut, const std::string& name, bool relu) {
    Op op;
    op.kind = OpKind::Add;
    op.name = name;
    op.input2 = shortcut;
    op.relu = relu;
    return push(std::move(op), main);
  }

  int pool(int input, OpKind kind, const std::string& name, int64_t k = 0, int64_t stride = 1, int64_t pad = 0) {
    Op op;
    op.kind = kind;
    op.name = name;
    op.k = k, op.stride = stride, op.pad = pad;
    return push(std::move(op), input);
  }

 private:
  int push(Op op, int input) {
    op.input = input;
    op.output = g_.values++;
    g_.ops.push_back(std::move(op));
    return g_.ops.back().output;
  }
  ResnetGraph& g_;
  const SafetensorsFile& f_;
  float eps_;
};

// "layer1.0.bn1" from "layer1.0.bn1.weight"; ONNX names ("..._gamma") lose their suffix too.
std::string bnName(const resnet::BnDef& d) {
  for (const std::string suffix : {".weight", "_gamma"})
    if (d.gamma.size() > suffix.size() && d.gamma.compare(d.gamma.size() - suffix.size(), suffix.size(), suffix) == 0)
      return d.gamma.substr(0, d.gamma.size() - suffix.size());
  return d.gamma;
}

// The block's name for its Add: "layer1.0" from "layer1.0.conv1".
std::string blockName(const resnet::BlockDef& b) {
  const std::string& n = b.convs[0].name;
  const size_t dot = n.rfind('.');
  return dot == std::string::npos ? n : n.substr(0, dot);
}

int64_t convOut(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

}  // namespace

const char* opKindName(OpKind kind) {
  switch (kind) {
    case OpKind::Conv2d: return "conv2d";
    case OpKind::BatchNorm: return "batchnorm";
    case OpKind::Add: return "add";
    case OpKind::MaxPool: return "maxpool";
    case OpKind::GlobalAvgPool: return "global_avgpool";
  }
  return "?";
}

ResnetGraph buildResnetGraph(const resnet::ResnetDef& def, const SafetensorsFile& file, int stages, bool avgpool) {
  ResnetGraph g;
  g.arch = def.arch;
  GraphBuilder b(g, file, def.eps);
  int x = 0;
  if (def.v2) x = b.batchNorm(x, def.dataBn, "batchnorm0 (data)", false);
  x = b.conv(x, def.stemConv);
  x = b.batchNorm(x, def.stemBn, bnName(def.stemBn), true);
  x = b.pool(x, OpKind::MaxPool, "maxpool", 3, 2, 1);
  g.taps.push_back(GraphTap{"stem", x, 64});

  for (int s = 0; s < stages; ++s) {
    for (const auto& blk : def.stages[s].blocks) {
      const size_t nc = blk.convs.size();
      // v1: out = relu(bn_last(conv_last(...)) + shortcut), bns[i] after convs[i].
      // v2: p = relu(bns[0](x)); convs[i] then bns[i + 1] + relu except the last conv;
      //     out = conv_last(...) + shortcut, shortcut = proj(p) or x.
      int p = x;
      if (def.v2) p = b.batchNorm(x, blk.bns[0], blk.convs[0].name + " pre-activation", true);
      int y = p;
      for (size_t i = 0; i + 1 < nc; ++i) {
        y = b.conv(y, blk.convs[i]);
        y = def.v2 ? b.batchNorm(y, blk.bns[i + 1], bnName(blk.bns[i + 1]), true)
                   : b.batchNorm(y, blk.bns[i], bnName(blk.bns[i]), true);
      }
      // The shortcut before the last conv, so that a plan may sum the last conv into it.
      int shortcut = x;
      if (blk.hasProj) {
        shortcut = b.conv(p, blk.proj);
        if (!def.v2) shortcut = b.batchNorm(shortcut, blk.projBn, bnName(blk.projBn), false);
      }
      y = b.conv(y, blk.convs.back());
      if (!def.v2) y = b.batchNorm(y, blk.bns[nc - 1], bnName(blk.bns[nc - 1]), false);
      x = b.add(y, shortcut, blockName(blk) + " add", !def.v2);
    }
    g.taps.push_back(GraphTap{def.stages[s].tap, x, def.stages[s].outChannels});
  }
  if (avgpool) {
    if (def.v2) x = b.batchNorm(x, def.finalBn, "batchnorm2 (final)", true);
    x = b.pool(x, OpKind::GlobalAvgPool, "avgpool");
    g.taps.push_back(GraphTap{"avgpool", x, def.stages[3].outChannels});
  }
  return g;
}

int producerOf(const ResnetGraph& graph, int value) {
  for (size_t i = 0; i < graph.ops.size(); ++i)
    if (graph.ops[i].output == value) return static_cast<int>(i);
  return -1;
}

ResnetGraph mergeIntoPrecedingConv(ResnetGraph g, OpKind kind,
                                   const std::function<void(ResnetGraph&, Op& conv, const Op& op)>& merge) {
  std::vector<int> readers(g.values, 0);
  for (const Op& op : g.ops) {
    ++readers[op.input];
    if (op.input2 >= 0) ++readers[op.input2];
  }
  for (const GraphTap& t : g.taps) ++readers[t.value];
  std::vector<Op> out;
  for (const Op& op : g.ops) {
    if (op.kind == kind && !out.empty()) {
      Op& prev = out.back();
      if (prev.kind == OpKind::Conv2d && prev.output == op.input && prev.input2 < 0 && !prev.relu &&
          readers[op.input] == 1) {
        merge(g, prev, op);
        prev.output = op.output;
        continue;
      }
    }
    out.push_back(op);
  }
  g.ops = std::move(out);
  return g;
}

ResnetGraph fuseResidualAdds(ResnetGraph g) {
  // Only the immediately preceding conv: the shortcut is then written before it, so a plan
  // may sum in place into the shortcut's buffer.
  return mergeIntoPrecedingConv(std::move(g), OpKind::Add, [](ResnetGraph&, Op& conv, const Op& add) {
    conv.input2 = add.input2;
    conv.relu = add.relu;
  });
}

std::vector<Shape> valueShapes(const ResnetGraph& g, const Shape& input) {
  require(input.size() == 4, "input must be [n, 3, h, w], received " + shapeString(input));
  std::vector<Shape> shapes(g.values);
  shapes[0] = input;
  for (const Op& op : g.ops) {
    const Shape& in = shapes[op.input];
    Shape s = in;
    switch (op.kind) {
      case OpKind::Conv2d: {
        const Conv2dParams& c = g.convs[op.param];
        s = {in[0], c.cout, convOut(in[2], c.k, c.stride, c.pad), convOut(in[3], c.k, c.stride, c.pad)};
        break;
      }
      case OpKind::MaxPool:
        s = {in[0], in[1], convOut(in[2], op.k, op.stride, op.pad), convOut(in[3], op.k, op.stride, op.pad)};
        break;
      case OpKind::GlobalAvgPool:
        s = {in[0], in[1], 1, 1};
        break;
      case OpKind::BatchNorm:
      case OpKind::Add:
        break;
    }
    require(s[2] >= 1 && s[3] >= 1, "input is too small for " + op.name + ": " + std::to_string(in[2]) + "x" +
                                        std::to_string(in[3]) + " gives an empty output");
    shapes[op.output] = s;
  }
  return shapes;
}

}  // namespace anomalens::nn
