// Trainable parameters by their state-dict names (`layer3.0.conv1.weight`, ...): each holds
// its value, its gradient and its optimiser state, so that checkpoints move between PyTorch
// and anomalens by name. Freezing is by name prefix ("layer1." freezes every tensor of
// layer1; "" freezes everything). A frozen parameter has no gradient, is skipped by the
// optimisers and by clipGradNorm, exactly as a torch parameter with requires_grad = False.
//
// Example:
//   ParamStore ps;
//   ps.add("fc.weight", {10, 512}, w);
//   ps.freeze("layer1.");
//   Param& p = ps.at("fc.weight");  p.grad() ... written by a backward
//   sgdStep(ps, {0.01, 0.9, 0, 5e-5});
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "anomalens/core/tensor.h"

namespace anomalens::train {

// How a parameter's value, gradient and states are stored. Plain (no layout): the shape's
// row-major order, which every accessor of Param gives. A convolution may switch a weight's
// storage to the blocked layout its oneDNN kernels read (ops.h, the Param overloads), so that
// its forward, its backward and the optimiser step (element-wise) run without reordering the
// weights at each call; a plain accessor switches the storage back (one reorder), the raw ones
// do not. A layout holds exactly numel() floats (no padding).
class StorageLayout {
 public:
  virtual ~StorageLayout() = default;
  virtual void toPlain(const float* stored, float* plain) const = 0;
  virtual void fromPlain(const float* plain, float* stored) const = 0;
};

class Param {
 public:
  Param(std::string name, Shape shape, const float* value);
  const std::string& name() const { return name_; }
  const Shape& shape() const { return value_.shape(); }
  int64_t numel() const { return value_.numel(); }
  float* value() {
    plain();
    return value_.data();
  }
  const float* value() const {
    plain();
    return value_.data();
  }
  // The gradient buffer (zeros until a backward writes it). Marks the parameter as having a
  // gradient: torch's optimisers skip a parameter whose .grad is None.
  float* grad();
  const float* gradData() const {
    plain();
    return grad_.data();
  }
  bool hasGrad() const { return hasGrad_; }
  bool frozen() const { return frozen_; }
  void setFrozen(bool f) { frozen_ = f; }
  void zeroGrad();
  // Optimiser state by torch's names: "momentum_buffer" (SGD), "exp_avg", "exp_avg_sq" (Adam).
  // Absent until the first step that creates it.
  const Tensor* state(const std::string& key) const;
  Tensor& stateOrZeros(const std::string& key);
  bool hasState(const std::string& key) const { return state_.count(key) != 0; }
  void setState(const std::string& key, const float* data);
  std::vector<std::string> stateKeys() const;
  // Adam's step count (torch keeps it per parameter as state['step']).
  double step = 0;

  // The storage as it is (in storageLayout(); every tensor of the parameter shares it), for
  // element-wise code (optimisers, clipping, EWC) and the convolutions. rawGrad() marks the
  // parameter as having a gradient, as grad() does; new states start at zero in any layout.
  float* rawValue() { return value_.data(); }
  float* rawGrad();
  const float* rawGradData() const { return grad_.data(); }
  const Tensor* rawState(const std::string& key) const;
  Tensor& rawStateOrZeros(const std::string& key);
  // Null: plain.
  const std::shared_ptr<const StorageLayout>& storageLayout() const { return layout_; }
  // Converts the value, the gradient and every state to `layout` (null: plain).
  void setStorageLayout(std::shared_ptr<const StorageLayout> layout);

 private:
  void plain() const {
    if (layout_) const_cast<Param*>(this)->setStorageLayout(nullptr);
  }
  std::string name_;
  Tensor value_, grad_;
  bool hasGrad_ = false, frozen_ = false;
  std::map<std::string, Tensor> state_;
  std::shared_ptr<const StorageLayout> layout_;
};

class ParamStore {
 public:
  // Adds a parameter, copying `value` (numel(shape) floats). Throws InvalidArgument when the
  // name is empty or already present.
  Param& add(const std::string& name, Shape shape, const float* value);
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  // Throws InvalidArgument naming the parameter when it is absent.
  Param& at(const std::string& name);
  const Param& at(const std::string& name) const;
  // Names in insertion order (torch's named_parameters() order when added in that order).
  std::vector<std::string> names() const;
  size_t size() const { return params_.size(); }
  Param& operator[](size_t i) { return *params_[i]; }
  const Param& operator[](size_t i) const { return *params_[i]; }
  // Freezes / unfreezes every parameter whose name starts with `prefix`; returns how many.
  int64_t freeze(const std::string& prefix);
  int64_t unfreeze(const std::string& prefix);
  void zeroGrad();

 private:
  std::vector<std::unique_ptr<Param>> params_;
  std::map<std::string, size_t> index_;
};

}  // namespace anomalens::train
