// ResNet feature extraction on the CPU through oneDNN: the facade over three parts,
//   weights.h       which tensors a file must hold, batch-norm folding;
//   resnet_graph.h  the ResNet as a device-neutral list of ops with their parameters;
//   onednn_plan.h   the oneDNN inference plan that runs a graph.
//
// Inference only: batch-norm folded into the convolutions, ReLU and residual additions fused
// as post-ops, oneDNN's blocked layout kept from layer to layer; activations are reordered to
// NCHW only at the requested taps. The forward pass stops after the deepest requested tap.
//
//   auto bb = Backbone::load("wide_resnet50_2", "wrn50.safetensors");
//   auto out = bb->extract(TensorView{input, {8, 3, 256, 256}}, {"layer2", "layer3"});
//   // out["layer2"] is [8, 512, 32, 32], out["layer3"] is [8, 1024, 16, 16]
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "anomalens/core/tensor.h"

namespace anomalens {

struct LayerProfile {
  std::string name;  // e.g. "layer2.0.conv2"
  std::string impl;  // oneDNN implementation, e.g. "jit:avx512_core"
  double ms = 0;     // wall time of this step in the profiled run
  double gflop = 0;  // work of this step (convolutions only)
};

class Backbone {
 public:
  virtual ~Backbone() = default;

  // Loads `weightsPath` (safetensors) for `arch`. Missing, unexpected or mis-shaped tensors
  // throw Error(WeightsMismatch) naming them; a file may hold only the first stages, and the
  // backbone then offers taps up to the last complete stage.
  static std::unique_ptr<Backbone> load(const std::string& arch, const std::string& weightsPath);

  virtual const std::string& arch() const = 0;
  // Every tap of the architecture in forward order: stem, layer1..4 (v2: stage1..4), avgpool.
  virtual std::vector<std::string> taps() const = 0;
  // Taps the loaded weights can produce (a prefix of taps()).
  virtual std::vector<std::string> availableTaps() const = 0;
  // Channels of a tap's output.
  virtual int64_t tapChannels(const std::string& tap) const = 0;
  // Output shape of `tap` for an input of shape [n, 3, h, w].
  virtual Shape tapShape(const std::string& tap, const Shape& input) const = 0;

  // Runs the forward pass on `input` ([n, 3, h, w], float32 NCHW, already normalised) and
  // returns one NCHW tensor per requested tap. Thread-safe (calls are serialised).
  // When `profile` is non-null, each step is timed separately and reported there.
  virtual std::map<std::string, Tensor> extract(const TensorView& input, const std::vector<std::string>& taps,
                                                std::vector<LayerProfile>* profile = nullptr) = 0;
};

}  // namespace anomalens
