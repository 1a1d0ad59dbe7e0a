// FaissIndex class: faiss indexes by factory string (anomalens/knn/faiss.h). Conversion only.
//
//   new FaissIndex(d, factory, metric); index.train(x, n); index.add(x, n);
//   index.search(queries, m, k, distances, indices); index.save(path); FaissIndex.load(path)
//   index.nprobe / index.efSearch (get/set), index.size, index.dim, index.isTrained,
//   index.factory, index.metric, index.dispose()
#include <memory>

#include "anomalens/knn/faiss.h"
#include "core/worker.h"
#include "core/args.h"

namespace anomalens::bindings {
namespace {

class FaissIndexWrap : public Napi::ObjectWrap<FaissIndexWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "FaissIndex",
                       {InstanceMethod<&FaissIndexWrap::Train>("train"),
                        InstanceMethod<&FaissIndexWrap::Add>("add"),
                        InstanceMethod<&FaissIndexWrap::Search>("search"),
                        InstanceMethod<&FaissIndexWrap::Save>("save"),
                        InstanceMethod<&FaissIndexWrap::Dispose>("dispose"),
                        InstanceMethod<&FaissIndexWrap::SetNprobe>("setNprobe"),
                        InstanceMethod<&FaissIndexWrap::SetEfSearch>("setEfSearch"),
                        InstanceAccessor<&FaissIndexWrap::Nprobe>("nprobe"),
                        InstanceAccessor<&FaissIndexWrap::EfSearch>("efSearch"),
                        InstanceAccessor<&FaissIndexWrap::Size>("size"),
                        InstanceAccessor<&FaissIndexWrap::Dim>("dim"),
                        InstanceAccessor<&FaissIndexWrap::IsTrained>("isTrained"),
                        InstanceAccessor<&FaissIndexWrap::Factory>("factory"),
                        InstanceAccessor<&FaissIndexWrap::MetricName>("metric"),
                        InstanceAccessor<&FaissIndexWrap::Disposed>("disposed"),
                        StaticMethod<&FaissIndexWrap::Load>("load")});
  }

  explicit FaissIndexWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FaissIndexWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() == 1 && info[0].IsExternal()) {
      index_ = *info[0].As<Napi::External<std::shared_ptr<FaissIndex>>>().Data();
      return;
    }
    ArgReader args(info, "FaissIndex");
    int64_t d = args.integer(0, "d");
    std::string factory = args.string(1, "factory");
    std::string metric = args.string(2, "metric");
    index_ = guard(env, [&] { return std::make_shared<FaissIndex>(d, factory, parseMetric(metric)); });
  }

 private:
  FaissIndex& use(Napi::Env env, const char* op, bool exclusive) {
    busy_.check(env, std::string("FaissIndex.") + op, !index_, exclusive);
    return *index_;
  }
  GuardedWorker* worker(Napi::Env env, const char* name, bool exclusive) {
    return new GuardedWorker(env, name, Value(), &busy_, exclusive, index_);
  }

  // train(x, n) and add(x, n): exclusive writes.
  Napi::Value Write(const Napi::CallbackInfo& info, bool train) {
    Napi::Env env = info.Env();
    const char* op = train ? "train" : "add";
    FaissIndex& index = use(env, op, true);
    ArgReader args(info, train ? "FaissIndex.train" : "FaissIndex.add");
    int64_t n = args.integer(1, "n");
    const float* x = args.float32(0, "x", n * index.dim());
    GuardedWorker* w = worker(env, train ? "FaissIndex.train" : "FaissIndex.add", true);
    w->pin(info[0]);
    w->work = [&index, x, n, train, finite = &w->finite] {
      if (!finite->check(x, n * index.dim(), "x", index.dim())) return;
      if (train) index.train(x, n);
      else index.add(x, n);
    };
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }
  Napi::Value Train(const Napi::CallbackInfo& info) { return Write(info, true); }
  Napi::Value Add(const Napi::CallbackInfo& info) { return Write(info, false); }

  Napi::Value Search(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    FaissIndex& index = use(env, "search", false);
    ArgReader args(info, "FaissIndex.search");
    int64_t m = args.integer(1, "m"), k = args.integer(2, "k");
    const float* queries = args.float32(0, "queries", m * index.dim());
    float* distances = args.float32(3, "distances", m * k);
    int32_t* indices = args.int32(4, "indices", m * k);
    GuardedWorker* w = worker(env, "FaissIndex.search", false);
    for (int i : {0, 3, 4}) w->pin(info[i]);
    w->work = [&index, queries, m, k, distances, indices, finite = &w->finite] {
      if (finite->check(queries, m * index.dim(), "queries", index.dim())) index.search(queries, m, k, distances, indices);
    };
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }

  Napi::Value Save(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    FaissIndex& index = use(env, "save", false);
    std::string path = ArgReader(info, "FaissIndex.save").string(0, "path");
    GuardedWorker* w = worker(env, "FaissIndex.save", false);
    w->work = [&index, path] { index.save(path); };
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }

  static Napi::Value Load(const Napi::CallbackInfo& info);

  // Setters are O(1) and synchronous, but must not change a parameter under a running search.
  Napi::Value SetNprobe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    FaissIndex& index = use(env, "nprobe", true);
    int64_t v = ArgReader(info, "FaissIndex.nprobe").integer(0, "nprobe");
    guard(env, [&] { index.setNprobe(v); });
    return env.Undefined();
  }
  Napi::Value SetEfSearch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    FaissIndex& index = use(env, "efSearch", true);
    int64_t v = ArgReader(info, "FaissIndex.efSearch").integer(0, "efSearch");
    guard(env, [&] { index.setEfSearch(v); });
    return env.Undefined();
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (index_) busy_.check(env, "FaissIndex.dispose", false, true);
    index_.reset();
    return env.Undefined();
  }
  Napi::Value Number(const Napi::CallbackInfo& info, int64_t (FaissIndex::*get)() const) {
    return index_ ? Napi::Value(Napi::Number::New(info.Env(), static_cast<double>((index_.get()->*get)())))
                  : info.Env().Null();
  }
  Napi::Value Nprobe(const Napi::CallbackInfo& info) { return Number(info, &FaissIndex::nprobe); }
  Napi::Value EfSearch(const Napi::CallbackInfo& info) { return Number(info, &FaissIndex::efSearch); }
  Napi::Value Size(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), index_ ? static_cast<double>(index_->size()) : 0);
  }
  Napi::Value Dim(const Napi::CallbackInfo& info) { return Number(info, &FaissIndex::dim); }
  Napi::Value IsTrained(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), index_ && index_->isTrained());
  }
  Napi::Value Factory(const Napi::CallbackInfo& info) {
    return index_ ? Napi::Value(Napi::String::New(info.Env(), index_->factory())) : info.Env().Null();
  }
  Napi::Value MetricName(const Napi::CallbackInfo& info) {
    return index_ ? Napi::Value(Napi::String::New(info.Env(), metricName(index_->metric()))) : info.Env().Null();
  }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !index_); }

  std::shared_ptr<FaissIndex> index_;
  BusyState busy_;
};

