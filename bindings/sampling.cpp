// Greedy coreset subsampling (anomalens/sampling/coreset.h). Conversion only.
//
//   coresetSubsample(features, n, d, options, onProgress?, cancel?) -> Promise<Int32Array>
//     (the selected rows; shorter than count when cancelled)
//   coresetProjectedFeatures(features, n, d, options) -> Promise<Float32Array>   (test hook)
//   coresetProjectionMatrix(d, options) -> Float32Array                          (test hook)
//   coresetStartRows(n, options) -> Int32Array                                   (test hook)
// options: { count, seed, projectionDim, projection: 'uniform'|'gaussian',
//            precision: 'float16'|'float32', startPoints }
// onProgress(done, total) is called on the main thread at most every 100 ms and once at the
// end, before the promise settles; cancel is an Int32Array(1) that lib/ sets to 1 on abort.
#include <atomic>
#include <chrono>
#include <memory>

#include "anomalens/sampling/coreset.h"
#include "core/worker.h"
#include "core/args.h"
#include "core/module.h"

namespace anomalens::bindings {
namespace {

static_assert(sizeof(std::atomic<int32_t>) == sizeof(int32_t), "cancel flag is read in place");

CoresetOptions readOptions(Napi::Value value) {
  ArgReader o(value, "coreset: options.", "coreset: options must be an object");
  Napi::Env env = o.env();
  CoresetOptions out;
  out.count = o.integer("count", "count");
  out.seed = static_cast<uint64_t>(o.integer("seed", "seed"));
  out.projectionDim = o.integer("projectionDim", "projectionDim");
  out.startPoints = o.integer("startPoints", "startPoints");
  std::string projection = o.string("projection", "projection"), precision = o.string("precision", "precision");
  if (projection != "uniform" && projection != "gaussian")
    throw Napi::RangeError::New(env, "coreset: options.projection must be 'uniform' or 'gaussian'");
  if (precision != "float16" && precision != "float32")
    throw Napi::RangeError::New(env, "coreset: options.precision must be 'float16' or 'float32'");
  out.projection = projection == "uniform" ? CoresetProjection::Uniform : CoresetProjection::Gaussian;
  out.precision = precision == "float16" ? CoresetPrecision::Float16 : CoresetPrecision::Float32;
  return out;
}

class CoresetWorker : public PromiseWorker {
 public:
  CoresetWorker(Napi::Env env, const float* features, int64_t n, int64_t d, CoresetOptions options)
      : PromiseWorker(env, "coresetSubsample"), features_(features), n_(n), d_(d), options_(std::move(options)),
        indices_(static_cast<size_t>(options_.count)) {}

  void setProgress(Napi::Env env, Napi::Function callback) {
    progressFn_ = Napi::Persistent(callback);
    tsfn_ = Napi::ThreadSafeFunction::New(env, callback, "coresetProgress", 0, 1);
    auto tsfn = tsfn_;
    auto finished = finished_;
    auto last = std::make_shared<std::chrono::steady_clock::time_point>();
    options_.progress = [tsfn, finished, last](int64_t done, int64_t total) mutable {
      auto now = std::chrono::steady_clock::now();
      if (done == total || now - *last < std::chrono::milliseconds(100)) return;  // the end is reported by result()
      *last = now;
      auto* data = new std::pair<int64_t, int64_t>(done, total);
      napi_status s = tsfn.NonBlockingCall(data, [finished](Napi::Env env, Napi::Function fn, std::pair<int64_t, int64_t>* p) {
        std::unique_ptr<std::pair<int64_t, int64_t>> own(p);
        // A report still queued when the work ended would arrive after the final one: drop it.
        if (env != nullptr && !finished->load())
          fn.Call({Napi::Number::New(env, static_cast<double>(p->first)), Napi::Number::New(env, static_cast<double>(p->second))});
      });
      if (s != napi_ok) delete data;
    };
  }
  void setCancel(int32_t* flag) { options_.cancel = reinterpret_cast<const std::atomic<int32_t>*>(flag); }

