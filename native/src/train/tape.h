// A small autograd tape over the training ops, for networks written as straight-line code
// (the Reverse Distillation bottleneck and decoder). Each op runs its forward at once and, when
// recording, keeps exactly what its backward reads (conv / transposed-conv / BN inputs, BN
// batch statistics, ReLU outputs); finish() drops every other intermediate. backward() walks the
// nodes in reverse, accumulating the gradient of a value used twice (a block's input feeds its
// branch and its shortcut), and writes parameter gradients into the ParamStore (overwriting).
//
// Parameters are found by name: conv(x, "layer1.0.conv1") reads "layer1.0.conv1.weight";
// bn(x, "layer1.0.bn1") reads ".weight" / ".bias" and the buffers ".running_mean" /
// ".running_var". Not thread-safe: one forward/backward at a time.
#pragma once
#include <string>
#include <vector>

#include "anomalens/core/tensor.h"
#include "anomalens/train/ops.h"
#include "anomalens/train/params.h"

namespace anomalens::train {

class Tape {
 public:
  Tape(ParamStore& params, ParamStore& buffers, float eps = 1e-5f) : params_(params), buffers_(buffers), eps_(eps) {}

  // Starts a forward; `record`: keep what a backward needs.
  void begin(bool record);
  // A value from outside (copied), a constant: no gradient flows into it (the RD inputs are
  // teacher features).
  int input(const float* x, Shape shape);
  const Tensor& value(int id) const { return vals_.at(static_cast<size_t>(id)); }

  int conv(int x, const std::string& module, int64_t stride, int64_t pad);
  // 2x2-style transposed convolution with PyTorch's [in, out, kh, kw] weight, no padding.
  int convTranspose(int x, const std::string& module, int64_t stride);
  // relu: max(bn(x), 0) in the same pass (its backward reads the output, kept).
  int bn(int x, const std::string& module, bool train, bool relu = false);
  int relu(int x);
  // relu: max(a + b, 0) in the same pass (its backward reads the output, kept).
  int add(int a, int b, bool relu = false);
  int concat(const std::vector<int>& xs);
  // x in NCHW (x itself when it already is): a recorded reorder (its backward the inverse).
  int plain(int x);
  // The layout of a value: NCHW, or oneDNN's blocked nChw16c (ops.h's Layout), which the
  // convolutions' and batch norms' outputs with channels divisible by 16 get while
  // blockedActivations is on (the default): no reorders in and out of each oneDNN call, and
  // oneDNN's fast batch norm. Inputs and concatenations are NCHW; plain() gives NCHW.
  Layout layout(int id) const { return layouts_.at(static_cast<size_t>(id)); }
  // Off: every value NCHW (the results agree to float rounding). Set it between forwards: ops
  // read it as they run (RdStudent::setBlockedActivations releases the tape first).
  void setBlockedActivations(bool on) { blocked_ = on; }

  // Ends the forward: keeps the values a backward reads and `outputs`; drops the rest.
  void finish(const std::vector<int>& outputs);
  // Seeds the gradients of `outputs` (each the size of its value) and back-propagates into the
  // parameters' gradients. Releases everything kept.
  void backward(const std::vector<int>& outputs, const std::vector<const float*>& grads);
  void release();
  // Floats held (values and BN statistics) for memory accounting and tests.
  int64_t keptFloats() const;
  bool recording() const { return record_; }

 private:
  enum class Kind { Conv, ConvT, Bn, Relu, Add, Concat, Reorder };
  struct Node {
    Kind kind = Kind::Conv;
    std::vector<int> in;
    int out = -1;
    Param* weight = nullptr;  // conv, transposed conv; BN gamma
    Param* beta = nullptr;
    Conv2dShape cs;
    ConvTranspose2dShape ts;
    bool bnTrain = false;
    bool relu = false;  // BN or add with ReLU fused on its output
    const float* frozenMean = nullptr;
    const float* frozenVar = nullptr;
    Tensor saveMean, saveVar;
    std::vector<int64_t> parts;  // concat: channels of each input
    Layout layout = Layout::Nchw;  // BN's data; a reorder's output
    Layout from = Layout::Nchw;    // a reorder's input
  };
  int push(Tensor t, Node node, bool grad, Layout layout = Layout::Nchw);
  int toLayout(int x, Layout to);
  Layout outLayout(int64_t channels) const {
    return blocked_ && channels % 16 == 0 ? Layout::Blocked16 : Layout::Nchw;
  }
  void addGrad(int id, Tensor g);
  void backwardNode(const Node& nd);

  ParamStore& params_;
  ParamStore& buffers_;
  float eps_;
  bool record_ = false;
  bool blocked_ = true;
  std::vector<Layout> layouts_;
  std::vector<Tensor> vals_, grads_;
  std::vector<bool> needsGrad_;
  std::vector<Node> nodes_;
};

}  // namespace anomalens::train
