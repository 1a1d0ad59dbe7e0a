// nn: the backbone on small seeded ResNets against a naive float64 forward pass written from
// the architecture description (direct convolution loops, batch-norm as its formula), and the
// graph rewrites (BN folding, residual fusion) on their own.
#include <cstdio>
#include <limits>
#include <map>

#include "anomalens/core/error.h"
#include "anomalens/io/safetensors.h"
#include "anomalens/nn/backbone.h"
#include "anomalens/nn/resnet_graph.h"
#include "anomalens/nn/resnet_spec.h"
#include "anomalens/nn/weights.h"
#include "harness.h"

namespace anomalens::tests {
namespace {

using resnet::BnDef;
using resnet::ConvDef;
using Weights = std::map<std::string, std::vector<float>>;

// A [c, h, w] activation of one image, float64.
struct Act {
  int64_t c = 0, h = 0, w = 0;
  std::vector<double> v;
  double& at(int64_t ci, int64_t y, int64_t x) { return v[(ci * h + y) * w + x]; }
  double at(int64_t ci, int64_t y, int64_t x) const { return v[(ci * h + y) * w + x]; }
};

Act conv(const Act& in, const ConvDef& d, const Weights& W) {
  const auto& wt = W.at(d.weight);
  Act out{d.cout, (in.h + 2 * d.pad - d.k) / d.stride + 1, (in.w + 2 * d.pad - d.k) / d.stride + 1, {}};
  out.v.assign(static_cast<size_t>(out.c * out.h * out.w), 0.0);
  for (int64_t o = 0; o < d.cout; ++o)
    for (int64_t y = 0; y < out.h; ++y)
      for (int64_t x = 0; x < out.w; ++x) {
        double s = 0;
        for (int64_t i = 0; i < d.cin; ++i)
          for (int64_t ky = 0; ky < d.k; ++ky)
            for (int64_t kx = 0; kx < d.k; ++kx) {
              const int64_t sy = y * d.stride - d.pad + ky, sx = x * d.stride - d.pad + kx;
              if (sy < 0 || sy >= in.h || sx < 0 || sx >= in.w) continue;
              s += in.at(i, sy, sx) * wt[((o * d.cin + i) * d.k + ky) * d.k + kx];
            }
        out.at(o, y, x) = s;
      }
  return out;
}

Act bn(Act x, const BnDef& d, const Weights& W, bool relu, double eps) {
  const auto &g = W.at(d.gamma), &b = W.at(d.beta), &m = W.at(d.mean), &var = W.at(d.var);
  for (int64_t c = 0; c < x.c; ++c)
    for (int64_t i = 0; i < x.h * x.w; ++i) {
      double& v = x.v[c * x.h * x.w + i];
      v = (v - m[c]) / std::sqrt(var[c] + eps) * g[c] + b[c];
      if (relu) v = std::max(v, 0.0);
    }
  return x;
}

Act maxpool(const Act& in) {
  Act out{in.c, (in.h + 2 - 3) / 2 + 1, (in.w + 2 - 3) / 2 + 1, {}};
  out.v.resize(static_cast<size_t>(out.c * out.h * out.w));
  for (int64_t c = 0; c < in.c; ++c)
    for (int64_t y = 0; y < out.h; ++y)
      for (int64_t x = 0; x < out.w; ++x) {
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t ky = 0; ky < 3; ++ky)
          for (int64_t kx = 0; kx < 3; ++kx) {
            const int64_t sy = y * 2 - 1 + ky, sx = x * 2 - 1 + kx;
            if (sy >= 0 && sy < in.h && sx >= 0 && sx < in.w) m = std::max(m, in.at(c, sy, sx));
          }
        out.at(c, y, x) = m;
      }
  return out;
}

Act addRelu(Act a, const Act& b, bool relu) {
  for (size_t i = 0; i < a.v.size(); ++i) a.v[i] = relu ? std::max(a.v[i] + b.v[i], 0.0) : a.v[i] + b.v[i];
  return a;
}

// Every tap the weights cover, for one image, as in torchvision / the ONNX Model Zoo graph.
std::map<std::string, Act> naiveForward(const resnet::ResnetDef& def, const Weights& W, Act x, int stages, bool avgpool) {
  std::map<std::string, Act> taps;
  const double eps = def.eps;
  if (def.v2) x = bn(x, def.dataBn, W, false, eps);
  x = maxpool(bn(conv(x, def.stemConv, W), def.stemBn, W, true, eps));
  taps["stem"] = x;
  for (int s = 0; s < stages; ++s) {
    for (const auto& blk : def.stages[s].blocks) {
      const size_t nc = blk.convs.size();
      if (!def.v2) {
        Act y = x;
        for (size_t i = 0; i + 1 < nc; ++i) y = bn(conv(y, blk.convs[i], W), blk.bns[i], W, true, eps);
        y = bn(conv(y, blk.convs.back(), W), blk.bns.back(), W, false, eps);
        Act sc = blk.hasProj ? bn(conv(x, blk.proj, W), blk.projBn, W, false, eps) : x;
        x = addRelu(y, sc, true);
      } else {
        Act p = bn(x, blk.bns[0], W, true, eps);
        Act y = p;
        for (size_t i = 0; i + 1 < nc; ++i) y = bn(conv(y, blk.convs[i], W), blk.bns[i + 1], W, true, eps);
        y = conv(y, blk.convs.back(), W);
        x = addRelu(y, blk.hasProj ? conv(p, blk.proj, W) : x, false);
      }
    }
    taps[def.stages[s].tap] = x;
  }
  if (avgpool) {
    if (def.v2) x = bn(x, def.finalBn, W, true, eps);
    Act g{x.c, 1, 1, std::vector<double>(static_cast<size_t>(x.c), 0.0)};
    for (int64_t c = 0; c < x.c; ++c) {
      for (int64_t i = 0; i < x.h * x.w; ++i) g.v[c] += x.v[c * x.h * x.w + i];
      g.v[c] /= static_cast<double>(x.h * x.w);
    }
    taps["avgpool"] = g;
  }
  return taps;
}

// Seeded weights of the first `stages` stages (and the head when all four).
Weights seededWeights(const resnet::ResnetDef& def, int stages, Rng& rng) {
  Weights W;
  auto addConv = [&](const ConvDef& c) {
    const float bound = std::sqrt(3.0f / static_cast<float>(c.cin * c.k * c.k));
    W[c.weight] = rng.floats(static_cast<size_t>(c.cout * c.cin * c.k * c.k), -bound, bound);
  };
  auto addBn = [&](const BnDef& b) {
    W[b.gamma] = rng.floats(static_cast<size_t>(b.c), 0.5f, 1.0f);
    W[b.beta] = rng.floats(static_cast<size_t>(b.c), -0.1f, 0.1f);
    W[b.mean] = rng.floats(static_cast<size_t>(b.c), -0.1f, 0.1f);
    W[b.var] = rng.floats(static_cast<size_t>(b.c), 0.5f, 1.5f);
  };
  if (def.v2) addBn(def.dataBn);
  addConv(def.stemConv);
  addBn(def.stemBn);
  for (int s = 0; s < stages; ++s)
    for (const auto& b : def.stages[s].blocks) {
      for (const auto& c : b.convs) addConv(c);
      for (const auto& n : b.bns) addBn(n);
      if (b.hasProj) {
        addConv(b.proj);
        if (!b.projBn.gamma.empty()) addBn(b.projBn);
      }
    }
  if (stages == 4 && def.v2) addBn(def.finalBn);
  return W;
}

std::string writeWeights(const std::string& name, const Weights& W, const resnet::ResnetDef& def) {
  std::vector<RawTensor> tensors;
  // Shapes from the description: convs 4-D, BN vectors 1-D.
  std::map<std::string, std::vector<int64_t>> shapes;
  auto conv = [&](const ConvDef& c) { shapes[c.weight] = {c.cout, c.cin, c.k, c.k}; };
  auto bnShape = [&](const BnDef& b) {
    for (const auto& n : {b.gamma, b.beta, b.mean, b.var}) shapes[n] = {b.c};
  };
  if (def.v2) bnShape(def.dataBn), bnShape(def.finalBn);
  conv(def.stemConv);
  bnShape(def.stemBn);
  for (const auto& s : def.stages)
    for (const auto& b : s.blocks) {
      for (const auto& c : b.convs) conv(c);
      for (const auto& n : b.bns) bnShape(n);
      if (b.hasProj) {
        conv(b.proj);
        if (!b.projBn.gamma.empty()) bnShape(b.projBn);
      }
    }
  for (const auto& [n, v] : W) tensors.push_back(f32Tensor(n, shapes.at(n), v));
  const std::string path = tempPath(name);
  writeFile(path, safetensorsBytes(tensors));
  return path;
}

void checkArch(const std::string& arch, int stages, uint64_t seed) {
  Rng rng(seed);
  resnet::ResnetDef def = resnet::makeResnet(arch, resnet::isV2(arch) ? "resnetv24_" : "");
  Weights W = seededWeights(def, stages, rng);
  const std::string path = writeWeights(arch + ".safetensors", W, def);
  auto bb = Backbone::load(arch, path);
  std::remove(path.c_str());
  const bool avgpool = stages == 4;
  std::vector<std::string> taps = bb->availableTaps();
  CHECK_MSG(taps.size() == static_cast<size_t>(1 + stages + (avgpool ? 1 : 0)), arch << ": " << taps.size() << " taps");
  // Odd sizes: 2 images of 3 x 45 x 37.
  const int64_t n = 2, h = 45, w = 37;
  std::vector<float> input = rng.floats(static_cast<size_t>(n * 3 * h * w), -2.f, 2.f);
  auto out = bb->extract(TensorView{input.data(), {n, 3, h, w}}, taps);
  for (int64_t i = 0; i < n; ++i) {
    Act x{3, h, w, std::vector<double>(input.begin() + i * 3 * h * w, input.begin() + (i + 1) * 3 * h * w)};
    auto ref = naiveForward(def, W, x, stages, avgpool);
    for (const auto& t : taps) {
      const Tensor& got = out.at(t);
      const Act& r = ref.at(t);
      CHECK_MSG(got.shape() == (Shape{n, r.c, r.h, r.w}), arch << " " << t << " shape " << shapeString(got.shape()));
      if (got.shape() != Shape{n, r.c, r.h, r.w}) continue;
      const double err = relError(got.data() + i * r.c * r.h * r.w, r.v.data(), r.v.size());
      CHECK_MSG(err < 1e-4, arch << " image " << i << " tap " << t << ": relative error " << err);
    }
  }
  if (!avgpool) CHECK_THROWS_CODE(bb->extract(TensorView{input.data(), {n, 3, h, w}}, {"avgpool"}), ErrorCode::WeightsMismatch);
}

}  // namespace