 protected:
  void compute() override {
    if (finite().check(features_, {n_, d_}, "features", kRowColumn))
      selected_ = coresetSubsample(features_, n_, d_, options_, indices_.data());
  }
  Napi::Value result(Napi::Env env) override {
    if (!progressFn_.IsEmpty() && selected_ == options_.count)
      progressFn_.Call({Napi::Number::New(env, static_cast<double>(selected_)),
                        Napi::Number::New(env, static_cast<double>(options_.count))});
    auto indices = Napi::Int32Array::New(env, static_cast<size_t>(selected_));
    std::copy(indices_.begin(), indices_.begin() + selected_, indices.Data());
    return indices;
  }
  void finished() override {
    finished_->store(true);
    if (tsfn_) tsfn_.Release();
  }

 private:
  const float* features_;
  int64_t n_, d_;
  CoresetOptions options_;
  std::vector<int32_t> indices_;
  int64_t selected_ = 0;
  Napi::FunctionReference progressFn_;
  Napi::ThreadSafeFunction tsfn_;
  std::shared_ptr<std::atomic<bool>> finished_ = std::make_shared<std::atomic<bool>>(false);
};

Napi::Value CoresetSubsample(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info, "coresetSubsample: ");
  int64_t n = args.integer(1, "n"), d = args.integer(2, "d");
  const float* features = args.float32(0, "features", n * d);
  CoresetOptions options = readOptions(info[3]);
  if (options.count < 1 || options.count > n || n < 1)
    throw Napi::RangeError::New(env, "coresetSubsample: count must be in [1, n]");
  auto* w = new CoresetWorker(env, features, n, d, std::move(options));
  w->pin(info[0]);
  if (info.Length() > 4 && info[4].IsFunction()) w->setProgress(env, info[4].As<Napi::Function>());
  if (info.Length() > 5 && !info[5].IsUndefined()) {
    w->setCancel(args.int32(5, "cancel", 1));
    w->pin(info[5]);
  }
  return w->start();
}

class ProjectedWorker : public PromiseWorker {
 public:
  ProjectedWorker(Napi::Env env, const float* features, int64_t n, int64_t d, CoresetOptions options)
      : PromiseWorker(env, "coresetProjectedFeatures"), features_(features), n_(n), d_(d), options_(std::move(options)) {}

 protected:
  void compute() override {
    if (!finite().check(features_, {n_, d_}, "features", kRowColumn)) return;
    out_ = Tensor({n_, coresetWorkingDim(d_, options_)});
    coresetProjectedFeatures(features_, n_, d_, options_, out_.data());
  }
  Napi::Value result(Napi::Env env) override {
    return toFloat32Array(env, out_);
  }

 private:
  const float* features_;
  int64_t n_, d_;
  CoresetOptions options_;
  Tensor out_;
};

Napi::Value CoresetProjectedFeatures(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info, "coresetProjectedFeatures: ");
  int64_t n = args.integer(1, "n"), d = args.integer(2, "d");
  const float* features = args.float32(0, "features", n * d);
  auto* w = new ProjectedWorker(env, features, n, d, readOptions(info[3]));
  w->pin(info[0]);
  return w->start();
}

Napi::Value CoresetProjectionMatrix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t d = ArgReader(info, "coresetProjectionMatrix: ").integer(0, "d");
  CoresetOptions options = readOptions(info[1]);
  return guard(env, [&] {
    Tensor m({d, options.projectionDim});
    coresetProjectionMatrix(d, options, m.data());
    return toFloat32Array(env, m);
  });
}

Napi::Value CoresetStartRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t n = ArgReader(info, "coresetStartRows: ").integer(0, "n");
  CoresetOptions options = readOptions(info[1]);
  return guard(env, [&] {
    auto out = Napi::Int32Array::New(env, static_cast<size_t>(std::min(n, options.startPoints)));
    coresetStartRows(n, options, out.Data());
    return out;
  });
}

void init(Napi::Env env, Napi::Object exports) {
  exportFunctions(env, exports, {
    {"coresetStartRows", CoresetStartRows},
    {"coresetSubsample", CoresetSubsample},
    {"coresetProjectedFeatures", CoresetProjectedFeatures},
    {"coresetProjectionMatrix", CoresetProjectionMatrix}});
}

}  // namespace
ANOMALENS_REGISTER(knn_coreset, init);
}  // namespace anomalens::bindings
