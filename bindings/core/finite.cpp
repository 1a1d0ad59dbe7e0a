#include "core/finite.h"

#include <cmath>

#include "anomalens/core/finite.h"

namespace anomalens::bindings {

const std::vector<std::string> kRowColumn = {"row", "column"};
const std::vector<std::string> kImageChannelYX = {"image", "channel", "y", "x"};
const std::vector<std::string> kImageYX = {"image", "y", "x"};

bool FiniteCheck::check(const float* data, const Shape& shape, const std::string& name,
                        const std::vector<std::string>& dims) {
  const int64_t i = firstNonFinite(data, numel(shape));
  if (i < 0) return true;
  if (index_ < 0) {
    name_ = name;
    shape_ = shape;
    dims_ = dims;
    index_ = i;
    value_ = data[i];
  }
  return false;
}

void FiniteCheck::throwIfFound(Napi::Env env) const {
  if (index_ < 0) return;
  std::vector<int64_t> coord(shape_.size());
  int64_t rest = index_;
  for (size_t d = shape_.size(); d-- > 0;) {
    coord[d] = shape_[d] > 0 ? rest % shape_[d] : 0;
    rest = shape_[d] > 0 ? rest / shape_[d] : 0;
  }
  std::string where;
  for (size_t d = 0; d < coord.size(); ++d)
    where += (d ? ", " : "") + (d < dims_.size() ? dims_[d] : "dim" + std::to_string(d)) + " " + std::to_string(coord[d]);
  const std::string v = std::isnan(value_) ? "NaN" : (value_ > 0 ? "Infinity" : "-Infinity");
  throw Napi::RangeError::New(env, name_ + "[" + std::to_string(index_) + "] is " + v + " (" + where +
                                       "); all values must be finite");
}

}  // namespace anomalens::bindings
