// The threshold sweep behind every metric: the distinct scores in descending order, each with
// the number of positives and negatives scored exactly that value (and, for AUPRO, the sum
// of 1 / region size over its defect pixels).
//
// Two engines produce the same steps:
//  - bucket engine (float32, large inputs): pass 1 validates the input and histograms it by
//    the top 16 bits of each score's order-preserving key, per thread slot; buckets come out
//    in descending order with exact cumulative counts before each. Pass 2 ("resolve")
//    scatters the low 16 key bits of only the buckets the caller asks for into one uint16
//    array (positives and negatives apart); a resolved bucket is then split into its
//    distinct values by sorting or by a 65536-bin count. Unresolved buckets yield a single
//    aggregate step, which is exact for every metric whenever the bucket holds one class.
//  - sort engine (float64 scores, small inputs): one bucket, one std::sort.
#pragma once
#include <cstdint>
#include <vector>

#include "anomalens/metrics.h"

namespace anomalens::metrics_detail {

// One threshold. value is NaN for the aggregate step of an unresolved bucket.
struct Step {
  double value;
  uint64_t pos, neg;
  double weight;  // sum over the positives of 1 / (size of their region); 0 unless weighted
};

// Cumulative counts over all higher scores.
struct Cumulative {
  uint64_t tp = 0, fp = 0;
  double weight = 0;
};

struct Bucket {
  uint32_t id = 0;  // top 16 key bits (bucket engine)
  uint64_t pos = 0, neg = 0;
  double weight = 0;
  Cumulative before;  // counts of all higher buckets
  bool resolved = false;
  uint64_t posBegin = 0, negBegin = 0;  // offsets into the key arrays when resolved
};

// Per-thread working memory of steps(): counting bins and sort buffers.
struct SweepScratch {
  std::vector<uint32_t> countPos, countNeg;
  std::vector<double> countWeight;
  std::vector<std::pair<uint16_t, uint32_t>> weightedPos;
  std::vector<uint16_t> negKeys;
};

struct SweepOptions {
  bool weighted = false;  // label regions and carry 1 / region size (AUPRO)
  int engine = 0;         // 0 auto, 1 sort, 2 bucket
  int64_t countingMin = 4096;
};

class Sweep {
 public:
  // Validates every score and label, counts, labels regions when weighted (pass 1).
  Sweep(const ScoreSet& set, const SweepOptions& options);

  uint64_t positives() const { return positives_; }
  uint64_t negatives() const { return negatives_; }
  int64_t regions() const { return regions_; }
  double totalWeight() const { return totalWeight_; }

  // Non-empty buckets in descending score order.
  size_t numBuckets() const { return buckets_.size(); }
  const Bucket& bucket(size_t k) const { return buckets_[k]; }

  // Pass 2: makes steps() split bucket k into distinct values wherever need[k] is non-zero.
  void resolve(const std::vector<uint8_t>& need);

  // The steps of bucket k in descending score order, replacing the content of `out`.
  // Safe to call concurrently for different k with different scratch.
  void steps(size_t k, SweepScratch& scratch, std::vector<Step>& out) const;

 private:
  struct Unit {  // a contiguous element range inside one block; whole images when weighted
    size_t block;
    int64_t begin, end;
  };
  void buildUnits();
  void sortEngine();
  void bucketPass1();
  void bucketPass2();

  const ScoreSet& set_;
  SweepOptions options_;
  bool sortMode_ = false;
  std::vector<Unit> units_;
  std::vector<size_t> slotBegin_;        // units of slot s: [slotBegin_[s], slotBegin_[s + 1])
  std::vector<std::vector<uint64_t>> slotPos_, slotNeg_;  // per slot, per bucket id: counts, then offsets
  std::vector<uint8_t> imageHasDefects_;  // per unit when weighted
  std::vector<int32_t> bucketIndex_;      // bucket id -> k, or -1
  std::vector<Bucket> buckets_;
  std::vector<uint16_t> posKeys_, negKeys_;
  std::vector<uint32_t> posSizes_;
  std::vector<Step> sortedSteps_;  // sort engine
  uint64_t positives_ = 0, negatives_ = 0;
  int64_t regions_ = 0;
  double totalWeight_ = 0;
};

// Order-preserving key of a float: unsigned comparison of keys = numeric comparison of
// values, with -0.0 mapped onto +0.0. NaN and infinities are rejected before this is used.
inline uint32_t floatKey(uint32_t bits) {
  if ((bits & 0x7fffffffu) == 0) bits = 0;
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}
inline float keyFloat(uint32_t key) {
  uint32_t bits = (key & 0x80000000u) ? (key ^ 0x80000000u) : ~key;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

}  // namespace anomalens::metrics_detail