TEST(nn_backbone_resnet18_vs_naive) { checkArch("resnet18", 4, 11); }
TEST(nn_backbone_resnet50_first_two_stages_vs_naive) { checkArch("resnet50", 2, 12); }
TEST(nn_backbone_resnet18_v2_vs_naive) { checkArch("resnet18_v2", 4, 13); }
TEST(nn_backbone_resnet50_v2_first_stage_vs_naive) { checkArch("resnet50_v2", 1, 14); }

TEST(nn_graph_fold_and_fuse) {
  Rng rng(15);
  for (const std::string arch : {"resnet18", "resnet18_v2"}) {
    resnet::ResnetDef def = resnet::makeResnet(arch, resnet::isV2(arch) ? "resnetv24_" : "");
    Weights W = seededWeights(def, 4, rng);
    const std::string path = writeWeights(arch + "-graph.safetensors", W, def);
    SafetensorsFile f = SafetensorsFile::read(path);
    std::remove(path.c_str());
    nn::WeightsCoverage have = nn::validateWeights(def, f);
    CHECK(have.stages == 4 && have.avgpool);
    nn::ResnetGraph g = nn::buildResnetGraph(def, f, have.stages, have.avgpool);
    nn::ResnetGraph folded = nn::fuseResidualAdds(nn::foldBatchNorms(g));
    int bns = 0, adds = 0, foldedBns = 0, foldedAdds = 0, fusedConvs = 0;
    for (const auto& op : g.ops) bns += op.kind == nn::OpKind::BatchNorm, adds += op.kind == nn::OpKind::Add;
    for (const auto& op : folded.ops) {
      foldedBns += op.kind == nn::OpKind::BatchNorm;
      foldedAdds += op.kind == nn::OpKind::Add;
      fusedConvs += op.kind == nn::OpKind::Conv2d && op.input2 >= 0;
    }
    // resnet18: 8 blocks. v1: 20 BNs (stem 1 + 2 per block + 3 projections), all folded;
    // v2: 1 data + 1 stem + 2 per block + 1 final = 19, of which data, 8 pre-activations and
    // the final stay.
    CHECK_MSG(adds == 8 && foldedAdds == 0 && fusedConvs == 8, arch << ": adds " << adds << ", fused " << fusedConvs);
    CHECK_MSG(bns == (def.v2 ? 19 : 20) && foldedBns == (def.v2 ? 10 : 0), arch << ": bns " << bns << " -> " << foldedBns);
    // The unfolded graph's parameters are untouched by folding.
    CHECK(g.convs[0].bias.empty() && g.convs[0].weight.data() != folded.convs[0].weight.data());
    // Folding a conv with its BN, against the formula.
    const nn::Conv2dParams& c0 = g.convs[0];
    const nn::BatchNormParams& b0 = g.bns[def.v2 ? 1 : 0];
    nn::Conv2dParams fc = nn::foldBatchNorm(c0, b0);
    const int64_t per = c0.cin * c0.k * c0.k;
    double err = 0;
    for (int64_t o = 0; o < c0.cout; ++o) {
      const double s = b0.gamma.data()[o] / std::sqrt(static_cast<double>(b0.var.data()[o]) + b0.eps);
      err = std::max(err, std::abs(fc.bias.data()[o] - (b0.beta.data()[o] - b0.mean.data()[o] * s)));
      for (int64_t i = 0; i < per; ++i)
        err = std::max(err, std::abs(fc.weight.data()[o * per + i] - c0.weight.data()[o * per + i] * s));
    }
    CHECK_MSG(err < 1e-6, arch << ": fold error " << err);
    auto shapes = nn::valueShapes(folded, {1, 3, 37, 29});
    CHECK(shapes[folded.taps.back().value] == (Shape{1, 512, 1, 1}));
  }
}

}  // namespace anomalens::tests
