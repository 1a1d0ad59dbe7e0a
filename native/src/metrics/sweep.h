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
#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "anomalens/metrics/metrics.h"

namespace anomalens::metrics_detail {

constexpr uint32_t kBucketCount = 1u << 16;  // buckets = top 16 bits of the key

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
  uint64_t posBegin = 0, negBegin = 0;  // offsets into the key array when resolved
};

// Per-thread working memory of forEachStep(): counting bins and sort buffers.
struct SweepScratch {
  std::vector<uint32_t> countPos, countNeg;
  std::vector<double> countWeight;
  std::vector<std::pair<uint16_t, uint32_t>> weightedPos;
  std::vector<uint16_t> posKeys, negKeys;
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

  // Pass 2: makes forEachStep() split bucket k into its distinct values wherever need[k] is
  // non-zero (call once; the other buckets stay one aggregate step).
  void resolve(const std::vector<uint8_t>& need);

  // Calls visit(const Step&) for the steps of bucket k in descending score order.
  // Safe to call concurrently for different k with different scratch.
  template <class Visit>
  void forEachStep(size_t k, SweepScratch& scratch, Visit&& visit) const;

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
  bool resolved_ = false;
  std::vector<Unit> units_;
  std::vector<size_t> slotBegin_;        // units of slot s: [slotBegin_[s], slotBegin_[s + 1])
  // Per slot, indexed by (bucket id << 1) | positive: counts after pass 1, then the slot's
  // write offsets into keys_ for pass 2.
  std::vector<std::vector<uint64_t>> slotCounts_;
  std::vector<uint8_t> imageHasDefects_;  // per unit when weighted
  std::vector<Bucket> buckets_;
  std::unique_ptr<uint16_t[]> keys_;      // low key halves: all resolved positives, then negatives
  std::unique_ptr<uint32_t[]> posSizes_;  // region size of each resolved positive (weighted)
  uint64_t keyCount_ = 0, posKeyCount_ = 0;
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

template <class Visit>
void Sweep::forEachStep(size_t k, SweepScratch& scratch, Visit&& visit) const {
  if (sortMode_) {
    for (const Step& s : sortedSteps_) visit(s);
    return;
  }
  const Bucket& b = buckets_[k];
  if (!b.resolved) {
    visit(Step{std::numeric_limits<double>::quiet_NaN(), b.pos, b.neg, b.weight});
    return;
  }
  const uint16_t* pk = keys_.get() + b.posBegin;
  const uint16_t* nk = keys_.get() + b.negBegin;
  const uint32_t* ps = options_.weighted ? posSizes_.get() + b.posBegin : nullptr;
  const uint32_t high = b.id << 16;
  auto value = [&](uint32_t low) { return static_cast<double>(keyFloat(high | low)); };

  if (static_cast<int64_t>(b.pos + b.neg) >= options_.countingMin) {
    // Counting: one bin per possible low half of the key, scanned from the top.
    if (scratch.countPos.size() != kBucketCount) {
      scratch.countPos.assign(kBucketCount, 0);
      scratch.countNeg.assign(kBucketCount, 0);
    }
    if (ps && scratch.countWeight.size() != kBucketCount) scratch.countWeight.assign(kBucketCount, 0.0);
    uint32_t lo = kBucketCount - 1, hi = 0;
    uint32_t* cp = scratch.countPos.data();
    uint32_t* cn = scratch.countNeg.data();
    double* cw = scratch.countWeight.data();
    for (uint64_t i = 0; i < b.pos; ++i) {
      const uint32_t key = pk[i];
      ++cp[key];
      if (ps) cw[key] += 1.0 / ps[i];
      lo = std::min(lo, key);
      hi = std::max(hi, key);
    }
    for (uint64_t i = 0; i < b.neg; ++i) {
      const uint32_t key = nk[i];
      ++cn[key];
      lo = std::min(lo, key);
      hi = std::max(hi, key);
    }
    for (int64_t key = hi; key >= static_cast<int64_t>(lo); --key) {
      if ((cp[key] | cn[key]) == 0) continue;
      visit(Step{value(static_cast<uint32_t>(key)), cp[key], cn[key], ps ? cw[key] : 0.0});
      cp[key] = cn[key] = 0;
      if (ps) cw[key] = 0.0;
    }
    return;
  }

  // Sorting: both classes descending, then one merge.
  std::vector<uint16_t>& neg = scratch.negKeys;
  neg.assign(nk, nk + b.neg);
  std::sort(neg.begin(), neg.end(), std::greater<uint16_t>());
  size_t j = 0;
  auto takeNeg = [&](uint32_t key) {
    uint64_t n = 0;
    for (; j < neg.size() && neg[j] == key; ++j) ++n;
    return n;
  };
  auto emitNegAbove = [&](uint32_t key) {  // negatives strictly above `key`, one step each value
    while (j < neg.size() && neg[j] > key) {
      const uint32_t v = neg[j];
      const uint64_t n = takeNeg(v);
      visit(Step{value(v), 0, n, 0.0});
    }
  };
  if (ps) {
    std::vector<std::pair<uint16_t, uint32_t>>& pos = scratch.weightedPos;
    pos.resize(b.pos);
    for (uint64_t i = 0; i < b.pos; ++i) pos[i] = {pk[i], ps[i]};
    std::sort(pos.begin(), pos.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
    for (size_t i = 0; i < pos.size();) {
      const uint32_t key = pos[i].first;
      emitNegAbove(key);
      Step s{value(key), 0, 0, 0.0};
      for (; i < pos.size() && pos[i].first == key; ++i) {
        ++s.pos;
        s.weight += 1.0 / pos[i].second;
      }
      s.neg = takeNeg(key);
      visit(s);
    }
  } else {
    std::vector<uint16_t>& pos = scratch.posKeys;
    pos.assign(pk, pk + b.pos);
    std::sort(pos.begin(), pos.end(), std::greater<uint16_t>());
    for (size_t i = 0; i < pos.size();) {
      const uint32_t key = pos[i];
      emitNegAbove(key);
      Step s{value(key), 0, 0, 0.0};
      for (; i < pos.size() && pos[i] == key; ++i) ++s.pos;
      s.neg = takeNeg(key);
      visit(s);
    }
  }
  emitNegAbove(0);
  if (j < neg.size()) visit(Step{value(0), 0, takeNeg(0), 0.0});
}

}  // namespace anomalens::metrics_detail
