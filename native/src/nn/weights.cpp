// ResNet weights validation and batch-norm folding. See anomalens/nn/weights.h.
#include "anomalens/nn/weights.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "anomalens/core/error.h"

namespace anomalens::nn {

std::string detectV2Prefix(const SafetensorsFile& f, const std::string& arch) {
  for (const auto& [name, e] : f.entries()) {
    const std::string suffix = "_conv0_weight";
    if (name.rfind("resnetv2", 0) == 0 && name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        name.find("stage") == std::string::npos)
      return name.substr(0, name.size() - suffix.size() + 1);
  }
  throw Error(ErrorCode::WeightsMismatch, "weights file '" + f.path() + "' has no ONNX Model Zoo stem tensor " +
                                              "(resnetv2*_conv0_weight) expected for " + arch +
                                              "; is it a torchvision file (use the arch without _v2)?");
}

WeightsCoverage validateWeights(const resnet::ResnetDef& def, const SafetensorsFile& file) {
  const std::string& path = file.path();
  std::map<std::string, Shape> expected;
  auto expectBn = [&](const resnet::BnDef& bn) {
    for (const auto& n : {bn.gamma, bn.beta, bn.mean, bn.var}) expected[n] = {bn.c};
  };
  auto expectConv = [&](const resnet::ConvDef& c) { expected[c.weight] = {c.cout, c.cin, c.k, c.k}; };
  auto expectBlock = [&](const resnet::BlockDef& b) {
    for (const auto& c : b.convs) expectConv(c);
    for (const auto& bn : b.bns) expectBn(bn);
    if (b.hasProj) {
      expectConv(b.proj);
      if (!b.projBn.gamma.empty()) expectBn(b.projBn);
    }
  };
  if (def.v2) expectBn(def.dataBn);
  expectConv(def.stemConv);
  expectBn(def.stemBn);
  std::vector<std::vector<std::string>> stageNames;
  for (const auto& s : def.stages) {
    std::vector<std::string> names;
    for (const auto& b : s.blocks) {
      expectBlock(b);
      resnet::collectTensors(b, names);
    }
    stageNames.push_back(std::move(names));
  }
  if (def.v2) expectBn(def.finalBn);

  // Unexpected tensors first: they usually mean the wrong arch was chosen.
  std::vector<std::string> unexpected;
  for (const auto& [name, entry] : file.entries()) {
    if (expected.count(name)) continue;
    if (std::find(def.headTensors.begin(), def.headTensors.end(), name) != def.headTensors.end()) continue;
    bool ignored = false;
    for (const auto& suf : def.ignoredSuffixes)
      if (name.size() >= suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0) ignored = true;
    if (!ignored) unexpected.push_back(name);
  }
  if (!unexpected.empty()) {
    std::string list;
    for (size_t i = 0; i < unexpected.size() && i < 5; ++i) list += (i ? ", " : "") + unexpected[i];
    throw Error(ErrorCode::WeightsMismatch,
                "weights file '" + path + "' has " + std::to_string(unexpected.size()) + " tensor(s) unexpected for " +
                    def.arch + ": " + list + (unexpected.size() > 5 ? ", ..." : "") + " (is the arch right?)");
  }
  for (const auto& [name, shape] : expected) {
    if (!file.has(name)) continue;
    const auto& e = file.entry(name);
    if (e.shape != shape)
      throw Error(ErrorCode::WeightsMismatch, "tensor '" + name + "' in '" + path + "' has shape " +
                                                  shapeString(e.shape) + ", expected " + shapeString(shape) + " for " +
                                                  def.arch);
  }
  auto missingOf = [&](const std::vector<std::string>& names) {
    std::vector<std::string> m;
    for (const auto& n : names)
      if (!file.has(n)) m.push_back(n);
    return m;
  };
  auto missingError = [&](const std::string& what, const std::vector<std::string>& m) {
    std::string list;
    for (size_t i = 0; i < m.size() && i < 5; ++i) list += (i ? ", " : "") + m[i];
    return Error(ErrorCode::WeightsMismatch, "weights file '" + path + "' lacks " + std::to_string(m.size()) +
                                                 " tensor(s) of " + what + " for " + def.arch + ": " + list +
                                                 (m.size() > 5 ? ", ..." : ""));
  };
  std::vector<std::string> stem;
  if (def.v2) resnet::collectTensors(def.dataBn, stem);
  stem.push_back(def.stemConv.weight);
  resnet::collectTensors(def.stemBn, stem);
  if (auto m = missingOf(stem); !m.empty()) throw missingError("the stem", m);
  WeightsCoverage have;
  int absent = -1;  // first stage with none of its tensors
  for (size_t s = 0; s < stageNames.size(); ++s) {
    auto m = missingOf(stageNames[s]);
    if (m.size() == stageNames[s].size()) {
      if (absent < 0) absent = static_cast<int>(s);
      continue;
    }
    if (!m.empty()) throw missingError(def.stages[s].tap, m);
    // A complete stage after an absent one: the absent stage is the problem.
    if (absent >= 0) throw missingError(def.stages[absent].tap, missingOf(stageNames[absent]));
    have.stages = static_cast<int>(s) + 1;
  }
  if (have.stages == 4) {
    if (def.v2) {
      std::vector<std::string> fin;
      resnet::collectTensors(def.finalBn, fin);
      auto m = missingOf(fin);
      if (!m.empty() && m.size() != fin.size()) throw missingError("the final batch-norm", m);
      have.avgpool = m.empty();
    } else {
      have.avgpool = true;
    }
  }
  return have;
}

void requireTapWeights(const resnet::ResnetDef& def, const WeightsCoverage& have, const std::string& path,
                       const std::string& tap, int idx, const std::string& lastTap) {
  if (idx <= have.stages || (idx == 5 && have.avgpool)) return;
  std::vector<std::string> need;
  for (int s = have.stages; s < std::min(idx, 4); ++s)
    for (const auto& b : def.stages[s].blocks) resnet::collectTensors(b, need);
  if (idx == 5 && def.v2) resnet::collectTensors(def.finalBn, need);
  std::string list;
  for (size_t i = 0; i < need.size() && i < 4; ++i) list += (i ? ", " : "") + need[i];
  throw Error(ErrorCode::WeightsMismatch,
              "tap '" + tap + "' needs tensors absent from the weights file '" + path + "': " + list +
                  (need.size() > 4 ? " (and " + std::to_string(need.size() - 4) + " more)" : "") +
                  "; the file holds taps up to '" + lastTap + "'");
}

Conv2dParams foldBatchNorm(const Conv2dParams& conv, const BatchNormParams& bn) {
  require(bn.c == conv.cout, "batch-norm " + bn.name + " has " + std::to_string(bn.c) + " channels, " + conv.name +
                                 " writes " + std::to_string(conv.cout), ErrorCode::Internal);
  Conv2dParams out = conv;
  out.weight = Tensor(conv.weight.shape());
  out.bias = Tensor({conv.cout});
  const float* g = bn.gamma.data();
  const float* b = bn.beta.data();
  const float* m = bn.mean.data();
  const float* v = bn.var.data();
  const int64_t per = conv.cin * conv.k * conv.k;
  for (int64_t o = 0; o < conv.cout; ++o) {
    require(static_cast<double>(v[o]) + bn.eps > 0,
            "tensor '" + bn.varName + "' has a negative variance at index " + std::to_string(o),
            ErrorCode::WeightsMismatch);
    const double scale = g[o] / std::sqrt(static_cast<double>(v[o]) + static_cast<double>(bn.eps));
    const float* w = conv.weight.data() + o * per;
    float* wo = out.weight.data() + o * per;
    for (int64_t i = 0; i < per; ++i) wo[i] = static_cast<float>(w[i] * scale);
    const double shift = conv.bias.empty() ? b[o] - m[o] * scale
                                           : (static_cast<double>(conv.bias.data()[o]) - m[o]) * scale + b[o];
    out.bias.data()[o] = static_cast<float>(shift);
  }
  return out;
}

ResnetGraph foldBatchNorms(const ResnetGraph& graph) {
  return mergeIntoPrecedingConv(graph, OpKind::BatchNorm, [](ResnetGraph& g, Op& conv, const Op& bn) {
    g.convs[conv.param] = foldBatchNorm(g.convs[conv.param], g.bns[bn.param]);
    conv.relu = bn.relu;
  });
}

}  // namespace anomalens::nn
