#include "metrics_sweep.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "anomalens/error.h"
#include "metrics_components.h"

namespace anomalens::metrics_detail {
namespace {

constexpr uint32_t kBuckets = 1u << 16;
// Elements per unit of work when no image structure is needed: large enough to amortise
// scheduling, small enough to balance two threads on inputs of a few million.
constexpr int64_t kChunk = 1 << 18;
// Below this many elements the sort engine is faster than zeroing and merging histograms.
constexpr int64_t kSortEngineMax = 1 << 16;

inline uint32_t floatBits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

inline bool badLabel(uint8_t v, bool strict) { return strict && v != 0 && v != 1 && v != 255; }

std::string formatNumber(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  return std::to_string(v);
}

// "maps[3][1234] (image 2, row 4, col 210)"
std::string where(const ScoreBlock& b, int64_t i, bool label) {
  std::string s = (label ? b.labelsName : b.name) + "[" + std::to_string(i) + "]";
  if (b.n > 1 || b.h > 1) {
    int64_t hw = b.h * b.w;
    s += " (";
    if (b.n > 1) s += "image " + std::to_string(i / hw) + ", ";
    s += "row " + std::to_string((i % hw) / b.w) + ", col " + std::to_string(i % b.w) + ")";
  }
  return s;
}

// The first invalid element found by one slot (slots cover the input in order).
struct Problem {
  bool found = false;
  size_t block = 0;
  int64_t index = 0;
  bool label = false;
  double score = 0;
  int labelValue = 0;
};

[[noreturn]] void throwProblem(const ScoreSet& set, const Problem& p) {
  const ScoreBlock& b = set.blocks[p.block];
  if (p.label)
    throw Error(ErrorCode::InvalidArgument,
                where(b, p.index, true) + " is " + std::to_string(p.labelValue) +
                    "; labels and masks must be binary (0, 1 or 255), or set maskThreshold to "
                    "binarise them at value > maskThreshold");
  throw Error(ErrorCode::InvalidArgument,
              where(b, p.index, false) + " is " + formatNumber(p.score) + "; scores must be finite");
}

}  // namespace

Sweep::Sweep(const ScoreSet& set, const SweepOptions& options) : set_(set), options_(options) {
  require(!set.blocks.empty(), "no scores to evaluate");
  require(set.labelThreshold >= 0 && set.labelThreshold <= 254,
          "maskThreshold must be an integer in [0, 254], received " + std::to_string(set.labelThreshold));
  require(!set.strictLabels || set.labelThreshold == 0, "strict labels binarise at > 0");
  const bool wide = set.blocks[0].scores64 != nullptr;
  int64_t total = 0;
  for (const ScoreBlock& b : set.blocks) {
    require(b.n >= 0 && b.h >= 0 && b.w >= 0, b.name + " has a negative dimension");
    require((b.scores64 != nullptr) == wide && (b.scores32 != nullptr) != wide,
            "all score blocks must be float32 or all float64");
    require(b.labels != nullptr || b.n * b.h * b.w == 0, b.labelsName + " is missing");
    total += b.n * b.h * b.w;
  }
  require(total > 0, "no scores to evaluate: the inputs are empty");
  sortMode_ = wide || options.engine == 1 || (options.engine == 0 && total < kSortEngineMax);
  require(!wide || options.engine != 2, "the bucket engine needs float32 scores");
  if (sortMode_) {
    sortEngine();
  } else {
    buildUnits();
    bucketPass1();
  }
}

void Sweep::sortEngine() {
  struct Item {
    double value;
    uint32_t size;  // region size for weighted positives
    uint8_t positive;
  };
  std::vector<Item> items;
  ComponentLabeler labeler;
  const int thr = set_.labelThreshold;
  for (size_t bi = 0; bi < set_.blocks.size(); ++bi) {
    const ScoreBlock& b = set_.blocks[bi];
    const int64_t hw = b.h * b.w;
    for (int64_t img = 0; img < b.n; ++img) {
      const int64_t begin = img * hw;
      if (options_.weighted && hw > 0) regions_ += labeler.label(b.labels + begin, b.h, b.w, thr);
      for (int64_t i = begin; i < begin + hw; ++i) {
        double v = b.scores64 ? b.scores64[i] : static_cast<double>(b.scores32[i]);
        uint8_t lv = b.labels[i];
        if (!std::isfinite(v)) throwProblem(set_, Problem{true, bi, i, false, v, 0});
        if (badLabel(lv, set_.strictLabels)) throwProblem(set_, Problem{true, bi, i, true, 0, lv});
        bool pos = lv > thr;
        uint32_t size = pos && options_.weighted ? labeler.regionSize(i - begin) : 0;
        items.push_back(Item{v == 0 ? 0.0 : v, size, static_cast<uint8_t>(pos)});
      }
    }
  }
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.value > b.value; });
  Bucket all;
  for (size_t i = 0; i < items.size();) {
    Step s{items[i].value, 0, 0, 0};
    for (; i < items.size() && items[i].value == s.value; ++i) {
      if (items[i].positive) {
        ++s.pos;
        if (options_.weighted) s.weight += 1.0 / items[i].size;
      } else {
        ++s.neg;
      }
    }
    all.pos += s.pos;
    all.neg += s.neg;
    all.weight += s.weight;
    sortedSteps_.push_back(s);
  }
  all.resolved = true;
  buckets_.push_back(all);
  positives_ = all.pos;
  negatives_ = all.neg;
  totalWeight_ = all.weight;
}

