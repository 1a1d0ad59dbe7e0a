// Exact kNN: knnSearch(...) and the MemoryBank class. Conversion only; lib/knn.ts validates
// and allocates outputs, the core (anomalens/knn/knn.h, knn/bank.h) computes.
//
//   knnSearch(database, n, queries, m, d, k, metric, distances, indices, screening) -> Promise<void>
//   new MemoryBank(dim, metric, screening); bank.add(rows, n); bank.search(queries, m, k, distances, indices)
//   bank.save(path); MemoryBank.load(path, screening) -> Promise<MemoryBank>; bank.dispose()
//   bank.size / bank.dim / bank.metric / bank.screening; knnEngineInfo() -> { scanKernel, bf16Screening }
// screening: 'auto' | 'off' | 'bf16' (see KnnScreening in anomalens/knn/knn.h).
// Finiteness of inputs is checked here, in the worker, because it is O(n): a NaN rejects
// with a RangeError naming the element (lib/ cannot do it without blocking the event loop).
#include <memory>

#include "anomalens/knn/knn.h"
#include "anomalens/knn/bank.h"
#include "core/worker.h"
#include "core/args.h"

namespace anomalens::bindings {
namespace {

class KnnSearchWorker : public PromiseWorker {
 public:
  KnnSearchWorker(Napi::Env env, const float* database, int64_t n, const float* queries, int64_t m, int64_t d,
                  KnnOptions options, float* distances, int32_t* indices)
      : PromiseWorker(env, "knnSearch"), database_(database), queries_(queries), n_(n), m_(m), d_(d),
        options_(options), distances_(distances), indices_(indices) {}

 protected:
  void compute() override {
    if (finite_.check(database_, n_ * d_, "database", d_) && finite_.check(queries_, m_ * d_, "queries", d_))
      knnSearch(database_, n_, queries_, m_, d_, options_, distances_, indices_);
  }
  Napi::Value result(Napi::Env env) override {
    finite_.throwIfFound(env);
    return env.Undefined();
  }

