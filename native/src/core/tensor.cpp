#include "anomalens/core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>

#include "anomalens/core/error.h"

namespace anomalens {

int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    require(d >= 0, "tensor dimension must be >= 0, received " + shapeString(shape));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      throw Error(ErrorCode::InvalidArgument, "tensor shape overflows: " + shapeString(shape));
    n *= d;
  }
  return n;
}

std::string shapeString(const Shape& shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

Tensor::Tensor(Shape shape) : shape_(std::move(shape)) {
  size_t bytes = static_cast<size_t>(anomalens::numel(shape_)) * sizeof(float);
  size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw Error(ErrorCode::Internal, "out of memory allocating " + std::to_string(bytes) +
                                               " bytes for tensor " + shapeString(shape_));
  storage_ = std::shared_ptr<float>(static_cast<float*>(p), [](float* q) { std::free(q); });
}

Tensor Tensor::zeros(Shape shape) {
  Tensor t(std::move(shape));
  std::memset(t.data(), 0, static_cast<size_t>(t.numel()) * sizeof(float));
  return t;
}

Tensor Tensor::reshaped(Shape shape) const {
  require(anomalens::numel(shape) == numel(),
          "cannot reshape " + shapeString(shape_) + " to " + shapeString(shape));
  Tensor t;
  t.shape_ = std::move(shape);
  t.storage_ = storage_;
  return t;
}

}  // namespace anomalens
