// The one wrapper of a native object that JS holds and works on asynchronously (MemoryBank,
// FaissIndex): shared ownership of the object, the busy state (readers overlap, writers and
// dispose() need it alone), dispose(), `disposed`, and the methods both have with the same
// arguments: add-like writes (rows, n), search(queries, m, k, distances, indices) into
// caller-allocated outputs, save(path), and the static load(path) that builds a wrapper in
// this environment from a worker's result.
//
//   class MemoryBankWrap : public NativeObjectWrap<MemoryBankWrap, MemoryBank> { ... };
//   Napi::Value Add(const Napi::CallbackInfo& info) {
//     return write(info, "add", "rows", [](MemoryBank& b, const float* x, int64_t n) { b.add(x, n); });
//   }
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/args.h"
#include "core/busy.h"
#include "core/errors.h"
#include "core/finite.h"
#include "core/worker.h"

namespace anomalens::bindings {

template <class Derived, class T>
class NativeObjectWrap : public Napi::ObjectWrap<Derived> {
 public:
  NativeObjectWrap(const Napi::CallbackInfo& info, const char* className)
      : Napi::ObjectWrap<Derived>(info), className_(className) {}

  // Shared JS methods (registered by Derived::define with InstanceMethod("name", &Derived::X)).
  Napi::Value Save(const Napi::CallbackInfo& info) {
    T& object = use(info.Env(), "save", false);
    std::string path = ArgReader(info, className_ + ".save: ").string(0, "path");
    return run(info.Env(), "save", false, [&object, path](FiniteCheck&) { object.save(path); }, {});
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (object_) busy_.check(env, className_ + ".dispose", false, true);
    object_.reset();
    return env.Undefined();
  }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !object_); }

 protected:
  // The members every such class has: Derived defines Search and Load (public).
  static std::vector<typename Napi::ObjectWrap<Derived>::PropertyDescriptor> sharedMembers() {
    using W = Napi::ObjectWrap<Derived>;
    return {W::InstanceMethod("search", &Derived::Search), W::InstanceMethod("save", &Derived::Save),
            W::InstanceMethod("dispose", &Derived::Dispose), W::InstanceAccessor("disposed", &Derived::Disposed, nullptr),
            W::StaticMethod("load", &Derived::Load)};
  }
  static Napi::Function defineClass(Napi::Env env, const char* name,
                                    std::vector<typename Napi::ObjectWrap<Derived>::PropertyDescriptor> own) {
    auto members = sharedMembers();
    members.insert(members.end(), own.begin(), own.end());
    return Napi::ObjectWrap<Derived>::DefineClass(env, name, members);
  }

  // The object of a load(): `new Class(External<shared_ptr<T>>, ...)`. False for a `new Class(args)`.
  bool adopt(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsExternal()) return false;
    object_ = *info[0].As<Napi::External<std::shared_ptr<T>>>().Data();
    return true;
  }

  // The object, once `op` may start (ERR_DISPOSED / ERR_BUSY otherwise).
  T& use(Napi::Env env, const char* op, bool exclusive) {
    busy_.check(env, className_ + "." + op, !object_, exclusive);
    return *object_;
  }

  // Queues `work` on a worker that holds this object (and its wrapper) busy until it settles.
  Napi::Value run(Napi::Env env, const char* op, bool exclusive, TaskWorker::Work work,
                  std::initializer_list<Napi::Value> pins) {
    const std::string name = className_ + "." + op;
    auto* w = new TaskWorker(env, name.c_str(), std::move(work));
    w->hold(&busy_, exclusive, this->Value(), object_);
    for (const auto& v : pins) w->pin(v);
    return w->start();
  }

  // op(rows: Float32Array, n): an exclusive write of n x dim() rows, checked finite first.
  Napi::Value write(const Napi::CallbackInfo& info, const char* op, const char* rowsName,
                    std::function<void(T&, const float*, int64_t)> fn) {
    Napi::Env env = info.Env();
    T& object = use(env, op, true);
    ArgReader args(info, className_ + "." + op + ": ");
    const int64_t n = args.integer(1, "n"), d = object.dim();
    const float* x = args.float32(0, rowsName, n * d);
    return run(env, op, true, [&object, x, n, d, name = std::string(rowsName), fn](FiniteCheck& finite) {
      if (finite.check(x, {n, d}, name, kRowColumn)) fn(object, x, n);
    }, {info[0]});
  }

  // search(queries, m, k, distances, indices): a shared read into caller-allocated outputs.
  Napi::Value search(const Napi::CallbackInfo& info,
                     std::function<void(const T&, const float*, int64_t, int64_t, float*, int32_t*)> fn) {
    Napi::Env env = info.Env();
    T& object = use(env, "search", false);
    ArgReader args(info, className_ + ".search: ");
    const int64_t m = args.integer(1, "m"), k = args.integer(2, "k"), d = object.dim();
    const float* queries = args.float32(0, "queries", m * d);
    float* distances = args.float32(3, "distances", m * k);
    int32_t* indices = args.int32(4, "indices", m * k);
    return run(env, "search", false, [&object, queries, m, k, d, distances, indices, fn](FiniteCheck& finite) {
      if (finite.check(queries, {m, d}, "queries", kRowColumn)) fn(object, queries, m, k, distances, indices);
    }, {info[0], info[3], info[4]});
  }

  // Class.load(path, ...): `load` runs on the worker; the wrapper is made with this
  // environment's constructor `ctor` and (External, extra as a string).
  static Napi::Value loadWith(const Napi::CallbackInfo& info, const std::string& className,
                              Napi::FunctionReference& ctor, std::function<std::shared_ptr<T>()> load,
                              std::string extra) {
    Napi::Env env = info.Env();
    if (!info.This().IsFunction())
      throw Napi::TypeError::New(env, className + ".load must be called as " + className + ".load(path)");
    auto loaded = std::make_shared<std::shared_ptr<T>>();
    auto* w = new TaskWorker(
        env, (className + ".load").c_str(), [loaded, load](FiniteCheck&) { *loaded = load(); },
        [loaded, extra, &ctor](Napi::Env env) -> Napi::Value {
          return ctor.New({Napi::External<std::shared_ptr<T>>::New(env, loaded.get()), Napi::String::New(env, extra)});
        });
    return w->start();
  }

  std::string className_;
  std::shared_ptr<T> object_;
  BusyState busy_;
};

}  // namespace anomalens::bindings