class FaissLoadWorker : public PromiseWorker {
 public:
  FaissLoadWorker(Napi::Env env, Napi::Function ctor, std::string path)
      : PromiseWorker(env, "FaissIndex.load"), ctor_(Napi::Persistent(ctor)), path_(std::move(path)) {}

 protected:
  void compute() override { index_ = std::make_shared<FaissIndex>(FaissIndex::load(path_)); }
  Napi::Value result(Napi::Env env) override {
    return ctor_.New({Napi::External<std::shared_ptr<FaissIndex>>::New(env, &index_)});
  }

 private:
  Napi::FunctionReference ctor_;
  std::string path_;
  std::shared_ptr<FaissIndex> index_;
};

Napi::Value FaissIndexWrap::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgReader(info, "FaissIndex.load").string(0, "path");
  if (!info.This().IsFunction())
    throw Napi::TypeError::New(env, "FaissIndex.load must be called as FaissIndex.load(path)");
  auto* w = new FaissLoadWorker(env, info.This().As<Napi::Function>(), path);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

void init(Napi::Env env, Napi::Object exports) { exports.Set("FaissIndex", FaissIndexWrap::define(env)); }

}  // namespace
ANOMALENS_REGISTER(knn_faiss, init);
}  // namespace anomalens::bindings
