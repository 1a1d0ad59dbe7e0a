// float32 tensors of the native core: NCHW, contiguous, 64-byte aligned.
//
// Tensor owns its storage through a shared_ptr so that bindings can hand the very same
// memory to JavaScript as an external ArrayBuffer (no copy): the finalizer of that buffer
// keeps a reference to the storage alive until the garbage collector releases it.
// TensorView is the non-owning counterpart used for inputs (e.g. a Float32Array's data).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace anomalens {

using Shape = std::vector<int64_t>;

// Number of elements of a shape; throws InvalidArgument on negative or overflowing dims.
int64_t numel(const Shape& shape);
// "[n, c, h, w]" for messages.
std::string shapeString(const Shape& shape);

struct TensorView {
  const float* data = nullptr;
  Shape shape;
  int64_t numel() const { return anomalens::numel(shape); }
};

class Tensor {
 public:
  Tensor() = default;
  // Allocates uninitialised storage for `shape` (64-byte aligned).
  explicit Tensor(Shape shape);
  // Allocates and fills with zeros.
  static Tensor zeros(Shape shape);

  float* data() { return storage_.get(); }
  const float* data() const { return storage_.get(); }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return anomalens::numel(shape_); }
  int64_t dim(size_t i) const { return shape_.at(i); }
  size_t rank() const { return shape_.size(); }
  bool empty() const { return !storage_; }
  TensorView view() const { return TensorView{storage_.get(), shape_}; }
  // The storage handle, for bindings that must keep the memory alive.
  const std::shared_ptr<float>& storage() const { return storage_; }
  // Same storage, new shape with the same number of elements.
  Tensor reshaped(Shape shape) const;

 private:
  Shape shape_;
  std::shared_ptr<float> storage_;
};

}  // namespace anomalens