void Sweep::buildUnits() {
  for (size_t bi = 0; bi < set_.blocks.size(); ++bi) {
    const ScoreBlock& b = set_.blocks[bi];
    const int64_t hw = b.h * b.w, count = b.n * hw;
    if (count == 0) continue;
    if (options_.weighted) {
      for (int64_t img = 0; img < b.n; ++img) units_.push_back(Unit{bi, img * hw, (img + 1) * hw});
    } else {
      for (int64_t s = 0; s < count; s += kChunk) units_.push_back(Unit{bi, s, std::min(count, s + kChunk)});
    }
  }
  // Slots of about equal element counts, in input order.
  int64_t total = 0;
  for (const Unit& u : units_) total += u.end - u.begin;
  const size_t slots = std::max<size_t>(1, std::min<size_t>(units_.size(), static_cast<size_t>(omp_get_max_threads())));
  slotBegin_.assign(1, 0);
  int64_t done = 0;
  for (size_t u = 0; u < units_.size(); ++u) {
    done += units_[u].end - units_[u].begin;
    if (slotBegin_.size() < slots && done * static_cast<int64_t>(slots) >= total * static_cast<int64_t>(slotBegin_.size()))
      slotBegin_.push_back(u + 1);
  }
  while (slotBegin_.size() <= slots) slotBegin_.push_back(units_.size());
  slotBegin_.back() = units_.size();
}

