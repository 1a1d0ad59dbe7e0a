// metrics(spec) -> Promise<{ auroc, averagePrecision, f1, f1Threshold, aupro, positives, negatives, regions }>
// metricsCurve(spec) -> Promise<{ x: Float64Array, y: Float64Array, thresholds: Float64Array }>
//
// spec = { scores: (Float32Array | Float64Array)[], labels: Uint8Array[],
//          dims: number[] (n, h, w per entry), names: string[], labelNames: string[],
//          maskThreshold: number (-1: strict 0/1/255 labels), engine?, countingMin?,
//          flags? (MetricFlag bits), fprLimit?, curve?: 'roc' | 'pr' | 'pro', dropIntermediate?, decimate? }
// lib/metrics/input.ts validates everything; this file re-checks only what protects memory.
#include <cmath>
#include <limits>

#include "anomalens/metrics/metrics.h"
#include "core/args.h"
#include "core/module.h"
#include "core/worker.h"

namespace anomalens::bindings {
namespace {

double numberOr(Napi::Object o, const char* key, double fallback) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}

Napi::Array arrayField(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) throw Napi::TypeError::New(o.Env(), std::string("metrics spec.") + key + " must be an array");
  return v.As<Napi::Array>();
}

int64_t dimAt(Napi::Array dims, uint32_t i) {
  return ArgReader(dims, "metrics spec.", "").integer(i, "dims[" + std::to_string(i) + "]", ArgReader::ErrorKind::Range);
}

// Reads the blocks of `spec` into `set`, pinning every array on `worker`.
void readSet(Napi::Object spec, PromiseWorker& worker, ScoreSet& set) {
  Napi::Env env = spec.Env();
  Napi::Array scores = arrayField(spec, "scores"), labels = arrayField(spec, "labels"),
              dims = arrayField(spec, "dims"), names = arrayField(spec, "names"),
              labelNames = arrayField(spec, "labelNames");
  const uint32_t count = scores.Length();
  if (labels.Length() != count || dims.Length() != 3 * count || names.Length() != count || labelNames.Length() != count)
    throw Napi::RangeError::New(env, "metrics spec: scores, labels, dims, names and labelNames disagree in length");
  const double threshold = numberOr(spec, "maskThreshold", -1);
  set.strictLabels = threshold < 0;
  set.labelThreshold = threshold < 0 ? 0 : static_cast<int>(threshold);
  for (uint32_t i = 0; i < count; ++i) {
    ScoreBlock b;
    b.n = dimAt(dims, 3 * i);
    b.h = dimAt(dims, 3 * i + 1);
    b.w = dimAt(dims, 3 * i + 2);
    b.name = names.Get(i).ToString().Utf8Value();
    b.labelsName = labelNames.Get(i).ToString().Utf8Value();
    const size_t expected = static_cast<size_t>(numel({b.n, b.h, b.w}));
    Napi::Value s = scores.Get(i), l = labels.Get(i);
    if (!s.IsTypedArray()) throw Napi::TypeError::New(env, b.name + " must be a Float32Array or Float64Array");
    auto st = s.As<Napi::TypedArray>();
    if (st.TypedArrayType() == napi_float32_array) {
      b.scores32 = s.As<Napi::Float32Array>().Data();
    } else if (st.TypedArrayType() == napi_float64_array) {
      b.scores64 = s.As<Napi::Float64Array>().Data();
    } else {
      throw Napi::TypeError::New(env, b.name + " must be a Float32Array or Float64Array");
    }
    if (!l.IsTypedArray() || l.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw Napi::TypeError::New(env, b.labelsName + " must be a Uint8Array");
    b.labels = l.As<Napi::Uint8Array>().Data();
    if (st.ElementLength() != expected || l.As<Napi::TypedArray>().ElementLength() != expected)
      throw Napi::RangeError::New(env, b.name + " and " + b.labelsName + " must hold " + std::to_string(expected) +
                                           " elements, received " + std::to_string(st.ElementLength()) + " and " +
                                           std::to_string(l.As<Napi::TypedArray>().ElementLength()));
    worker.pin(s);
    worker.pin(l);
    set.blocks.push_back(std::move(b));
  }
}

Napi::Value numberOrNull(Napi::Env env, double v) {
  return std::isnan(v) ? env.Null() : Napi::Value(Napi::Number::New(env, v));
}

class MetricsWorker : public PromiseWorker {
 public:
  MetricsWorker(Napi::Env env, Napi::Object spec) : PromiseWorker(env, "metrics") {
    readSet(spec, *this, set_);
    flags_ = static_cast<unsigned>(numberOr(spec, "flags", 0));
    options_.fprLimit = numberOr(spec, "fprLimit", 0.3);
    options_.engine = static_cast<int>(numberOr(spec, "engine", 0));
    options_.countingMin = static_cast<int64_t>(numberOr(spec, "countingMin", 4096));
  }

 protected:
  void compute() override { result_ = computeMetrics(set_, flags_, options_); }
  Napi::Value result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("auroc", numberOrNull(env, result_.auroc));
    o.Set("averagePrecision", numberOrNull(env, result_.averagePrecision));
    o.Set("f1", numberOrNull(env, result_.f1));
    o.Set("f1Threshold", numberOrNull(env, result_.f1Threshold));
    o.Set("aupro", numberOrNull(env, result_.aupro));
    o.Set("positives", static_cast<double>(result_.positives));
    o.Set("negatives", static_cast<double>(result_.negatives));
    o.Set("regions", static_cast<double>(result_.regions));
    return o;
  }

 private:
  ScoreSet set_;
  unsigned flags_ = 0;
  MetricOptions options_;
  MetricResults result_{};
};