 private:
  const float* database_;
  const float* queries_;
  int64_t n_, m_, d_;
  KnnOptions options_;
  float* distances_;
  int32_t* indices_;
  FiniteCheck finite_;
};

Napi::Value KnnSearch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info, "knnSearch");
  int64_t n = args.integer(1, "n"), m = args.integer(3, "m"), d = args.integer(4, "d"), k = args.integer(5, "k");
  const float* database = args.float32(0, "database", n * d);
  const float* queries = args.float32(2, "queries", m * d);
  Metric metric = guard(env, [&] { return parseMetric(args.string(6, "metric")); });
  float* distances = args.float32(7, "distances", m * k);
  int32_t* indices = args.int32(8, "indices", m * k);
  KnnOptions options{metric, k, nullptr, parseScreening(env, args.string(9, "screening"))};
  auto* w = new KnnSearchWorker(env, database, n, queries, m, d, options, distances, indices);
  for (int i : {0, 2, 7, 8}) w->pin(info[i]);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// ---- MemoryBank ----------------------------------------------------------------------------

class MemoryBankWrap : public Napi::ObjectWrap<MemoryBankWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "MemoryBank",
                       {InstanceMethod<&MemoryBankWrap::Add>("add"),
                        InstanceMethod<&MemoryBankWrap::Search>("search"),
                        InstanceMethod<&MemoryBankWrap::Save>("save"),
                        InstanceMethod<&MemoryBankWrap::Dispose>("dispose"),
                        InstanceAccessor<&MemoryBankWrap::Size>("size"),
                        InstanceAccessor<&MemoryBankWrap::Dim>("dim"),
                        InstanceAccessor<&MemoryBankWrap::MetricName>("metric"),
                        InstanceAccessor<&MemoryBankWrap::Disposed>("disposed"),
                        InstanceAccessor<&MemoryBankWrap::Screening>("screening"),
                        StaticMethod<&MemoryBankWrap::Load>("load")});
  }

  // new MemoryBank(dim, metric, screening) or, from load(), new MemoryBank(External<Loaded>).
  struct Loaded {
    std::shared_ptr<MemoryBank> bank;
    KnnScreening screening;
  };
  explicit MemoryBankWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MemoryBankWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() == 1 && info[0].IsExternal()) {
      const Loaded& loaded = *info[0].As<Napi::External<Loaded>>().Data();
      bank_ = loaded.bank;
      screening_ = loaded.screening;
      return;
    }
    ArgReader args(info, "MemoryBank");
    int64_t dim = args.integer(0, "dim");
    std::string metric = args.string(1, "metric");
    screening_ = parseScreening(env, args.string(2, "screening"));
    bank_ = guard(env, [&] {
      return std::make_shared<MemoryBank>(dim, parseMetric(metric), screening_ != KnnScreening::Off);
    });
  }

 private:
  // The bank, once `op` may start (readers overlap; `exclusive` ops need the bank alone).
  MemoryBank& use(Napi::Env env, const char* op, bool exclusive) {
    busy_.check(env, std::string("MemoryBank.") + op, !bank_, exclusive);
    return *bank_;
  }
  GuardedWorker* worker(Napi::Env env, const char* name, bool exclusive) {
    return new GuardedWorker(env, name, Value(), &busy_, exclusive, bank_);
  }

  Napi::Value Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    MemoryBank& bank = use(env, "add", true);
    ArgReader args(info, "MemoryBank.add");
    int64_t n = args.integer(1, "n");
    const float* rows = args.float32(0, "rows", n * bank.dim());
    GuardedWorker* w = worker(env, "MemoryBank.add", true);
    w->pin(info[0]);
    w->work = [&bank, rows, n, finite = &w->finite] {
      if (finite->check(rows, n * bank.dim(), "rows", bank.dim())) bank.add(rows, n);
    };
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }

  Napi::Value Search(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    MemoryBank& bank = use(env, "search", false);
    ArgReader args(info, "MemoryBank.search");
    int64_t m = args.integer(1, "m"), k = args.integer(2, "k");
    const float* queries = args.float32(0, "queries", m * bank.dim());
    float* distances = args.float32(3, "distances", m * k);
    int32_t* indices = args.int32(4, "indices", m * k);
    GuardedWorker* w = worker(env, "MemoryBank.search", false);
    for (int i : {0, 3, 4}) w->pin(info[i]);
    w->work = [&bank, queries, m, k, distances, indices, screening = screening_, finite = &w->finite] {
      if (finite->check(queries, m * bank.dim(), "queries", bank.dim()))
        bank.search(queries, m, k, distances, indices, screening);
    };
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }

  Napi::Value Save(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    MemoryBank& bank = use(env, "save", false);
    std::string path = ArgReader(info, "MemoryBank.save").string(0, "path");
    GuardedWorker* w = worker(env, "MemoryBank.save", false);
    w->work = [&bank, path] { bank.save(path); };
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }

  static Napi::Value Load(const Napi::CallbackInfo& info);

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (bank_) busy_.check(env, "MemoryBank.dispose", false, true);
    bank_.reset();
    return env.Undefined();
  }
  Napi::Value Size(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), bank_ ? static_cast<double>(bank_->size()) : 0);
  }
  Napi::Value Dim(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), bank_ ? static_cast<double>(bank_->dim()) : 0);
  }
  Napi::Value MetricName(const Napi::CallbackInfo& info) {
    return bank_ ? Napi::Value(Napi::String::New(info.Env(), metricName(bank_->metric()))) : info.Env().Null();
  }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !bank_); }
  // 'bf16' when searches are screened ('auto' mode on a capable CPU, or forced), else 'off'.
  Napi::Value Screening(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), bank_ && bank_->screened() ? (screening_ == KnnScreening::Force ? "bf16" : "auto") : "off");
  }

  std::shared_ptr<MemoryBank> bank_;
  KnnScreening screening_ = KnnScreening::Auto;
  BusyState busy_;
};

class BankLoadWorker : public PromiseWorker {
 public:
  BankLoadWorker(Napi::Env env, Napi::Function ctor, std::string path, KnnScreening screening)
      : PromiseWorker(env, "MemoryBank.load"), ctor_(Napi::Persistent(ctor)), path_(std::move(path)) {
    loaded_.screening = screening;
  }

 protected:
  void compute() override {
    loaded_.bank = std::make_shared<MemoryBank>(MemoryBank::load(path_, loaded_.screening != KnnScreening::Off));
  }
  Napi::Value result(Napi::Env env) override {
    return ctor_.New({Napi::External<MemoryBankWrap::Loaded>::New(env, &loaded_)});
  }

 private:
  Napi::FunctionReference ctor_;
  std::string path_;
  MemoryBankWrap::Loaded loaded_;
};

Napi::Value MemoryBankWrap::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info, "MemoryBank.load");
  std::string path = args.string(0, "path");
  KnnScreening screening = parseScreening(env, args.string(1, "screening"));
  if (!info.This().IsFunction())
    throw Napi::TypeError::New(env, "MemoryBank.load must be called as MemoryBank.load(path)");
  auto* w = new BankLoadWorker(env, info.This().As<Napi::Function>(), path, screening);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value KnnEngineInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("scanKernel", knnScanKernel());
  out.Set("bf16Screening", knnScreeningSupported());
  return out;
}

void init(Napi::Env env, Napi::Object exports) {
  exports.Set("knnEngineInfo", Napi::Function::New(env, KnnEngineInfo, "knnEngineInfo"));
  exports.Set("knnSearch", Napi::Function::New(env, KnnSearch, "knnSearch"));
  exports.Set("MemoryBank", MemoryBankWrap::define(env));
}

}  // namespace
ANOMALENS_REGISTER(knn, init);
}  // namespace anomalens::bindings
