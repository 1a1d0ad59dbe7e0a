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

class Param {
 public:
  Param(std::string name, Shape shape, const float* value);
  const std::string& name() const { return name_; }
  const Shape& shape() const { return value_.shape(); }
  int64_t numel() const { return value_.numel(); }
  float* value() { return value_.data(); }
  const float* value() const { return value_.data(); }
  // The gradient buffer (zeros until a backward writes it). Marks the parameter as having a
  // gradient: torch's optimisers skip a parameter whose .grad is None.
  float* grad();
  const float* gradData() const { return grad_.data(); }
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

 private:
  std::string name_;
  Tensor value_, grad_;
  bool hasGrad_ = false, frozen_ = false;
  std::map<std::string, Tensor> state_;
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
