// 8-connected components of a binary mask, for AUPRO's regions (MVTec AD labels ground
// truth with scipy.ndimage.label and a 3x3 structuring element of ones: 8-connectivity).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace anomalens::metrics_detail {

// Two-pass union-find labelling. Reused across images by one thread: its buffers grow to the
// largest image seen (4 bytes per pixel plus 8 per provisional label).
class ComponentLabeler {
 public:
  // Labels the pixels of the h x w mask whose value is > threshold. Returns the number of
  // regions. Afterwards regionSize(p) is the size of the region of foreground pixel p
  // (meaningless for background pixels, whose labels are never written; bounds-checked so
  // that a mask modified by another thread meanwhile cannot make it read out of range).
  int64_t label(const uint8_t* mask, int64_t h, int64_t w, int threshold);
  uint32_t regionSize(int64_t p) const {
    const size_t l = static_cast<size_t>(labels_[static_cast<size_t>(p)]);
    return l < sizes_.size() ? sizes_[l] : 1u;
  }

 private:
  int32_t find(int32_t x);
  std::vector<int32_t> labels_;   // per foreground pixel: provisional, then final region index
  std::vector<int32_t> parent_;   // union-find over provisional labels
  std::vector<int32_t> compact_;  // provisional root -> final index
  std::vector<uint32_t> sizes_;   // final index -> pixel count
};

}  // namespace anomalens::metrics_detail