void Sweep::bucketPass1() {
  const size_t slots = slotBegin_.size() - 1;
  slotPos_.assign(slots, {});
  slotNeg_.assign(slots, {});
  std::vector<std::vector<double>> slotWeight(slots);
  std::vector<Problem> problems(slots);
  std::vector<int64_t> slotRegions(slots, 0);
  imageHasDefects_.assign(options_.weighted ? units_.size() : 0, 0);
  const int thr = set_.labelThreshold;
  const bool strict = set_.strictLabels, weighted = options_.weighted;

#pragma omp parallel for schedule(dynamic, 1)
  for (size_t s = 0; s < slots; ++s) {
    std::vector<uint64_t>& pos = slotPos_[s];
    std::vector<uint64_t>& neg = slotNeg_[s];
    pos.assign(kBuckets, 0);
    neg.assign(kBuckets, 0);
    if (weighted) slotWeight[s].assign(kBuckets, 0.0);
    double* wsum = weighted ? slotWeight[s].data() : nullptr;
    ComponentLabeler labeler;
    Problem& problem = problems[s];
    for (size_t u = slotBegin_[s]; u < slotBegin_[s + 1] && !problem.found; ++u) {
      const Unit& unit = units_[u];
      const ScoreBlock& b = set_.blocks[unit.block];
      const float* sc = b.scores32;
      const uint8_t* lb = b.labels;
      if (weighted) {
        int64_t r = labeler.label(lb + unit.begin, b.h, b.w, thr);
        slotRegions[s] += r;
        imageHasDefects_[u] = r > 0;
      }
      for (int64_t i = unit.begin; i < unit.end; ++i) {
        const uint32_t bits = floatBits(sc[i]);
        const uint8_t lv = lb[i];
        if ((bits & 0x7f800000u) == 0x7f800000u || badLabel(lv, strict)) {
          bool scoreBad = (bits & 0x7f800000u) == 0x7f800000u;
          problem = Problem{true, unit.block, i, !scoreBad, static_cast<double>(sc[i]), lv};
          break;
        }
        const uint32_t id = floatKey(bits) >> 16;
        if (lv > thr) {
          ++pos[id];
          if (weighted) wsum[id] += 1.0 / labeler.regionSize(i - unit.begin);
        } else {
          ++neg[id];
        }
      }
    }
  }
  for (const Problem& p : problems)
    if (p.found) throwProblem(set_, p);

  bucketIndex_.assign(kBuckets, -1);
  Cumulative c;
  for (int64_t id = kBuckets - 1; id >= 0; --id) {
    Bucket b;
    b.id = static_cast<uint32_t>(id);
    for (size_t s = 0; s < slots; ++s) {
      b.pos += slotPos_[s][id];
      b.neg += slotNeg_[s][id];
      if (weighted) b.weight += slotWeight[s][id];
    }
    if (b.pos + b.neg == 0) continue;
    b.before = c;
    c.tp += b.pos;
    c.fp += b.neg;
    c.weight += b.weight;
    bucketIndex_[id] = static_cast<int32_t>(buckets_.size());
    buckets_.push_back(b);
  }
  positives_ = c.tp;
  negatives_ = c.fp;
  totalWeight_ = c.weight;
  for (int64_t r : slotRegions) regions_ += r;
}

void Sweep::resolve(const std::vector<uint8_t>& need) {
  if (sortMode_) return;  // the one bucket is always resolved
  require(posKeys_.empty() && negKeys_.empty(), "Sweep::resolve called twice", ErrorCode::Internal);
  uint64_t posTotal = 0, negTotal = 0;
  bool any = false;
  for (size_t k = 0; k < buckets_.size(); ++k) {
    Bucket& b = buckets_[k];
    b.resolved = k < need.size() && need[k];
    if (!b.resolved) continue;
    any = true;
    b.posBegin = posTotal;
    b.negBegin = negTotal;
    posTotal += b.pos;
    negTotal += b.neg;
  }
  if (!any) return;
  posKeys_.resize(posTotal);
  negKeys_.resize(negTotal);
  if (options_.weighted) posSizes_.resize(posTotal);
  // Slot histograms become each slot's write offsets inside every resolved bucket.
  const size_t slots = slotBegin_.size() - 1;
  for (const Bucket& b : buckets_) {
    if (!b.resolved) continue;
    uint64_t p = b.posBegin, n = b.negBegin;
    for (size_t s = 0; s < slots; ++s) {
      uint64_t cp = slotPos_[s][b.id], cn = slotNeg_[s][b.id];
      slotPos_[s][b.id] = p;
      slotNeg_[s][b.id] = n;
      p += cp;
      n += cn;
    }
  }
  bucketPass2();
}

void Sweep::bucketPass2() {
  const size_t slots = slotBegin_.size() - 1;
  std::vector<uint8_t> resolvedById(kBuckets, 0);
  for (const Bucket& b : buckets_) resolvedById[b.id] = b.resolved;
  const int thr = set_.labelThreshold;
  const bool weighted = options_.weighted;
  uint16_t* posKeys = posKeys_.data();
  uint16_t* negKeys = negKeys_.data();
  uint32_t* posSizes = posSizes_.data();

#pragma omp parallel for schedule(dynamic, 1)
  for (size_t s = 0; s < slots; ++s) {
    uint64_t* posAt = slotPos_[s].data();
    uint64_t* negAt = slotNeg_[s].data();
    ComponentLabeler labeler;
    for (size_t u = slotBegin_[s]; u < slotBegin_[s + 1]; ++u) {
      const Unit& unit = units_[u];
      const ScoreBlock& b = set_.blocks[unit.block];
      const float* sc = b.scores32;
      const uint8_t* lb = b.labels;
      const bool sized = weighted && imageHasDefects_[u];
      if (sized) labeler.label(lb + unit.begin, b.h, b.w, thr);
      for (int64_t i = unit.begin; i < unit.end; ++i) {
        const uint32_t key = floatKey(floatBits(sc[i]));
        const uint32_t id = key >> 16;
        if (!resolvedById[id]) continue;
        if (lb[i] > thr) {
          uint64_t at = posAt[id]++;
          posKeys[at] = static_cast<uint16_t>(key);
          if (weighted) posSizes[at] = labeler.regionSize(i - unit.begin);
        } else {
          negKeys[negAt[id]++] = static_cast<uint16_t>(key);
        }
      }
    }
  }
}

