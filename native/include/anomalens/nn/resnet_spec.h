// Structural description of the supported ResNets and the tensor names each expects.
// Two naming families: torchvision/timm state dicts (`layer2.0.downsample.1.running_var`)
// and ONNX Model Zoo ResNet v2 initializers (`resnetv24_stage2_conv3_weight`).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace anomalens::resnet {

struct ConvDef {
  std::string name;    // layer name for messages/profiles, e.g. "layer1.0.conv1"
  std::string weight;  // tensor name of the [cout, cin, k, k] weight
  int64_t cin = 0, cout = 0, k = 1, stride = 1, pad = 0;
};

struct BnDef {
  std::string gamma, beta, mean, var;  // tensor names, each [c]
  int64_t c = 0;
};

// v1 (torchvision): out = relu(bn_last(conv_last(...)) + shortcut), bns[i] follows convs[i].
// v2 (pre-activation): p = relu(bns[0](x)); convs[i] is followed by bns[i + 1] (+ relu)
// except the last conv; out = conv_last(...) + shortcut, shortcut = proj(p) or x.
struct BlockDef {
  std::vector<ConvDef> convs;
  std::vector<BnDef> bns;
  bool hasProj = false;
  ConvDef proj;
  BnDef projBn;  // v1 only
};

struct StageDef {
  std::string tap;  // "layer1" or "stage1"
  std::vector<BlockDef> blocks;
  int64_t outChannels = 0;
};

struct ResnetDef {
  std::string arch;
  bool v2 = false;
  std::string prefix;  // v2 initializer prefix, e.g. "resnetv24_"
  float eps = 1e-5f;
  BnDef dataBn;        // v2: affine-free data BN on the input
  ConvDef stemConv;
  BnDef stemBn;
  std::vector<StageDef> stages;
  BnDef finalBn;       // v2: BN + ReLU before the global pool
  std::vector<std::string> headTensors;  // classifier tensors: allowed, not used
  std::vector<std::string> ignoredSuffixes;  // e.g. "num_batches_tracked"
};

// Architectures: resnet18/34/50/101/152, wide_resnet50_2, wide_resnet101_2 (torchvision
// names) and resnet18_v2/34_v2/50_v2/101_v2/152_v2 (ONNX Model Zoo names, `prefix` such as
// "resnetv24_"). Throws Error(InvalidArgument) for an unknown arch.
ResnetDef makeResnet(const std::string& arch, const std::string& v2Prefix);
const std::vector<std::string>& knownArchs();
bool isV2(const std::string& arch);

// Names of every tensor of a BN / conv / block / stage, for presence checks.
void collectTensors(const BnDef& bn, std::vector<std::string>& out);
void collectTensors(const BlockDef& block, std::vector<std::string>& out);

}  // namespace anomalens::resnet
