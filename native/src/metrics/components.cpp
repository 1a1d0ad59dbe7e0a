#include "metrics/components.h"

#include <algorithm>
#include <cstring>

#include "anomalens/core/error.h"

namespace anomalens::metrics_detail {

int32_t ComponentLabeler::find(int32_t x) {
  while (parent_[x] != x) {
    parent_[x] = parent_[parent_[x]];  // path halving
    x = parent_[x];
  }
  return x;
}

namespace {

// Index of the first pixel in [x, w) with value > thr, or w. Masks are mostly background,
// so with thr == 0 whole 8-byte words of zeros are skipped at once.
inline int64_t nextForeground(const uint8_t* m, int64_t x, int64_t w, uint8_t thr) {
  if (thr == 0) {
    while (x + 8 <= w) {
      uint64_t word;
      std::memcpy(&word, m + x, 8);
      if (word != 0) break;
      x += 8;
    }
  }
  while (x < w && m[x] <= thr) ++x;
  return x;
}

}  // namespace

int64_t ComponentLabeler::label(const uint8_t* mask, int64_t h, int64_t w, int threshold) {
  require(h * w < INT32_MAX, "an image of " + std::to_string(h) + " x " + std::to_string(w) +
                                 " pixels is too large to label (at most 2^31 - 1 pixels)");
  const size_t count = static_cast<size_t>(h * w);
  if (labels_.size() < count) labels_.resize(count);
  parent_.clear();
  sizes_.clear();
  int32_t* lab = labels_.data();
  const uint8_t thr = static_cast<uint8_t>(threshold);

  // Pass 1: provisional labels for foreground pixels only (background entries of labels_
  // are never read); the visited neighbours of (y, x) under 8-connectivity are W, NW, N, NE.
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* m = mask + y * w;
    const uint8_t* mu = y > 0 ? m - w : nullptr;
    int32_t* row = lab + y * w;
    const int32_t* up = y > 0 ? row - w : nullptr;
    for (int64_t x = nextForeground(m, 0, w, thr); x < w; x = nextForeground(m, x + 1, w, thr)) {
      int32_t l = -1;
      auto join = [&](int32_t other) {
        int32_t r = find(other);
        if (l < 0) {
          l = r;
        } else if (r != l) {
          int32_t lo = std::min(l, r), hi = std::max(l, r);
          parent_[hi] = lo;
          l = lo;
        }
      };
      if (x > 0 && m[x - 1] > thr) join(row[x - 1]);
      if (mu) {
        if (x > 0 && mu[x - 1] > thr) join(up[x - 1]);
        if (mu[x] > thr) join(up[x]);
        if (x + 1 < w && mu[x + 1] > thr) join(up[x + 1]);
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
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* m = mask + y * w;
    int32_t* row = lab + y * w;
    for (int64_t x = nextForeground(m, 0, w, thr); x < w; x = nextForeground(m, x + 1, w, thr)) {
      int32_t r = find(row[x]);
      if (compact_[r] < 0) {
        compact_[r] = static_cast<int32_t>(sizes_.size());
        sizes_.push_back(0);
      }
      row[x] = compact_[r];
      ++sizes_[compact_[r]];
    }
  }
  return static_cast<int64_t>(sizes_.size());
}

}  // namespace anomalens::metrics_detail
