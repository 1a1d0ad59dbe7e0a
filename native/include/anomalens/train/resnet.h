// A trainable ResNet built from the training ops: torchvision's (resnet18/34/50/101/152,
// wide_resnet50_2/101_2; `layer3.0.conv1.weight`, `layer3.0.bn1.running_var`, ...) and the ONNX
// Model Zoo v2 (resnet18_v2 ... resnet152_v2, pre-activation; `resnetv24_stage3_conv0_weight`,
// ...), parameters and BN buffers by their state-dict / initializer names.
//
// forward() runs the image (or a tap's output: the constant-prefix cache) up to `lastTap` and
// keeps, from the first unit (stem or block) that holds a trainable parameter on, exactly the
// activations the backward needs; the frozen prefix runs forward-only and keeps nothing.
// backward() takes the gradient of the last tap's output and writes the gradients of the
// trainable parameters (overwriting them). BN runs either in training mode (batch statistics,
// running statistics updated as torch) or frozen (running statistics), for the whole network,
// as torch's model.train() / model.eval().
//
// Not thread-safe: one forward/backward at a time (the binding keeps a busy state).
//
// Example (PANDA: layer3 and layer4 train, BN frozen):
//   TrainableResnet net("resnet18", "layer4");
//   ... net.params().at(name).value() / net.buffers() filled from a weights file
//   net.params().freeze("conv1."); net.params().freeze("bn1."); net.params().freeze("layer1.");
//   net.params().freeze("layer2.");
//   Tensor f = net.forward(x, n, 224, 224, false);   // [n, 512, 7, 7]
//   net.backward(dF);                                 // grads of layer3.* and layer4.*
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "anomalens/core/tensor.h"
#include "anomalens/train/ops.h"
#include "anomalens/train/params.h"

namespace anomalens::resnet {
struct ResnetDef;
}

namespace anomalens::train {

class TrainableResnet {
 public:
  // arch: an arch name of resnet_spec; lastTap: "layer1" .. "layer4" ("stage1" .. "stage4" for
  // v2, whose names start with v2Prefix, e.g. "resnetv24_"). Parameters start at zero, BN
  // weights and running variances at one (fill them by name). Throws InvalidArgument for an
  // unknown arch or tap. v2's final BN (before the classifier's pooling) is not part of a tap.
  TrainableResnet(const std::string& arch, const std::string& lastTap, const std::string& v2Prefix = "");
  ~TrainableResnet();

  // Conv weights and BN weight/bias, in torch's named_parameters() order (no classifier).
  ParamStore& params() { return *params_; }
  const std::shared_ptr<ParamStore>& sharedParams() const { return params_; }
  // BN running_mean / running_var (frozen entries: never touched by the optimisers).
  ParamStore& buffers() { return *buffers_; }
  // The taps this network can start from / end at, in order: "input", "layer1", ...
  std::vector<std::string> taps() const;
  // Channels and spatial size of `tap`'s output for an h x w image.
  Shape tapShape(const std::string& tap, int64_t n, int64_t h, int64_t w) const;

  // x: [n, c, h, w], the image (startTap "input", c = 3) or startTap's output. bnTrain: BN in
  // training mode (running statistics are updated, momentum 0.1). Returns lastTap's output.
  Tensor forward(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, bool bnTrain,
                 const std::string& startTap = "input");
  // dOut: the gradient of the last forward's output (its shape). Releases the kept activations.
  void backward(const float* dOut);
  // The shape of the last forward's output while its activations are kept; {0} otherwise.
  Shape outputShape() const;
  // Drops the kept activations without a backward.
  void release();
  // Whether activations with channels divisible by 16 are kept in oneDNN's blocked layout
  // (nChw16c) from the first stage on (the default: no per-op reorders, oneDNN's fast batch
  // norm); off runs every op on NCHW. The results agree to float rounding. Drops kept
  // activations.
  void setBlockedActivations(bool on);
  // Seconds spent per "<stage> <op> forward|backward" (e.g. "layer3 conv backward") since the
  // last resetProfile(): where a step's time goes.
  std::map<std::string, double> profile() const;
  void resetProfile();
  // Floats held for the backward after the last forward (for memory accounting and tests).
  int64_t keptFloats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::shared_ptr<ParamStore> params_, buffers_;
};

}  // namespace anomalens::train
