// ROC, precision-recall and PRO curves: one serial walk over every distinct threshold.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "anomalens/core/error.h"
#include "anomalens/metrics/metrics.h"
#include "metrics/sweep.h"

namespace anomalens {

using metrics_detail::Cumulative;
using metrics_detail::Step;
using metrics_detail::Sweep;
using metrics_detail::SweepOptions;
using metrics_detail::SweepScratch;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Appends points to a Curve, dropping those closer than `d` (in x and in y) to the last
// kept point; the final point is always kept (finish()).
class Decimator {
 public:
  Decimator(Curve& out, double d) : out_(out), d_(d) {}
  void add(double x, double y, double t) {
    if (d_ <= 0 || out_.x.empty() || std::fabs(x - out_.x.back()) >= d_ || std::fabs(y - out_.y.back()) >= d_) {
      push(x, y, t);
      pending_ = false;
    } else {
      px_ = x;
      py_ = y;
      pt_ = t;
      pending_ = true;
    }
  }
  void finish() {
    if (pending_) push(px_, py_, pt_);
    pending_ = false;
  }

 private:
  void push(double x, double y, double t) {
    out_.x.push_back(x);
    out_.y.push_back(y);
    out_.thresholds.push_back(t);
  }
  Curve& out_;
  double d_;
  bool pending_ = false;
  double px_ = 0, py_ = 0, pt_ = 0;
};

// sklearn's drop_intermediate: keeps the first and last points and every point where the
// second difference of fps or of tps is non-zero. Streams with a window of three points.
class RocDropper {
 public:
  RocDropper(Decimator& out, bool drop, double n, double p) : out_(out), drop_(drop), n_(n), p_(p) {}
  void add(uint64_t fp, uint64_t tp, double t) {
    Pt c{static_cast<int64_t>(fp), static_cast<int64_t>(tp), t};
    if (!drop_ || count_ == 0) {
      emit(c);  // the first point is always kept
    } else if (count_ >= 2) {
      // b is the middle of (a, b, c): keep it where the curve bends.
      if ((c.fp - 2 * b_.fp + a_.fp) != 0 || (c.tp - 2 * b_.tp + a_.tp) != 0) emit(b_);
    }
    a_ = b_;
    b_ = c;
    ++count_;
  }
  void finish() {
    if (drop_ && count_ >= 2) emit(b_);  // the last point is always kept
  }

 private:
  struct Pt {
    int64_t fp, tp;
    double t;
  };
  void emit(const Pt& p) { out_.add(static_cast<double>(p.fp) / n_, static_cast<double>(p.tp) / p_, p.t); }
  Decimator& out_;
  bool drop_;
  double n_, p_;
  size_t count_ = 0;
  Pt a_{}, b_{};
};

template <class F>
void forEachStep(Sweep& sweep, F&& f) {
  sweep.resolve(std::vector<uint8_t>(sweep.numBuckets(), 1));
  SweepScratch scratch;
  Cumulative c;
  for (size_t k = 0; k < sweep.numBuckets(); ++k) {
    sweep.forEachStep(k, scratch, [&](const Step& s) {
      c.tp += s.pos;
      c.fp += s.neg;
      c.weight += s.weight;
      f(c, s.value);
    });
  }
}

}  // namespace

Curve computeCurve(const ScoreSet& set, CurveKind kind, const CurveOptions& options) {
  require(options.decimate >= 0 && options.decimate < 1,
          "decimate must be in [0, 1), received " + std::to_string(options.decimate));
  Sweep sweep(set, SweepOptions{kind == CurveKind::Pro, options.engine, options.countingMin});
  const uint64_t P = sweep.positives(), N = sweep.negatives();
  const std::string both = std::to_string(P) + " positive and " + std::to_string(N) + " negative labels";
  Curve out;
  Decimator dec(out, options.decimate);
  switch (kind) {
    case CurveKind::Roc: {
      require(P > 0 && N > 0, "the ROC curve is undefined when only one class is present: " + both);
      dec.add(0, 0, kInf);
      RocDropper roc(dec, options.dropIntermediate, static_cast<double>(N), static_cast<double>(P));
      forEachStep(sweep, [&](const Cumulative& c, double t) { roc.add(c.fp, c.tp, t); });
      roc.finish();
      dec.finish();
      break;
    }
    case CurveKind::PrecisionRecall: {
      require(P > 0, "the precision-recall curve is undefined without positive labels: " + both);
      forEachStep(sweep, [&](const Cumulative& c, double t) {
        dec.add(static_cast<double>(c.tp) / static_cast<double>(P),
                static_cast<double>(c.tp) / static_cast<double>(c.tp + c.fp), t);
      });
      dec.finish();
      // sklearn lists thresholds ascending and ends with (recall 0, precision 1).
      std::reverse(out.x.begin(), out.x.end());
      std::reverse(out.y.begin(), out.y.end());
      std::reverse(out.thresholds.begin(), out.thresholds.end());
      out.x.push_back(0);
      out.y.push_back(1);
      out.thresholds.push_back(kInf);
      break;
    }
    case CurveKind::Pro: {
      const int64_t R = sweep.regions();
      require(R > 0, "the PRO curve is undefined: the masks contain no defect region (" + both + ")");
      require(N > 0, "the PRO curve is undefined: no defect-free pixel");
      dec.add(0, 0, kInf);
      forEachStep(sweep, [&](const Cumulative& c, double t) {
        dec.add(std::min(1.0, static_cast<double>(c.fp) / static_cast<double>(N)),
                std::min(1.0, c.weight / static_cast<double>(R)), t);
      });
      dec.add(1, 1, -kInf);
      dec.finish();
      break;
    }
  }
  return out;
}

}  // namespace anomalens
