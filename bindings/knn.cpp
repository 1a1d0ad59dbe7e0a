// kNN family: exact knnSearch, the MemoryBank class and the FaissIndex class (faiss indexes by
// factory string). Conversion only; lib/knn/exact.ts, lib/knn/bank.ts and lib/knn/faiss.ts validate and allocate the
// outputs, the core (anomalens/knn/knn.h, knn/bank.h, knn/faiss.h) computes.
//
//   knnSearch(database, n, queries, m, d, k, metric, distances, indices, screening) -> Promise<void>
//   knnEngineInfo() -> { scanKernel, bf16Screening }
//   new MemoryBank(dim, metric, screening); bank.add(rows, n); bank.search(queries, m, k, distances, indices)
//   bank.save(path); MemoryBank.load(path, screening) -> Promise<MemoryBank>; bank.dispose()
//   bank.size / bank.dim / bank.metric / bank.screening / bank.disposed
//   new FaissIndex(d, factory, metric); index.train(x, n); index.add(x, n);
//   index.search(queries, m, k, distances, indices); index.save(path); FaissIndex.load(path)
//   index.nprobe / index.efSearch (get; setNprobe / setEfSearch), index.size, index.dim,
//   index.isTrained, index.factory, index.metric, index.disposed, index.dispose()
// screening: 'auto' | 'off' | 'bf16' (see KnnScreening in anomalens/knn/knn.h).
// Finiteness of inputs is checked on the worker (core/finite.h).
#include <memory>

#include "anomalens/knn/bank.h"
#include "anomalens/knn/faiss.h"
#include "anomalens/knn/knn.h"
#include "core/args.h"
#include "core/instance.h"
#include "core/module.h"
#include "core/native_object.h"
#include "core/worker.h"

namespace anomalens::bindings {
namespace {

// 'auto' | 'off' | 'bf16' (lib/ has validated it).
KnnScreening parseScreening(Napi::Env env, const std::string& s) {
  if (s == "auto") return KnnScreening::Auto;
  if (s == "off") return KnnScreening::Off;
  if (s == "bf16") return KnnScreening::Force;
  throw Napi::RangeError::New(env, "screening must be 'auto', 'off' or 'bf16', received '" + s + "'");
}

Napi::Value KnnSearch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info, "knnSearch: ");
  int64_t n = args.integer(1, "n"), m = args.integer(3, "m"), d = args.integer(4, "d"), k = args.integer(5, "k");
  const float* database = args.float32(0, "database", n * d);
  const float* queries = args.float32(2, "queries", m * d);
  Metric metric = guard(env, [&] { return parseMetric(args.string(6, "metric")); });
  float* distances = args.float32(7, "distances", m * k);
  int32_t* indices = args.int32(8, "indices", m * k);
  KnnOptions options{metric, k, nullptr, parseScreening(env, args.string(9, "screening"))};
  auto* w = new TaskWorker(env, "knnSearch", [=](FiniteCheck& finite) {
    if (finite.check(database, {n, d}, "database", kRowColumn) && finite.check(queries, {m, d}, "queries", kRowColumn))
      knnSearch(database, n, queries, m, d, options, distances, indices);
  });
  for (int i : {0, 2, 7, 8}) w->pin(info[i]);
  return w->start();
}

Napi::Value KnnEngineInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("scanKernel", knnScanKernel());
  out.Set("bf16Screening", knnScreeningSupported());
  return out;
}

// ---- MemoryBank ----------------------------------------------------------------------------

class MemoryBankWrap : public NativeObjectWrap<MemoryBankWrap, MemoryBank> {
 public:
  static Napi::Function define(Napi::Env env) {
    return defineClass(env, "MemoryBank",
                       {InstanceMethod("add", &MemoryBankWrap::Add),
                        InstanceAccessor("size", &MemoryBankWrap::Size, nullptr),
                        InstanceAccessor("dim", &MemoryBankWrap::Dim, nullptr),
                        InstanceAccessor("metric", &MemoryBankWrap::MetricName, nullptr),
                        InstanceAccessor("screening", &MemoryBankWrap::Screening, nullptr)});
  }

