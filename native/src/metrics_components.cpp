#include "metrics_components.h"

#include <algorithm>

#include "anomalens/error.h"

namespace anomalens::metrics_detail {

int32_t ComponentLabeler::find(int32_t x) {
  while (parent_[x] != x) {
    parent_[x] = parent_[parent_[x]];  // path halving
    x = parent_[x];
  }
  return x;
}

int64_t ComponentLabeler::label(const uint8_t* mask, int64_t h, int64_t w, int threshold) {
  require(h * w < INT32_MAX, "an image of " + std::to_string(h) + " x " + std::to_string(w) +
                                 " pixels is too large to label (at most 2^31 - 1 pixels)");
  const size_t count = static_cast<size_t>(h * w);
  if (labels_.size() < count) labels_.resize(count);
  parent_.clear();
  int32_t* lab = labels_.data();
  const uint8_t thr = static_cast<uint8_t>(threshold);

  // Pass 1: provisional labels; the already visited neighbours of (y, x) under
  // 8-connectivity are W, NW, N and NE.
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* m = mask + y * w;
    int32_t* row = lab + y * w;
    const int32_t* up = y > 0 ? row - w : nullptr;
    for (int64_t x = 0; x < w; ++x) {
      if (m[x] <= thr) {
        row[x] = -1;
        continue;
      }
      int32_t l = -1;
      auto join = [&](int32_t other) {
        if (other < 0) return;
        int32_t r = find(other);
        if (l < 0) {
          l = r;
        } else if (r != l) {
          int32_t lo = std::min(l, r), hi = std::max(l, r);
          parent_[hi] = lo;
          l = lo;
        }
      };
      if (x > 0) join(row[x - 1]);
      if (up) {
        if (x > 0) join(up[x - 1]);
        join(up[x]);
        if (x + 1 < w) join(up[x + 1]);
      }
      if (l < 0) {
        l = static_cast<int32_t>(parent_.size());
        parent_.push_back(l);
      }
      row[x] = l;
    }
  }
  if (parent_.empty()) return 0;

  // Pass 2: compact roots to 0..regions-1 and count pixels.
  compact_.assign(parent_.size(), -1);
  sizes_.clear();
  for (size_t p = 0; p < count; ++p) {
    if (lab[p] < 0) continue;
    int32_t r = find(lab[p]);
    if (compact_[r] < 0) {
      compact_[r] = static_cast<int32_t>(sizes_.size());
      sizes_.push_back(0);
    }
    lab[p] = compact_[r];
    ++sizes_[compact_[r]];
  }
  return static_cast<int64_t>(sizes_.size());
}

}  // namespace anomalens::metrics_detail
