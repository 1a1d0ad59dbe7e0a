// Reverse Distillation's trainable part (Deng & Li, CVPR 2022; the original code
// hq-deng/RD4AD): the one-class bottleneck (`BN_layer` of its resnet.py) and the student
// decoder (`de_resnet` of its de_resnet.py), with parameters and BN buffers under the original
// state-dict names, prefixed as its checkpoint {'bn': ..., 'decoder': ...} flattened:
// `bn.conv1.weight`, `bn.bn_layer.0.downsample.1.running_var`, `decoder.layer3.5.conv2.weight`.
//
// Bottleneck (e = block expansion: 1 basic, 4 bottleneck):
//   l1 = relu(bn2(conv2(relu(bn1(conv1(f1))))))   conv1 64e->128e, conv2 128e->256e, 3x3/2
//   l2 = relu(bn3(conv3(f2)))                      conv3 128e->256e, 3x3/2
//   out = bn_layer(cat[l1, l2, f3])                blocks of 512 planes, the first stride 2 with a
//                                                  1x1/2 conv + BN downsample from 768e channels
//   conv4 / bn4 are in the checkpoint and never run.
// Decoder: layer1 (256 planes), layer2 (128), layer3 (64), each doubling h and w in its first
// block through a 2x2/2 transposed conv (conv2 of a bottleneck block, conv1 of a basic block)
// and an `upsample` shortcut (transposed conv + BN). Outputs finest first: [layer3, layer2,
// layer1], pairing with the teacher's layer1, layer2, layer3.
//
// Inputs are [n, 64e, 8h, 8w], [n, 128e, 4h, 4w], [n, 256e, 2h, 2w] (the teacher taps of an
// image of 32h x 32w); outputs have the same shapes. Not thread-safe.
//
// Example:
//   RdStudent rd(RdConfig::forTeacher("wide_resnet50_2"));
//   ... rd.params() / rd.buffers() filled by name
//   auto outs = rd.forward({f1, f2, f3}, n, {s1, s2, s3}, true);   // BN in training mode
//   ... loss gradients g0, g1, g2 of outs[0..2]
//   rd.backward({g0, g1, g2});
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "anomalens/core/tensor.h"
#include "anomalens/train/params.h"

namespace anomalens::train {

struct RdConfig {
  bool bottleneck = true;             // Bottleneck (expansion 4) or BasicBlock (1)
  int64_t widthPerGroup = 64;         // 128 for wide_resnet50_2 (bottleneck and decoder alike)
  int64_t bnBlocks = 3;               // blocks of the bottleneck's residual stage
  std::vector<int64_t> decoderBlocks{3, 4, 6};  // layer1 (deepest) .. layer3 (finest)
  int64_t expansion() const { return bottleneck ? 4 : 1; }
  // The original's pairing of teacher and student: resnet18 (basic, 2, [2, 2, 2]), resnet34
  // (basic, 3, [3, 4, 6]), resnet50 / resnet50_v2 (bottleneck, 3, [3, 4, 6]), wide_resnet50_2
  // (bottleneck, width 128, 3, [3, 4, 6]). Throws InvalidArgument for another name.
  static RdConfig forTeacher(const std::string& arch);
};

class RdStudent {
 public:
  explicit RdStudent(const RdConfig& config);
  ~RdStudent();
  const RdConfig& config() const { return config_; }
  // Conv weights and BN weight / bias ("bn.*" then "decoder.*", torch's registration order
  // within each); conv4 / bn4 included (they get no gradient, as in torch).
  ParamStore& params() { return *params_; }
  const std::shared_ptr<ParamStore>& sharedParams() const { return params_; }
  // BN running_mean / running_var (frozen entries).
  ParamStore& buffers() { return *buffers_; }
  const std::shared_ptr<ParamStore>& sharedBuffers() const { return buffers_; }
  // Channels of teacher tap i (0..2): 64e, 128e, 256e.
  int64_t tapChannels(int i) const;

  // f[i]: [n, tapChannels(i), h[i], w[i]]; h[0] = 2 h[1] = 4 h[2], h[2] even (likewise w).
  // bnTrain: BN in training mode (running statistics updated). record: keep the activations
  // for backward(). Returns the three decoder outputs, finest first, shaped as the inputs.
  std::vector<Tensor> forward(const std::vector<const float*>& f, int64_t n, const std::vector<int64_t>& h,
                              const std::vector<int64_t>& w, bool bnTrain, bool record);
  // The gradients of the last recorded forward's outputs (finest first); writes the parameter
  // gradients (overwriting) and releases the kept activations.
  void backward(const std::vector<const float*>& grads);
  void release();
  int64_t keptFloats() const;
  // The output shapes of the last recorded forward while its activations are kept; else empty.
  std::vector<Shape> outputShapes() const;
  // Whether the decoder's activations stay in oneDNN's blocked layout (nChw16c, the default:
  // no per-op reorders, oneDNN's fast batch norm) or run NCHW; the outputs are NCHW either way
  // and agree to float rounding. Drops kept activations.
  void setBlockedActivations(bool on);

 private:
  struct Impl;
  RdConfig config_;
  std::shared_ptr<ParamStore> params_, buffers_;
  std::unique_ptr<Impl> impl_;
};

// The whole training step of the original main.py on one batch of teacher features:
// forward (BN in training mode), loss = sum over the scales of the mean over the batch of
// 1 - cos(flattened teacher map, flattened student map), backward, Adam step over every
// parameter. Returns the loss and writes the per-scale losses to `scaleLosses` (3) when not
// null. `adam` as torch.optim.Adam.
// `seconds` (4, when not null): wall seconds of the student forward, the loss, the backward and
// the Adam step.
// `pixelLoss`: the paper's per-pixel loss (loss_pixel_cosine.h) instead of the original code's
// whole-map loss_function.
struct AdamOptions;
double rdTrainStep(RdStudent& rd, const std::vector<const float*>& f, int64_t n, const std::vector<int64_t>& h,
                   const std::vector<int64_t>& w, const AdamOptions& adam, double* scaleLosses,
                   double* seconds = nullptr, bool pixelLoss = false);

}  // namespace anomalens::train
