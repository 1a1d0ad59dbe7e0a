#include "metrics/sweep.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "anomalens/core/error.h"
#include "metrics/components.h"

namespace anomalens::metrics_detail {
namespace {

constexpr uint32_t kBuckets = kBucketCount;
// Elements per unit of work when no image structure is needed: large enough to amortise
// scheduling, small enough to balance two threads on inputs of a few million.
constexpr int64_t kChunk = 1 << 18;
// Below this many elements the sort engine is faster than zeroing and merging histograms.
constexpr int64_t kSortEngineMax = 1 << 16;
constexpr int kSlotsPerThread = 4;

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
  int64_t total = 0;
  for (const ScoreBlock& b : set_.blocks) total += b.n * b.h * b.w;
  items.reserve(static_cast<size_t>(total));
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
  // A few slots per thread, scheduled dynamically, so that a thread the OS descheduled does
  // not hold the others up; each slot costs ~1 MB of counts that live until the end.
  const size_t perThread = static_cast<size_t>(std::max(1, kSlotsPerThread));
  const size_t slots = std::max<size_t>(
      1, std::min<size_t>(units_.size(), perThread * static_cast<size_t>(omp_get_max_threads())));
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

namespace {

// Pass 1 over one unit: histogram of (bucket id << 1 | positive) into `sub`, four interleaved
// uint32 copies (element i counts in copy i % 4) so that runs of equal buckets, the rule in
// smooth anomaly maps, do not serialise on one counter. Returns whether an invalid score or
// label is in the unit (the caller then finds the first one).
template <bool Weighted, bool Strict>
bool histogramUnit(const float* sc, const uint8_t* lb, int64_t begin, int64_t end, uint8_t thr, uint32_t* sub,
                   double* wsum, const ComponentLabeler& labeler) {
  uint32_t bad = 0;
  int64_t i = begin;
  auto one = [&](int64_t at, uint32_t* copy) {
    const uint32_t bits = floatBits(sc[at]);
    const uint8_t lv = lb[at];
    bad |= (bits & 0x7f800000u) == 0x7f800000u;
    if (Strict) bad |= static_cast<uint8_t>(lv - 2) < 253;
    const uint32_t id = floatKey(bits) >> 16;
    const uint32_t pos = lv > thr;
    ++copy[(id << 1) | pos];
    if (Weighted && pos) wsum[id] += 1.0 / labeler.regionSize(at - begin);
  };
  constexpr size_t kCopy = 2 * kBuckets;
  for (; i + 4 <= end; i += 4) {
    one(i, sub);
    one(i + 1, sub + kCopy);
    one(i + 2, sub + 2 * kCopy);
    one(i + 3, sub + 3 * kCopy);
  }
  for (; i < end; ++i) one(i, sub);
  return bad != 0;
}

// Pass 2 over one unit: appends the low key half of every element of a resolved bucket at
// its slot's offset. The offset of the current (bucket, class) stays in a register while
// consecutive elements share it.
// Writes are bounds-checked against the arrays (posCount = positives in keys, total = all):
// if the caller modified the input since pass 1, results are wrong (and detected after the
// pass) but memory is never written out of range.
template <bool Weighted>
void scatterUnit(const float* sc, const uint8_t* lb, int64_t begin, int64_t end, uint8_t thr, const uint8_t* resolved,
                 uint64_t* offsets, uint16_t* keys, uint64_t total, uint32_t* sizes, uint64_t posCount,
                 const ComponentLabeler& labeler) {
  uint32_t cur = UINT32_MAX;
  uint64_t at = 0;
  for (int64_t i = begin; i < end; ++i) {
    const uint32_t key = floatKey(floatBits(sc[i]));
    const uint32_t id = key >> 16;
    if (!resolved[id]) continue;
    const uint32_t pos = lb[i] > thr;
    const uint32_t code = (id << 1) | pos;
    if (code != cur) {
      if (cur != UINT32_MAX) offsets[cur] = at;
      cur = code;
      at = offsets[code];
    }
    if (at < total) keys[at] = static_cast<uint16_t>(key);
    if (Weighted && pos && at < posCount) sizes[at] = labeler.regionSize(i - begin);
    ++at;
  }
  if (cur != UINT32_MAX) offsets[cur] = at;
}

}  // namespace

void Sweep::bucketPass1() {
  const size_t slots = slotBegin_.size() - 1;
  slotCounts_.assign(slots, {});
  std::vector<std::vector<double>> slotWeight(slots);
  std::vector<Problem> problems(slots);
  std::vector<int64_t> slotRegions(slots, 0);
  imageHasDefects_.assign(options_.weighted ? units_.size() : 0, 0);
  const uint8_t thr = static_cast<uint8_t>(set_.labelThreshold);
  const bool strict = set_.strictLabels, weighted = options_.weighted;
  auto histogram = weighted ? (strict ? histogramUnit<true, true> : histogramUnit<true, false>)
                            : (strict ? histogramUnit<false, true> : histogramUnit<false, false>);

#pragma omp parallel for schedule(dynamic, 1)
  for (size_t s = 0; s < slots; ++s) {
    std::vector<uint64_t>& counts = slotCounts_[s];
    counts.assign(2 * kBuckets, 0);
    std::vector<uint32_t> sub(8 * kBuckets, 0);
    if (weighted) slotWeight[s].assign(kBuckets, 0.0);
    ComponentLabeler labeler;
    int64_t pending = 0;  // elements counted in `sub` since its last flush
    auto flush = [&] {
      for (size_t c = 0; c < 2 * kBuckets; ++c) {
        counts[c] += static_cast<uint64_t>(sub[c]) + sub[c + 2 * kBuckets] + sub[c + 4 * kBuckets] + sub[c + 6 * kBuckets];
      }
      std::fill(sub.begin(), sub.end(), 0u);
      pending = 0;
    };
    for (size_t u = slotBegin_[s]; u < slotBegin_[s + 1]; ++u) {
      const Unit& unit = units_[u];
      const ScoreBlock& b = set_.blocks[unit.block];
      // No uint32 copy can overflow while `sub` holds fewer than 2^32 elements in all.
      if (pending + (unit.end - unit.begin) >= (int64_t{1} << 32)) flush();
      pending += unit.end - unit.begin;
      if (weighted) {
        int64_t r = labeler.label(b.labels + unit.begin, b.h, b.w, thr);
        slotRegions[s] += r;
        imageHasDefects_[u] = r > 0;
      }
      if (histogram(b.scores32, b.labels, unit.begin, unit.end, thr, sub.data(),
                    weighted ? slotWeight[s].data() : nullptr, labeler)) {
        for (int64_t i = unit.begin; i < unit.end; ++i) {
          const uint32_t bits = floatBits(b.scores32[i]);
          const bool scoreBad = (bits & 0x7f800000u) == 0x7f800000u;
          if (scoreBad || badLabel(b.labels[i], strict)) {
            problems[s] = Problem{true, unit.block, i, !scoreBad, static_cast<double>(b.scores32[i]), b.labels[i]};
            break;
          }
        }
        break;
      }
    }
    flush();
  }
  for (const Problem& p : problems)
    if (p.found) throwProblem(set_, p);

  Cumulative c;
  for (int64_t id = kBuckets - 1; id >= 0; --id) {
    Bucket b;
    b.id = static_cast<uint32_t>(id);
    for (size_t s = 0; s < slots; ++s) {
      b.pos += slotCounts_[s][2 * id + 1];
      b.neg += slotCounts_[s][2 * id];
      if (weighted) b.weight += slotWeight[s][id];
    }
    if (b.pos + b.neg == 0) continue;
    b.before = c;
    c.tp += b.pos;
    c.fp += b.neg;
    c.weight += b.weight;
    buckets_.push_back(b);
  }
  positives_ = c.tp;
  negatives_ = c.fp;
  totalWeight_ = c.weight;
  for (int64_t r : slotRegions) regions_ += r;
}

void Sweep::resolve(const std::vector<uint8_t>& need) {
  if (sortMode_) return;  // the one bucket is always resolved
  require(!resolved_, "Sweep::resolve called twice", ErrorCode::Internal);
  resolved_ = true;
  uint64_t posTotal = 0, negTotal = 0;
  for (size_t k = 0; k < buckets_.size(); ++k) {
    Bucket& b = buckets_[k];
    b.resolved = k < need.size() && need[k];
    if (!b.resolved) continue;
    b.posBegin = posTotal;
    b.negBegin = negTotal;
    posTotal += b.pos;
    negTotal += b.neg;
  }
  if (posTotal + negTotal == 0) return;
  // Uninitialised on purpose: pass 2 writes every element.
  keys_.reset(new uint16_t[posTotal + negTotal]);
  if (options_.weighted) posSizes_.reset(new uint32_t[posTotal]);
  // Slot counts become each slot's write offsets inside every resolved bucket; negatives
  // follow all positives in keys_.
  const size_t slots = slotBegin_.size() - 1;
  keyCount_ = posTotal + negTotal;
  posKeyCount_ = posTotal;
  for (Bucket& b : buckets_) {
    if (!b.resolved) continue;
    b.negBegin += posTotal;
    uint64_t p = b.posBegin, n = b.negBegin;
    for (size_t s = 0; s < slots; ++s) {
      uint64_t* counts = slotCounts_[s].data();
      const uint64_t cp = counts[2 * b.id + 1], cn = counts[2 * b.id];
      counts[2 * b.id + 1] = p;
      counts[2 * b.id] = n;
      p += cp;
      n += cn;
    }
  }
  std::vector<std::vector<uint64_t>> start = slotCounts_;
  bucketPass2();
  // Every slot must have filled exactly its share: offsets(s) now equal the start of slot
  // s + 1 (or the bucket's end). Anything else means the input changed since pass 1.
  for (const Bucket& b : buckets_) {
    if (!b.resolved) continue;
    for (size_t s = 0; s < slots; ++s) {
      const uint64_t endPos = s + 1 < slots ? start[s + 1][2 * b.id + 1] : b.posBegin + b.pos;
      const uint64_t endNeg = s + 1 < slots ? start[s + 1][2 * b.id] : b.negBegin + b.neg;
      require(slotCounts_[s][2 * b.id + 1] == endPos && slotCounts_[s][2 * b.id] == endNeg,
              "the scores or labels changed while the metrics were being computed: do not modify the arrays "
              "until the returned promise settles");
    }
  }
}

void Sweep::bucketPass2() {
  const size_t slots = slotBegin_.size() - 1;
  std::vector<uint8_t> resolvedById(kBuckets, 0);
  for (const Bucket& b : buckets_) resolvedById[b.id] = b.resolved;
  const uint8_t thr = static_cast<uint8_t>(set_.labelThreshold);
  const bool weighted = options_.weighted;
  auto scatter = weighted ? scatterUnit<true> : scatterUnit<false>;

#pragma omp parallel for schedule(dynamic, 1)
  for (size_t s = 0; s < slots; ++s) {
    ComponentLabeler labeler;
    for (size_t u = slotBegin_[s]; u < slotBegin_[s + 1]; ++u) {
      const Unit& unit = units_[u];
      const ScoreBlock& b = set_.blocks[unit.block];
      if (weighted && imageHasDefects_[u]) labeler.label(b.labels + unit.begin, b.h, b.w, thr);
      scatter(b.scores32, b.labels, unit.begin, unit.end, thr, resolvedById.data(), slotCounts_[s].data(), keys_.get(),
              keyCount_, posSizes_.get(), posKeyCount_, labeler);
    }
  }
}

}  // namespace anomalens::metrics_detail
