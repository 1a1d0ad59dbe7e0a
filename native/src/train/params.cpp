#include "anomalens/train/params.h"

#include <algorithm>
#include <cstring>

#include "anomalens/core/error.h"

namespace anomalens::train {

Param::Param(std::string name, Shape shape, const float* value)
    : name_(std::move(name)), value_(shape), grad_(Tensor::zeros(shape)) {
  std::memcpy(value_.data(), value, static_cast<size_t>(value_.numel()) * sizeof(float));
}

float* Param::grad() {
  plain();
  return rawGrad();
}

float* Param::rawGrad() {
  hasGrad_ = true;
  return grad_.data();
}

void Param::zeroGrad() { std::fill(grad_.data(), grad_.data() + grad_.numel(), 0.f); }

const Tensor* Param::state(const std::string& key) const {
  plain();
  return rawState(key);
}

const Tensor* Param::rawState(const std::string& key) const {
  auto it = state_.find(key);
  return it == state_.end() ? nullptr : &it->second;
}

Tensor& Param::stateOrZeros(const std::string& key) {
  plain();
  return rawStateOrZeros(key);
}

Tensor& Param::rawStateOrZeros(const std::string& key) {
  auto it = state_.find(key);
  if (it == state_.end()) it = state_.emplace(key, Tensor::zeros(value_.shape())).first;
  return it->second;
}

void Param::setStorageLayout(std::shared_ptr<const StorageLayout> layout) {
  if (layout == layout_) return;
  auto convert = [&](Tensor& t) {
    Tensor plainT(t.shape()), out(t.shape());
    const float* src = t.data();
    if (layout_) layout_->toPlain(t.data(), plainT.data()), src = plainT.data();
    if (layout)
      layout->fromPlain(src, out.data());
    else
      std::memcpy(out.data(), src, static_cast<size_t>(t.numel()) * sizeof(float));
    t = std::move(out);
  };
  convert(value_);
  convert(grad_);
  for (auto& [k, t] : state_) convert(t);
  layout_ = std::move(layout);
}

void Param::setState(const std::string& key, const float* data) {
  Tensor& t = stateOrZeros(key);
  std::memcpy(t.data(), data, static_cast<size_t>(t.numel()) * sizeof(float));
}

std::vector<std::string> Param::stateKeys() const {
  std::vector<std::string> keys;
  for (const auto& [k, v] : state_) keys.push_back(k);
  return keys;
}

Param& ParamStore::add(const std::string& name, Shape shape, const float* value) {
  require(!name.empty(), "ParamStore.add: name must be a non-empty string");
  require(!has(name), "ParamStore.add: parameter '" + name + "' is already present");
  require(value != nullptr, "ParamStore.add: value of '" + name + "' is missing");
  numel(shape);  // validates the dims
  index_[name] = params_.size();
  params_.push_back(std::make_unique<Param>(name, std::move(shape), value));
  return *params_.back();
}

Param& ParamStore::at(const std::string& name) {
  auto it = index_.find(name);
  require(it != index_.end(), "unknown parameter '" + name + "'");
  return *params_[it->second];
}

const Param& ParamStore::at(const std::string& name) const { return const_cast<ParamStore*>(this)->at(name); }

std::vector<std::string> ParamStore::names() const {
  std::vector<std::string> out;
  for (const auto& p : params_) out.push_back(p->name());
  return out;
}

int64_t ParamStore::freeze(const std::string& prefix) {
  int64_t count = 0;
  for (auto& p : params_)
    if (p->name().compare(0, prefix.size(), prefix) == 0) p->setFrozen(true), ++count;
  return count;
}

int64_t ParamStore::unfreeze(const std::string& prefix) {
  int64_t count = 0;
  for (auto& p : params_)
    if (p->name().compare(0, prefix.size(), prefix) == 0) p->setFrozen(false), ++count;
  return count;
}

void ParamStore::zeroGrad() {
  for (auto& p : params_) p->zeroGrad();
}

}  // namespace anomalens::train