  // new MemoryBank(dim, metric, screening) or, from load(), new MemoryBank(External, screening).
  explicit MemoryBankWrap(const Napi::CallbackInfo& info) : NativeObjectWrap(info, "MemoryBank") {
    Napi::Env env = info.Env();
    if (adopt(info)) {
      screening_ = parseScreening(env, info[1].As<Napi::String>().Utf8Value());
      return;
    }
    ArgReader args(info, "MemoryBank: ");
    int64_t dim = args.integer(0, "dim");
    std::string metric = args.string(1, "metric");
    screening_ = parseScreening(env, args.string(2, "screening"));
    object_ = guard(env, [&] {
      return std::make_shared<MemoryBank>(dim, parseMetric(metric), screening_ != KnnScreening::Off);
    });
  }

 private:
  friend class NativeObjectWrap<MemoryBankWrap, MemoryBank>;
  Napi::Value Add(const Napi::CallbackInfo& info) {
    return write(info, "add", "rows", [](MemoryBank& b, const float* x, int64_t n) { b.add(x, n); });
  }
  Napi::Value Search(const Napi::CallbackInfo& info) {
    return search(info, [s = screening_](const MemoryBank& b, const float* q, int64_t m, int64_t k, float* d, int32_t* i) {
      b.search(q, m, k, d, i, s);
    });
  }
  static Napi::Value Load(const Napi::CallbackInfo& info) {
    ArgReader args(info, "MemoryBank.load: ");
    std::string path = args.string(0, "path");
    std::string screeningName = args.string(1, "screening");
    KnnScreening screening = parseScreening(info.Env(), screeningName);
    return loadWith(info, "MemoryBank", addonData(info.Env()).memoryBank,
                    [path, screening] {
                      return std::make_shared<MemoryBank>(MemoryBank::load(path, screening != KnnScreening::Off));
                    },
                    screeningName);
  }

  Napi::Value Size(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), object_ ? static_cast<double>(object_->size()) : 0);
  }
  Napi::Value Dim(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), object_ ? static_cast<double>(object_->dim()) : 0);
  }
  Napi::Value MetricName(const Napi::CallbackInfo& info) {
    return object_ ? Napi::Value(Napi::String::New(info.Env(), metricName(object_->metric()))) : info.Env().Null();
  }
  // 'bf16' when searches are screened ('auto' mode on a capable CPU, or forced), else 'off'.
  Napi::Value Screening(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), object_ && object_->screened()
                                             ? (screening_ == KnnScreening::Force ? "bf16" : "auto")
                                             : "off");
  }

  KnnScreening screening_ = KnnScreening::Auto;
};

// ---- FaissIndex ----------------------------------------------------------------------------

class FaissIndexWrap : public NativeObjectWrap<FaissIndexWrap, FaissIndex> {
 public:
  static Napi::Function define(Napi::Env env) {
    return defineClass(env, "FaissIndex",
                       {InstanceMethod("train", &FaissIndexWrap::Train),
                        InstanceMethod("add", &FaissIndexWrap::Add),
                        InstanceMethod("setNprobe", &FaissIndexWrap::SetNprobe),
                        InstanceMethod("setEfSearch", &FaissIndexWrap::SetEfSearch),
                        InstanceAccessor("nprobe", &FaissIndexWrap::Nprobe, nullptr),
                        InstanceAccessor("efSearch", &FaissIndexWrap::EfSearch, nullptr),
                        InstanceAccessor("size", &FaissIndexWrap::Size, nullptr),
                        InstanceAccessor("dim", &FaissIndexWrap::Dim, nullptr),
                        InstanceAccessor("isTrained", &FaissIndexWrap::IsTrained, nullptr),
                        InstanceAccessor("factory", &FaissIndexWrap::Factory, nullptr),
                        InstanceAccessor("metric", &FaissIndexWrap::MetricName, nullptr)});
  }

