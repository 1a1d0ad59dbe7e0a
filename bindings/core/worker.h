// The one queue/worker helper. Every asynchronous binding is a PromiseWorker:
//   main thread   the binding reads its arguments (args.h) into plain C++ values, creates the
//                 worker, pins the JS values whose memory the worker reads or writes, and
//                 returns worker->start() (the Promise);
//   worker thread compute(): no Node-API, may throw anomalens::Error, may scan inputs with
//                 finite().check();
//   main thread   OnOK: a non-finite input found by finite() rejects with its RangeError,
//                 otherwise result() builds the resolved value; anomalens::Error becomes a
//                 rejection with `.code`.
// A worker may hold() a busy state (busy.h) from queueing to settling.
//
//   auto* w = new TaskWorker(env, "padimScore", [=] { ... }, [=](Napi::Env env) { ... });
//   w->pin(info[0]);
//   return w->start();
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "anomalens/core/tensor.h"
#include "core/busy.h"
#include "core/errors.h"
#include "core/finite.h"

namespace anomalens::bindings {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* name);
  // Keeps `value` alive (and its backing store unmoved) until the worker settles.
  // Undefined and null are ignored.
  void pin(Napi::Value value);
  // Marks `busy` (exclusive or shared) until the worker settles; `owner` is pinned, `keepAlive`
  // (the native object) held, so that neither goes away while the work runs.
  void hold(BusyState* busy, bool exclusive, Napi::Value owner, std::shared_ptr<void> keepAlive);
  // Queues the work and returns its Promise. The worker deletes itself when settled.
  Napi::Promise start();
  // The finiteness check of this worker's inputs (worker thread: check(); reported in OnOK).
  FiniteCheck& finite() { return finite_; }

 protected:
  virtual void compute() = 0;
  virtual Napi::Value result(Napi::Env env) = 0;
  // Called on the main thread when the work finished, successfully or not, before settling.
  virtual void finished() {}

 private:
  void Execute() final;
  void OnOK() final;
  void OnError(const Napi::Error& e) final;
  void release();
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::Reference<Napi::Value>> pinned_;
  std::string code_ = "ERR_INTERNAL";
  FiniteCheck finite_;
  BusyState* busy_ = nullptr;
  bool exclusive_ = false;
  std::shared_ptr<void> keepAlive_;
};

// A PromiseWorker from two functions: `work` on the worker thread, `done` on the main thread
// (default: resolve undefined).
class TaskWorker : public PromiseWorker {
 public:
  using Work = std::function<void(FiniteCheck&)>;
  using Done = std::function<Napi::Value(Napi::Env)>;
  TaskWorker(Napi::Env env, const char* name, Work work, Done done = nullptr)
      : PromiseWorker(env, name), work_(std::move(work)), done_(std::move(done)) {}

 protected:
  void compute() override { work_(finite()); }
  Napi::Value result(Napi::Env env) override { return done_ ? done_(env) : env.Undefined(); }

 private:
  Work work_;
  Done done_;
};

// ---- results -----------------------------------------------------------------------------
// A Float32Array over the tensor's own storage (no copy; the storage lives until GC).
Napi::Float32Array toFloat32Array(Napi::Env env, const Tensor& t);
// A Float64Array over the vector's heap storage (no copy; freed by the GC).
Napi::Float64Array toFloat64Array(Napi::Env env, std::vector<double>&& values);
Napi::Array shapeToJs(Napi::Env env, const Shape& shape);
Napi::Array stringsToJs(Napi::Env env, const std::vector<std::string>& values);

}  // namespace anomalens::bindings
