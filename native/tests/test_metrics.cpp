// metrics: AUROC against a naive O(n^2) pair count, average precision and F1-max against a
// naive threshold sweep, with ties, on both engines (sort and histogram buckets).
#include <algorithm>
#include <set>

#include "anomalens/core/error.h"
#include "anomalens/metrics/metrics.h"
#include "harness.h"

namespace anomalens::tests {
namespace {

double naiveAuroc(const std::vector<float>& s, const std::vector<uint8_t>& l) {
  double pairs = 0, wins = 0;
  for (size_t i = 0; i < s.size(); ++i)
    for (size_t j = 0; j < s.size(); ++j)
      if (l[i] && !l[j]) {
        pairs += 1;
        wins += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
      }
  return wins / pairs;
}

// Every distinct score t (descending) as a threshold "score >= t".
void naiveSweep(const std::vector<float>& s, const std::vector<uint8_t>& l, double& ap, double& f1) {
  std::set<float, std::greater<float>> th(s.begin(), s.end());
  double P = 0;
  for (uint8_t v : l) P += v ? 1 : 0;
  ap = 0, f1 = 0;
  double prevRecall = 0;
  for (float t : th) {
    double tp = 0, fp = 0;
    for (size_t i = 0; i < s.size(); ++i)
      if (s[i] >= t) (l[i] ? tp : fp) += 1;
    const double recall = tp / P, precision = tp / (tp + fp);
    ap += (recall - prevRecall) * precision;
    prevRecall = recall;
    f1 = std::max(f1, 2 * tp / (2 * tp + fp + (P - tp)));
  }
}

}  // namespace

TEST(metrics_auroc_ap_f1_vs_naive) {
  Rng rng(51);
  for (int64_t n : {int64_t(13), int64_t(97), int64_t(1000)}) {
    std::vector<float> s(static_cast<size_t>(n));
    std::vector<uint8_t> l(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      l[i] = rng.uniform() < 0.3 || i == 0;
      // Coarse scores: many ties. Positives score higher on average.
      s[i] = static_cast<float>(std::floor((rng.uniform() + (l[i] ? 0.4 : 0.0)) * 20) / 20);
    }
    l[1] = 0;
    const double auroc = naiveAuroc(s, l);
    double ap, f1;
    naiveSweep(s, l, ap, f1);
    for (int engine : {1, 2}) {
      ScoreSet set;
      ScoreBlock b;
      b.scores32 = s.data();
      b.labels = l.data();
      b.w = n;
      set.blocks.push_back(b);
      MetricOptions o;
      o.engine = engine;
      o.countingMin = 4;
      MetricResults r = computeMetrics(set, kAuroc | kAveragePrecision | kF1Max, o);
      CHECK_MSG(std::abs(r.auroc - auroc) < 1e-12, "n " << n << " engine " << engine << ": " << r.auroc << " vs " << auroc);
      CHECK_MSG(std::abs(r.averagePrecision - ap) < 1e-12, "n " << n << ": AP " << r.averagePrecision << " vs " << ap);
      CHECK_MSG(std::abs(r.f1 - f1) < 1e-12, "n " << n << ": F1 " << r.f1 << " vs " << f1);
    }
  }
}

TEST(metrics_errors) {
  std::vector<float> s = {0.1f, 0.2f, 0.3f};
  std::vector<uint8_t> one = {1, 1, 1}, bad = {0, 2, 1};
  ScoreSet set;
  ScoreBlock b;
  b.scores32 = s.data();
  b.labels = one.data();
  b.w = 3;
  set.blocks.push_back(b);
  CHECK_THROWS_CODE(computeMetrics(set, kAuroc, {}), ErrorCode::InvalidArgument);  // one class only
  set.blocks[0].labels = bad.data();
  CHECK_THROWS_CODE(computeMetrics(set, kAuroc, {}), ErrorCode::InvalidArgument);  // label 2 with strict labels
}

}  // namespace anomalens::tests
