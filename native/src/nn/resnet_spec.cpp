#include "anomalens/nn/resnet_spec.h"

#include "anomalens/core/error.h"

namespace anomalens::resnet {
namespace {

struct ArchInfo {
  const char* name;
  bool bottleneck;
  int blocks[4];
  int widthFactor;  // bottleneck width multiplier (wide ResNets: 2)
  bool v2;
};

const ArchInfo kArchs[] = {
    {"resnet18", false, {2, 2, 2, 2}, 1, false},       {"resnet34", false, {3, 4, 6, 3}, 1, false},
    {"resnet50", true, {3, 4, 6, 3}, 1, false},        {"resnet101", true, {3, 4, 23, 3}, 1, false},
    {"resnet152", true, {3, 8, 36, 3}, 1, false},      {"wide_resnet50_2", true, {3, 4, 6, 3}, 2, false},
    {"wide_resnet101_2", true, {3, 4, 23, 3}, 2, false}, {"resnet18_v2", false, {2, 2, 2, 2}, 1, true},
    {"resnet34_v2", false, {3, 4, 6, 3}, 1, true},     {"resnet50_v2", true, {3, 4, 6, 3}, 1, true},
    {"resnet101_v2", true, {3, 4, 23, 3}, 1, true},    {"resnet152_v2", true, {3, 8, 36, 3}, 1, true},
};

BnDef tvBn(const std::string& base, int64_t c) {
  return BnDef{base + ".weight", base + ".bias", base + ".running_mean", base + ".running_var", c};
}
BnDef onnxBn(const std::string& base, int64_t c) {
  return BnDef{base + "_gamma", base + "_beta", base + "_running_mean", base + "_running_var", c};
}
ConvDef conv(std::string name, std::string weight, int64_t cin, int64_t cout, int64_t k, int64_t stride) {
  return ConvDef{std::move(name), std::move(weight), cin, cout, k, stride, k / 2};
}

}  // namespace

const std::vector<std::string>& knownArchs() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& a : kArchs) v.push_back(a.name);
    return v;
  }();
  return names;
}

bool isV2(const std::string& arch) {
  for (const auto& a : kArchs)
    if (arch == a.name) return a.v2;
  return false;
}