  // new FaissIndex(d, factory, metric) or, from load(), new FaissIndex(External).
  explicit FaissIndexWrap(const Napi::CallbackInfo& info) : NativeObjectWrap(info, "FaissIndex") {
    if (adopt(info)) return;
    Napi::Env env = info.Env();
    ArgReader args(info, "FaissIndex: ");
    int64_t d = args.integer(0, "d");
    std::string factory = args.string(1, "factory");
    std::string metric = args.string(2, "metric");
    object_ = guard(env, [&] { return std::make_shared<FaissIndex>(d, factory, parseMetric(metric)); });
  }

 private:
  friend class NativeObjectWrap<FaissIndexWrap, FaissIndex>;
  Napi::Value Train(const Napi::CallbackInfo& info) {
    return write(info, "train", "x", [](FaissIndex& f, const float* x, int64_t n) { f.train(x, n); });
  }
  Napi::Value Add(const Napi::CallbackInfo& info) {
    return write(info, "add", "x", [](FaissIndex& f, const float* x, int64_t n) { f.add(x, n); });
  }
  Napi::Value Search(const Napi::CallbackInfo& info) {
    return search(info, [](const FaissIndex& f, const float* q, int64_t m, int64_t k, float* d, int32_t* i) {
      f.search(q, m, k, d, i);
    });
  }
  static Napi::Value Load(const Napi::CallbackInfo& info) {
    std::string path = ArgReader(info, "FaissIndex.load: ").string(0, "path");
    return loadWith(info, "FaissIndex", addonData(info.Env()).faissIndex,
                    [path] { return std::make_shared<FaissIndex>(FaissIndex::load(path)); }, "");
  }

  // Setters are O(1) and synchronous, but must not change a parameter under a running search.
  Napi::Value setter(const Napi::CallbackInfo& info, const char* name, void (FaissIndex::*set)(int64_t)) {
    Napi::Env env = info.Env();
    FaissIndex& index = use(env, name, true);
    int64_t v = ArgReader(info, std::string("FaissIndex.") + name + ": ").integer(0, name);
    guard(env, [&] { (index.*set)(v); });
    return env.Undefined();
  }
  Napi::Value SetNprobe(const Napi::CallbackInfo& info) { return setter(info, "nprobe", &FaissIndex::setNprobe); }
  Napi::Value SetEfSearch(const Napi::CallbackInfo& info) { return setter(info, "efSearch", &FaissIndex::setEfSearch); }

  Napi::Value Number(const Napi::CallbackInfo& info, int64_t (FaissIndex::*get)() const) {
    return object_ ? Napi::Value(Napi::Number::New(info.Env(), static_cast<double>((object_.get()->*get)())))
                   : info.Env().Null();
  }
  Napi::Value Nprobe(const Napi::CallbackInfo& info) { return Number(info, &FaissIndex::nprobe); }
  Napi::Value EfSearch(const Napi::CallbackInfo& info) { return Number(info, &FaissIndex::efSearch); }
  Napi::Value Size(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), object_ ? static_cast<double>(object_->size()) : 0);
  }
  Napi::Value Dim(const Napi::CallbackInfo& info) { return Number(info, &FaissIndex::dim); }
  Napi::Value IsTrained(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), object_ && object_->isTrained());
  }
  Napi::Value Factory(const Napi::CallbackInfo& info) {
    return object_ ? Napi::Value(Napi::String::New(info.Env(), object_->factory())) : info.Env().Null();
  }
  Napi::Value MetricName(const Napi::CallbackInfo& info) {
    return object_ ? Napi::Value(Napi::String::New(info.Env(), metricName(object_->metric()))) : info.Env().Null();
  }
};

void init(Napi::Env env, Napi::Object exports) {
  exportFunctions(env, exports, {
    {"knnEngineInfo", KnnEngineInfo},
    {"knnSearch", KnnSearch}});
  Napi::Function bank = MemoryBankWrap::define(env), faiss = FaissIndexWrap::define(env);
  addonData(env).memoryBank = Napi::Persistent(bank);
  addonData(env).faissIndex = Napi::Persistent(faiss);
  exports.Set("MemoryBank", bank);
  exports.Set("FaissIndex", faiss);
}

}  // namespace
ANOMALENS_REGISTER(knn, init);
}  // namespace anomalens::bindings