void Sweep::steps(size_t k, SweepScratch& scratch, std::vector<Step>& out) const {
  out.clear();
  if (sortMode_) {
    out = sortedSteps_;
    return;
  }
  const Bucket& b = buckets_[k];
  if (!b.resolved) {
    out.push_back(Step{std::numeric_limits<double>::quiet_NaN(), b.pos, b.neg, b.weight});
    return;
  }
  const uint16_t* pk = posKeys_.data() + b.posBegin;
  const uint16_t* nk = negKeys_.data() + b.negBegin;
  const uint32_t* ps = options_.weighted ? posSizes_.data() + b.posBegin : nullptr;
  const uint32_t high = b.id << 16;
  auto value = [&](uint32_t low) { return static_cast<double>(keyFloat(high | low)); };

  if (static_cast<int64_t>(b.pos + b.neg) >= options_.countingMin) {
    // Counting: one bin per possible low half of the key, scanned from the top.
    if (scratch.countPos.size() != kBuckets) {
      scratch.countPos.assign(kBuckets, 0);
      scratch.countNeg.assign(kBuckets, 0);
    }
    if (ps && scratch.countWeight.size() != kBuckets) scratch.countWeight.assign(kBuckets, 0.0);
    uint32_t lo = kBuckets - 1, hi = 0;
    uint32_t* cp = scratch.countPos.data();
    uint32_t* cn = scratch.countNeg.data();
    double* cw = scratch.countWeight.data();
    for (uint64_t i = 0; i < b.pos; ++i) {
      uint32_t key = pk[i];
      ++cp[key];
      if (ps) cw[key] += 1.0 / ps[i];
      lo = std::min(lo, key);
      hi = std::max(hi, key);
    }
    for (uint64_t i = 0; i < b.neg; ++i) {
      uint32_t key = nk[i];
      ++cn[key];
      lo = std::min(lo, key);
      hi = std::max(hi, key);
    }
    for (int64_t key = hi; key >= static_cast<int64_t>(lo); --key) {
      if ((cp[key] | cn[key]) == 0) continue;
      out.push_back(Step{value(static_cast<uint32_t>(key)), cp[key], cn[key], ps ? cw[key] : 0.0});
      cp[key] = cn[key] = 0;
      if (ps) cw[key] = 0.0;
    }
    return;
  }

  // Sorting: both classes descending, then one merge.
  std::vector<std::pair<uint16_t, uint32_t>>& pos = scratch.weightedPos;
  pos.resize(b.pos);
  for (uint64_t i = 0; i < b.pos; ++i) pos[i] = {pk[i], ps ? ps[i] : 0u};
  std::sort(pos.begin(), pos.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
  std::vector<uint16_t>& negSorted = scratch.negKeys;
  negSorted.assign(nk, nk + b.neg);
  std::sort(negSorted.begin(), negSorted.end(), std::greater<uint16_t>());
  size_t i = 0, j = 0;
  while (i < pos.size() || j < negSorted.size()) {
    uint32_t key = 0;
    if (i < pos.size()) key = pos[i].first;
    if (j < negSorted.size()) key = std::max<uint32_t>(key, negSorted[j]);
    Step s{value(key), 0, 0, 0.0};
    for (; i < pos.size() && pos[i].first == key; ++i) {
      ++s.pos;
      if (ps) s.weight += 1.0 / pos[i].second;
    }
    for (; j < negSorted.size() && negSorted[j] == key; ++j) ++s.neg;
    out.push_back(s);
  }
}

}  // namespace anomalens::metrics_detail