class CurveWorker : public PromiseWorker {
 public:
  CurveWorker(Napi::Env env, Napi::Object spec) : PromiseWorker(env, "metricsCurve") {
    readSet(spec, *this, set_);
    std::string kind = spec.Get("curve").ToString().Utf8Value();
    if (kind == "roc") kind_ = CurveKind::Roc;
    else if (kind == "pr") kind_ = CurveKind::PrecisionRecall;
    else if (kind == "pro") kind_ = CurveKind::Pro;
    else throw Napi::RangeError::New(env, "metrics spec.curve must be 'roc', 'pr' or 'pro', received '" + kind + "'");
    Napi::Value drop = spec.Get("dropIntermediate");
    options_.dropIntermediate = drop.IsBoolean() ? drop.As<Napi::Boolean>().Value() : true;
    options_.decimate = numberOr(spec, "decimate", 0);
    options_.engine = static_cast<int>(numberOr(spec, "engine", 0));
    options_.countingMin = static_cast<int64_t>(numberOr(spec, "countingMin", 4096));
  }

 protected:
  void compute() override { curve_ = computeCurve(set_, kind_, options_); }
  Napi::Value result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("x", toFloat64Array(env, std::move(curve_.x)));
    o.Set("y", toFloat64Array(env, std::move(curve_.y)));
    o.Set("thresholds", toFloat64Array(env, std::move(curve_.thresholds)));
    return o;
  }

 private:
  ScoreSet set_;
  CurveKind kind_ = CurveKind::Roc;
  CurveOptions options_;
  Curve curve_;
};

template <class Worker>
Napi::Value start(const Napi::CallbackInfo& info, const char* name) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject())
    throw Napi::TypeError::New(env, std::string(name) + "(spec): spec must be an object");
  return guard(env, [&] {
    return Napi::Value((new Worker(env, info[0].As<Napi::Object>()))->start());
  });
}

Napi::Value Metrics(const Napi::CallbackInfo& info) { return start<MetricsWorker>(info, "metrics"); }
Napi::Value MetricsCurve(const Napi::CallbackInfo& info) { return start<CurveWorker>(info, "metricsCurve"); }

void init(Napi::Env env, Napi::Object exports) {
  exportFunctions(env, exports, {
    {"metrics", Metrics},
    {"metricsCurve", MetricsCurve}});
}

}  // namespace
ANOMALENS_REGISTER(metrics, init);
}  // namespace anomalens::bindings
