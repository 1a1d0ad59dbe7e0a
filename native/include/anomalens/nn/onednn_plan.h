// The oneDNN inference plan: runs a ResnetGraph (resnet_graph.h) on the CPU with oneDNN's
// forward_inference primitives.
//
// A plan is built per (input shape, requested taps, thread count) and cached: a list of
// primitives over a handful of reusable activation buffers ("slots"). Convolutions take their
// source in whatever layout the previous op produced (blocked, e.g. nChw16c) and choose their
// own destination layout; a convolution with a fused residual (Op::input2) writes the sum in
// place into the shortcut's buffer, so a block costs exactly its convolutions; activations are
// reordered to NCHW only at the requested taps; the pass stops after the deepest one.
//
// This plan only infers. It wants a graph with BN folded and residuals fused
// (foldBatchNorms, fuseResidualAdds) and refuses an unfused Add; unfolded BatchNorm ops run
// as oneDNN inference batch-norms. A training plan (forward_training + backward) or a cuDNN
// plan is another file taking the same graph.
//
//   OneDnnPlan plan(fuseResidualAdds(foldBatchNorms(graph)));
//   auto out = plan.run(TensorView{x, {2, 3, 224, 224}}, {1, 2}, nullptr);  // graph.taps[1], [2]
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "anomalens/core/tensor.h"
#include "anomalens/nn/backbone.h"
#include "anomalens/nn/resnet_graph.h"

namespace anomalens::nn {

class OneDnnPlan {
 public:
  // Takes the graph (its parameters are shared, not copied). Throws Error(Internal) when
  // oneDNN cannot start.
  explicit OneDnnPlan(ResnetGraph graph);
  ~OneDnnPlan();
  OneDnnPlan(const OneDnnPlan&) = delete;
  OneDnnPlan& operator=(const OneDnnPlan&) = delete;

  const ResnetGraph& graph() const;

  // Runs the graph on `input` ([n, 3, h, w], float32 NCHW) and returns one NCHW tensor per
  // requested tap (indices into graph().taps, distinct), keyed by tap name. Thread-safe: calls
  // are serialised. With `profile`, every step is timed on its own and reported there.
  std::map<std::string, Tensor> run(const TensorView& input, const std::vector<int>& taps,
                                    std::vector<LayerProfile>* profile);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace anomalens::nn
