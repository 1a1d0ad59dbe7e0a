// The ResNet as a device-neutral graph: a list of ops in execution order, each reading and
// writing numbered values, with the parameters the ops use. No oneDNN, no CUDA, no Node: a
// plan (the oneDNN inference plan in onednn_plan.h today; a training plan or a cuDNN plan
// later, each in a file of its own) takes a graph and decides layouts, buffers and kernels.
//
// Values: value 0 is the graph input [n, 3, h, w] (float32 NCHW, normalised); every op
// writes one new value, read by later ops (values are never overwritten in the graph; a plan
// may reuse buffers). Value numbers are ids, not op positions: after folding, some ids are
// no longer written by any op. A value's shape follows from the input shape (valueShapes).
//
// BatchNorm is kept as an op of its own when the graph is built (buildResnetGraph), with its
// four statistics, so that a training plan can run it in training mode. Inference folds it
// into the preceding convolution as a separate step (foldBatchNorms in weights.h) and fuses
// residual additions into the last convolution of a block (fuseResidualAdds below).
//
// Ownership: the graph owns its parameters (Tensors). Copying a graph shares the tensors'
// storage (Tensor is a shared handle); the transformations below allocate new tensors for
// what they change, so the graph they were given stays valid.
//
// Example: resnet18, input [2, 3, 64, 64], as built (unfolded):
//   ops[0] Conv2d    "conv1"        input 0 -> 1   convs[0]: cin 3, cout 64, k 7, stride 2, pad 3
//   ops[1] BatchNorm "bn1"          1 -> 2 relu    bns[0]: c 64
//   ops[2] MaxPool   "maxpool"      2 -> 3         k 3, stride 2, pad 1      taps[0] "stem" = 3
//   ops[3] Conv2d    "layer1.0.conv1"  3 -> 4
//   ops[4] BatchNorm "layer1.0.bn1"    4 -> 5 relu
//   ops[5] Conv2d    "layer1.0.conv2"  5 -> 6
//   ops[6] BatchNorm "layer1.0.bn2"    6 -> 7
//   ops[7] Add       "layer1.0 add"    7 + 3 -> 8 relu   (input: main path, input2: shortcut)
// After foldBatchNorms + fuseResidualAdds (what the oneDNN inference plan runs):
//   Conv2d "conv1" 0 -> 2 relu (bias = the folded BN's shift), MaxPool 2 -> 3,
//   Conv2d "layer1.0.conv1" 3 -> 5 relu,
//   Conv2d "layer1.0.conv2" 5 (+ input2 3) -> 8 relu: value 8 = relu(conv(5) + bias + value 3).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "anomalens/core/tensor.h"
#include "anomalens/io/safetensors.h"
#include "anomalens/nn/resnet_spec.h"

namespace anomalens::nn {

// A 2-D convolution, PyTorch semantics: out = floor((in + 2 pad - k) / stride) + 1 per axis.
struct Conv2dParams {
  std::string name;        // layer name for messages and profiles, e.g. "layer1.0.conv1"
  std::string weightName;  // its tensor in the weights file, e.g. "layer1.0.conv1.weight"
  int64_t cin = 0, cout = 0, k = 1, stride = 1, pad = 0;
  Tensor weight;  // [cout, cin, k, k], plain OIHW float32
  Tensor bias;    // [cout], or empty: no bias (torchvision ResNets before folding)
};

// An inference / training batch-norm over channels: (x - mean) / sqrt(var + eps) * gamma + beta.
struct BatchNormParams {
  std::string name;     // e.g. "layer1.0.bn1", "batchnorm0 (data)"
  std::string varName;  // the running_var tensor's name, for messages
  int64_t c = 0;
  float eps = 1e-5f;
  Tensor gamma, beta, mean, var;  // [c] each
};

enum class OpKind {
  Conv2d,         // convs[param]; + value input2 when input2 >= 0 (a fused residual), then ReLU if relu
  BatchNorm,      // bns[param], then ReLU if relu
  Add,            // input + input2, then ReLU if relu
  MaxPool,        // k x k window, stride, padding pad (padded cells never win): nn.MaxPool2d
  GlobalAvgPool,  // mean over h, w: [n, c, h, w] -> [n, c, 1, 1]
};

const char* opKindName(OpKind kind);

struct Op {
  OpKind kind = OpKind::Conv2d;
  std::string name;  // for profiles and messages
  int input = 0;     // value read
  int input2 = -1;   // Add: second operand; Conv2d: fused residual (added before ReLU); else -1
  int output = 0;    // value written
  bool relu = false;
  int param = -1;    // index into convs (Conv2d) or bns (BatchNorm)
  int64_t k = 0, stride = 1, pad = 0;  // MaxPool
};

// A point where features can be read: the value after the stem, after each stage, after the
// global pool.
struct GraphTap {
  std::string name;  // "stem", "layer1".."layer4" (v2: "stage1".."stage4"), "avgpool"
  int value = 0;
  int64_t channels = 0;
};

struct ResnetGraph {
  std::string arch;
  int values = 1;  // number of values, the input included
  std::vector<Op> ops;  // in execution order; an op reads only values written before it
  std::vector<Conv2dParams> convs;
  std::vector<BatchNormParams> bns;
  std::vector<GraphTap> taps;  // the taps the weights cover, in forward order (a prefix of all)
};

// Builds the unfolded graph of `def` from `file`, which validateWeights (weights.h) has
// checked: the stem, the first `stages` stages, and the final BN (v2) + global pool when
// `avgpool`. Every BN is a BatchNorm op; every residual sum an Add op.
ResnetGraph buildResnetGraph(const resnet::ResnetDef& def, const SafetensorsFile& file, int stages, bool avgpool);

// Fuses every Add whose first operand is written by a Conv2d without ReLU or residual, read by
// nothing else, into that convolution (input2 = the Add's second operand, relu = the Add's).
// The result computes the same function; plans may then write the sum in place.
ResnetGraph fuseResidualAdds(ResnetGraph graph);

// Shape of every value for an input of shape [n, 3, h, w] (index = value). Throws
// Error(InvalidArgument) naming the op when the input is too small for it.
std::vector<Shape> valueShapes(const ResnetGraph& graph, const Shape& input);

// The index of the op that writes `value` (-1 for the input).
int producerOf(const ResnetGraph& graph, int value);

// The rewrite both foldBatchNorms and fuseResidualAdds are: every op of `kind` whose input is
// written by the op just before it, a Conv2d without ReLU or residual whose output nothing else
// reads, is merged into that convolution by `merge(conv, op)` and removed; the convolution
// then writes the op's output value.
ResnetGraph mergeIntoPrecedingConv(ResnetGraph graph, OpKind kind,
                                   const std::function<void(ResnetGraph&, Op& conv, const Op& op)>& merge);

}  // namespace anomalens::nn