ResnetDef makeResnet(const std::string& arch, const std::string& v2Prefix) {
  const ArchInfo* info = nullptr;
  for (const auto& a : kArchs)
    if (arch == a.name) info = &a;
  if (!info) {
    std::string list;
    for (const auto& a : kArchs) list += std::string(list.empty() ? "" : ", ") + a.name;
    throw Error(ErrorCode::InvalidArgument, "unknown arch '" + arch + "'; expected one of " + list);
  }
  ResnetDef d;
  d.arch = arch;
  d.v2 = info->v2;
  const int64_t expansion = info->bottleneck ? 4 : 1;
  int64_t cin = 64;
  if (!d.v2) {
    d.stemConv = conv("conv1", "conv1.weight", 3, 64, 7, 2);
    d.stemBn = tvBn("bn1", 64);
    d.headTensors = {"fc.weight", "fc.bias"};
    d.ignoredSuffixes = {".num_batches_tracked"};
    for (int s = 0; s < 4; ++s) {
      StageDef st;
      st.tap = "layer" + std::to_string(s + 1);
      const int64_t planes = 64LL << s;
      const int64_t width = planes * info->widthFactor;
      const int64_t out = planes * expansion;
      for (int b = 0; b < info->blocks[s]; ++b) {
        const int64_t stride = (b == 0 && s > 0) ? 2 : 1;
        const std::string base = st.tap + "." + std::to_string(b) + ".";
        BlockDef blk;
        if (info->bottleneck) {
          blk.convs = {conv(base + "conv1", base + "conv1.weight", cin, width, 1, 1),
                       conv(base + "conv2", base + "conv2.weight", width, width, 3, stride),
                       conv(base + "conv3", base + "conv3.weight", width, out, 1, 1)};
          blk.bns = {tvBn(base + "bn1", width), tvBn(base + "bn2", width), tvBn(base + "bn3", out)};
        } else {
          blk.convs = {conv(base + "conv1", base + "conv1.weight", cin, out, 3, stride),
                       conv(base + "conv2", base + "conv2.weight", out, out, 3, 1)};
          blk.bns = {tvBn(base + "bn1", out), tvBn(base + "bn2", out)};
        }
        if (stride != 1 || cin != out) {
          blk.hasProj = true;
          blk.proj = conv(base + "downsample", base + "downsample.0.weight", cin, out, 1, stride);
          blk.projBn = tvBn(base + "downsample.1", out);
        }
        st.blocks.push_back(std::move(blk));
        cin = out;
      }
      st.outChannels = out;
      d.stages.push_back(std::move(st));
    }
    return d;
  }

  // ONNX Model Zoo (Gluon) ResNet v2: names follow Gluon's creation-order counters.
  const std::string& p = v2Prefix;
  d.prefix = p;
  d.dataBn = onnxBn(p + "batchnorm0", 3);
  d.stemConv = conv("conv0", p + "conv0_weight", 3, 64, 7, 2);
  d.stemBn = onnxBn(p + "batchnorm1", 64);
  d.headTensors = {p + "dense0_weight", p + "dense0_bias"};
  for (int s = 0; s < 4; ++s) {
    StageDef st;
    st.tap = "stage" + std::to_string(s + 1);
    const std::string sp = p + st.tap + "_";
    const int64_t out = (64LL << s) * expansion;
    const int64_t width = info->bottleneck ? out / 4 : out;
    int bnIdx = 0, convIdx = 0;
    auto nextBn = [&](int64_t c) { return onnxBn(sp + "batchnorm" + std::to_string(bnIdx++), c); };
    auto nextConv = [&](int64_t ci, int64_t co, int64_t k, int64_t stride) {
      std::string n = sp + "conv" + std::to_string(convIdx++);
      return conv(n, n + "_weight", ci, co, k, stride);
    };
    for (int b = 0; b < info->blocks[s]; ++b) {
      const int64_t stride = (b == 0 && s > 0) ? 2 : 1;
      BlockDef blk;
      if (info->bottleneck) {
        blk.bns.push_back(nextBn(cin));
        blk.convs.push_back(nextConv(cin, width, 1, 1));
        blk.bns.push_back(nextBn(width));
        blk.convs.push_back(nextConv(width, width, 3, stride));
        blk.bns.push_back(nextBn(width));
        blk.convs.push_back(nextConv(width, out, 1, 1));
      } else {
        blk.bns.push_back(nextBn(cin));
        blk.convs.push_back(nextConv(cin, out, 3, stride));
        blk.bns.push_back(nextBn(out));
        blk.convs.push_back(nextConv(out, out, 3, 1));
      }
      if (cin != out) {  // Gluon: downsample iff the channel count changes
        blk.hasProj = true;
        blk.proj = nextConv(cin, out, 1, stride);
      }
      st.blocks.push_back(std::move(blk));
      cin = out;
    }
    st.outChannels = out;
    d.stages.push_back(std::move(st));
  }
  d.finalBn = onnxBn(p + "batchnorm2", cin);
  return d;
}

void collectTensors(const BnDef& bn, std::vector<std::string>& out) {
  out.insert(out.end(), {bn.gamma, bn.beta, bn.mean, bn.var});
}

void collectTensors(const BlockDef& block, std::vector<std::string>& out) {
  for (const auto& c : block.convs) out.push_back(c.weight);
  for (const auto& b : block.bns) collectTensors(b, out);
  if (block.hasProj) {
    out.push_back(block.proj.weight);
    if (!block.projBn.gamma.empty()) collectTensors(block.projBn, out);
  }
}

}  // namespace anomalens::resnet
