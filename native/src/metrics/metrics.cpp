// Scalar metrics over the threshold sweep: each bucket of the sweep is reduced on its own
// (it knows the exact counts of all higher scores), in parallel, and the per-bucket partial
// results are combined in bucket order so that scheduling never changes a result.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "anomalens/core/error.h"
#include "anomalens/metrics/metrics.h"
#include "metrics/sweep.h"

namespace anomalens {

using metrics_detail::Bucket;
using metrics_detail::Cumulative;
using metrics_detail::Step;
using metrics_detail::Sweep;
using metrics_detail::SweepOptions;
using metrics_detail::SweepScratch;

namespace {

using u128 = unsigned __int128;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Partial {
  u128 twiceU = 0;   // 2 * Mann-Whitney U restricted to the negatives of this bucket
  double apSum = 0;  // sum of pos * precision over the steps
  bool hasBest = false;
  uint64_t bestTp = 0, bestFp = 0;
  double bestThreshold = kNaN;
  double area = 0;   // AUPRO trapezoids of this bucket
};

// F1 = 2 TP / (TP + FP + P). Is (tpA, fpA) strictly better than (tpB, fpB)? Exact.
bool f1Better(uint64_t tpA, uint64_t fpA, uint64_t tpB, uint64_t fpB, uint64_t p) {
  return static_cast<u128>(tpA) * (tpB + fpB + p) > static_cast<u128>(tpB) * (tpA + fpA + p);
}

std::string counts(uint64_t pos, uint64_t neg) {
  return std::to_string(pos) + " positive and " + std::to_string(neg) + " negative labels";
}

}  // namespace

MetricResults computeMetrics(const ScoreSet& set, unsigned flags, const MetricOptions& options) {
  const bool wantAuroc = flags & kAuroc, wantAp = flags & kAveragePrecision, wantF1 = flags & kF1Max,
             wantAupro = flags & kAupro;
  require(flags != 0 && (flags & ~15u) == 0, "computeMetrics: flags must select metrics");
  const double limit = options.fprLimit;
  require(!wantAupro || (limit > 0 && limit <= 1),
          "fprLimit must be in (0, 1], received " + std::to_string(limit));

  Sweep sweep(set, SweepOptions{wantAupro, options.engine, options.countingMin});
  const uint64_t P = sweep.positives(), N = sweep.negatives();
  if (wantAuroc)
    require(P > 0 && N > 0, "AUROC is undefined when only one class is present: " + counts(P, N));
  if (wantAp || wantF1)
    require(P > 0, std::string(wantAp ? "average precision" : "F1") +
                       " is undefined without positive labels: " + counts(P, N));
  const int64_t R = sweep.regions();
  if (wantAupro) {
    require(R > 0, "AUPRO is undefined: the masks contain no defect region (" + counts(P, N) + ")");
    require(N > 0, "AUPRO is undefined: no defect-free pixel, so the false positive rate has no denominator");
  }

  const size_t K = sweep.numBuckets();
  // AUPRO only looks at buckets up to the one where the FPR first exceeds the limit.
  size_t kStar = K;
  if (wantAupro) {
    for (size_t k = 0; k < K; ++k) {
      const Bucket& b = sweep.bucket(k);
      if (static_cast<double>(b.before.fp + b.neg) / static_cast<double>(N) > limit) {
        kStar = k;
        break;
      }
    }
  }
  const bool onlyAupro = !(wantAuroc || wantAp || wantF1);
  std::vector<uint8_t> need(K, 0);
  for (size_t k = 0; k < K; ++k) {
    const Bucket& b = sweep.bucket(k);
    const bool mixed = b.pos > 0 && b.neg > 0;
    need[k] = (wantAuroc && mixed) || ((wantAp || wantF1) && b.pos > 0) || (wantAupro && mixed && k <= kStar);
  }
  sweep.resolve(need);

  std::vector<Partial> parts(K);
  const double nOk = static_cast<double>(N), nRegions = static_cast<double>(R);
#pragma omp parallel if (K > 1)
  {
    SweepScratch scratch;
#pragma omp for schedule(dynamic, 1)
    for (size_t k = 0; k < K; ++k) {
      if (onlyAupro && k > kStar) continue;
      const Bucket& b = sweep.bucket(k);
      Partial part;  // local: neighbouring buckets run on other threads
      Cumulative c = b.before;
      double px = static_cast<double>(c.fp) / nOk, py = std::min(1.0, c.weight / nRegions);
      bool crossed = !wantAupro || k > kStar;
      sweep.forEachStep(k, scratch, [&](const Step& s) {
        const uint64_t tpBefore = c.tp;
        c.tp += s.pos;
        c.fp += s.neg;
        c.weight += s.weight;
        part.twiceU += static_cast<u128>(s.neg) * (2 * static_cast<u128>(tpBefore) + s.pos);
        if (s.pos > 0) {
          part.apSum += static_cast<double>(s.pos) * (static_cast<double>(c.tp) / static_cast<double>(c.tp + c.fp));
          // A step without positives only adds false positives, so it never holds the max.
          if (wantF1 && (!part.hasBest || f1Better(c.tp, c.fp, part.bestTp, part.bestFp, P))) {
            part.hasBest = true;
            part.bestTp = c.tp;
            part.bestFp = c.fp;
            part.bestThreshold = s.value;
          }
        }
        if (!crossed) {
          // The MVTec AD trapezoid(fprs, pros, x_max=limit), one segment at a time.
          const double x = static_cast<double>(c.fp) / nOk, y = std::min(1.0, c.weight / nRegions);
          if (x <= limit) {
            part.area += 0.5 * (y + py) * (x - px);
          } else {
            if (px != limit) {
              const double yi = py + ((y - py) * (limit - px) / (x - px));
              part.area += 0.5 * (yi + py) * (limit - px);
            }
            crossed = true;
          }
          px = x;
          py = y;
        }
      });
      parts[k] = part;
    }
  }

  MetricResults r{kNaN, kNaN, kNaN, kNaN, kNaN};
  r.positives = static_cast<int64_t>(P);
  r.negatives = static_cast<int64_t>(N);
  r.regions = wantAupro ? R : 0;
  u128 twiceU = 0;
  double apSum = 0, area = 0;
  const Partial* best = nullptr;
  for (const Partial& p : parts) {
    twiceU += p.twiceU;
    apSum += p.apSum;
    area += p.area;
    if (p.hasBest && (!best || f1Better(p.bestTp, p.bestFp, best->bestTp, best->bestFp, P))) best = &p;
  }
  if (wantAuroc)
    r.auroc = static_cast<double>(static_cast<long double>(twiceU) /
                                  (2.0L * static_cast<long double>(P) * static_cast<long double>(N)));
  if (wantAp) r.averagePrecision = apSum / static_cast<double>(P);
  if (wantF1 && best) {
    r.f1 = 2.0 * static_cast<double>(best->bestTp) / static_cast<double>(best->bestTp + best->bestFp + P);
    r.f1Threshold = best->bestThreshold;
  }
  if (wantAupro) r.aupro = area / limit;
  return r;
}

}  // namespace anomalens
