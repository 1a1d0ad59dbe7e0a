// Evaluation metrics of anomaly detection: exact, tie-aware AUROC, average precision, F1-max,
// the MVTec AD AUPRO, and the ROC / precision-recall / PRO curves.
//
// Exactness: every distinct score is a threshold (no bins). Counts are integers, the AUROC is
// the Mann-Whitney statistic computed in 128-bit integers and divided once, and ratios are
// formed in float64 from exact counts, so results match float64 references (sklearn, the
// MVTec AD evaluation code run in float64) to 1e-12 or better (sums over millions of
// thresholds round differently from numpy's cumsum in the last digits). Equal scores form one threshold step;
// -0.0 and +0.0 are the same score.
//
// Memory: no per-pixel objects. Scores are grouped by the top 16 bits of their (order-
// preserving) float32 bit pattern; only the groups the requested metrics need are resolved,
// through one array of 16-bit sort keys (2 bytes per resolved pixel; AUPRO adds 4 bytes per
// defect pixel for its region size). Histograms and counting bins take about 12 MB per
// thread; AUPRO's labelling 4 bytes per pixel of the largest image per thread.
// Inputs of fewer than 65536 elements, and float64 scores, take a plain sort (16 bytes per
// element) instead.
//
// Threads: OpenMP (the count set by setNumThreads); results do not depend on it except for
// float64 summation order (~1e-16 relative).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace anomalens {

// One block of scores with their ground truth: n images of h x w pixels, row-major and
// contiguous, so both arrays hold n * h * w elements. Image-level scores are a block with
// n = 1, h = 1, w = count. Exactly one of scores32 / scores64 is set, and every block of a
// ScoreSet sets the same one. The memory stays owned by the caller.
struct ScoreBlock {
  const float* scores32 = nullptr;   // size n * h * w, or nullptr
  const double* scores64 = nullptr;  // size n * h * w, or nullptr
  const uint8_t* labels = nullptr;   // size n * h * w
  int64_t n = 1, h = 1, w = 0;
  std::string name = "scores";        // names the block in error messages, e.g. "maps[3]"
  std::string labelsName = "labels";  // e.g. "masks[3]"
};

// A set of blocks evaluated together (their pixels/images are pooled).
// A label value v is positive when v > labelThreshold. With strictLabels (the default), only
// the values 0, 1 and 255 are accepted (labelThreshold must then be 0), so that a mask that
// was resized with interpolation is an error instead of being binarised silently.
struct ScoreSet {
  std::vector<ScoreBlock> blocks;
  int labelThreshold = 0;  // 0..254
  bool strictLabels = true;
};

enum MetricFlag : unsigned {
  kAuroc = 1u,             // area under the ROC curve, as sklearn.metrics.roc_auc_score
  kAveragePrecision = 2u,  // as sklearn.metrics.average_precision_score
  kF1Max = 4u,             // max over thresholds of F1, with its threshold
  kAupro = 8u,             // MVTec AD AUPRO up to MetricOptions::fprLimit (needs h, w)
};

struct MetricOptions {
  double fprLimit = 0.3;        // AUPRO integration limit, in (0, 1]
  int engine = 0;               // 0: automatic, 1: sort, 2: histogram buckets (tests)
  int64_t countingMin = 4096;   // bucket size from which counting replaces sorting (tests)
};

// Results of computeMetrics; fields not requested are NaN.
struct MetricResults {
  double auroc, averagePrecision, f1, f1Threshold, aupro;
  int64_t positives = 0, negatives = 0;  // label counts (pixels or images)
  int64_t regions = 0;                   // defect regions (only with kAupro)
};

// Computes the metrics selected by `flags` (MetricFlag bits) in one pass over `set`.
//   AUROC: Mann-Whitney U / (P * N), ties counted one half: sklearn's roc_auc_score.
//   Average precision: sum over thresholds t (descending) of (R(t) - R(t_prev)) * P(t).
//   F1-max: max over thresholds t of 2 TP / (2 TP + FP + FN), predicting "anomalous" when
//     score >= t; the threshold returned is the largest t reaching the maximum.
//   AUPRO (MVTec AD): regions = 8-connected components of each image's positive pixels;
//     FPR(t) = defect-free pixels >= t / all defect-free pixels (over all images);
//     PRO(t) = mean over all regions of (region pixels >= t) / region size; the curve
//     (0,0), (FPR(t), PRO(t)) for every distinct t descending, (1,1) is integrated by the
//     trapezoid rule up to fprLimit, the last segment interpolated linearly at fprLimit,
//     and the area divided by fprLimit.
// Throws Error(InvalidArgument) naming the block and element for a NaN or infinite score or
// a label that breaks the label rule, and naming the problem when a metric is undefined: a
// single class present (AUROC), no positives (average precision, F1), no defect region or
// no defect-free pixel (AUPRO), no elements at all.
// Example: MetricResults r = computeMetrics(set, kAuroc | kAupro, {});
MetricResults computeMetrics(const ScoreSet& set, unsigned flags, const MetricOptions& options);

enum class CurveKind {
  Roc,              // x = FPR, y = TPR: sklearn.metrics.roc_curve
  PrecisionRecall,  // x = recall, y = precision: sklearn.metrics.precision_recall_curve
  Pro,              // x = FPR, y = PRO: MVTec AD compute_pro (the curve AUPRO integrates)
};

struct CurveOptions {
  bool dropIntermediate = true;  // ROC: drop collinear points exactly as sklearn does
  // 0: every point. d > 0: keep a point only when x or y moved by at least d since the last
  // kept point (first and last points always kept), to bound curves of millions of pixels.
  double decimate = 0;
  int engine = 0;
  int64_t countingMin = 4096;
};

// A curve as three arrays of equal length.
//   Roc: starts at (0, 0) with threshold +inf (sklearn >= 1.3; older versions put max + 1),
//     then one point per kept distinct threshold, descending.
//   PrecisionRecall: one point per distinct threshold in ascending threshold order, then the
//     point (recall 0, precision 1) whose threshold is +inf (sklearn returns one threshold
//     fewer than points; this array repeats none and ends with +inf instead).
//   Pro: (0, 0) at +inf, one point per distinct threshold descending, then (1, 1) at -inf;
//     PRO and FPR clipped to 1 as in the MVTec AD code.
struct Curve {
  std::vector<double> x, y, thresholds;
};

// Computes one curve of `set`. Errors as computeMetrics (Roc needs both classes,
// PrecisionRecall needs positives, Pro needs a region and a defect-free pixel).
Curve computeCurve(const ScoreSet& set, CurveKind kind, const CurveOptions& options);

}  // namespace anomalens
