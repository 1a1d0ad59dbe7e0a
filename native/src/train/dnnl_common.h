// oneDNN plumbing shared by the training ops: one CPU engine per process, a stream per call,
// user scratchpads (a call may run on any libuv worker, several at once), and reorders
// between the caller's plain NCHW buffers and the layouts the primitives choose.
#pragma once
#include <omp.h>

#include <dnnl.hpp>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "anomalens/core/error.h"
#include "anomalens/train/ops.h"
#include "anomalens/train/params.h"

namespace anomalens::train::detail {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using dims = dnnl::memory::dims;

dnnl::engine& engine();

// The descriptor of the caller's activation [n, c, h, w] in `layout` (nchw or nChw16c); throws
// InvalidArgument naming `op` when Blocked16 is asked for with c % 16 != 0.
dnnl::memory::desc activationMd(const char* op, int64_t n, int64_t c, int64_t h, int64_t w, Layout layout);
// A layout's part of a memoisation key.
inline const char* layoutKey(Layout l) { return l == Layout::Blocked16 ? "b16" : "nchw"; }

// A weight parameter's storage in a oneDNN layout (params.h StorageLayout).
class DnnlLayout final : public StorageLayout {
 public:
  DnnlLayout(const dnnl::memory::desc& plain, const dnnl::memory::desc& stored) : plain_(plain), stored_(stored) {}
  void toPlain(const float* stored, float* plain) const override;
  void fromPlain(const float* plain, float* stored) const override;
  const dnnl::memory::desc& stored() const { return stored_; }

 private:
  dnnl::memory::desc plain_, stored_;
};

// The descriptor of weight parameter p's storage: its layout's, or `plain` (its plain layout as
// the op sees it: oihw, or iohw for transposed convolutions) when it is stored plain.
dnnl::memory::desc storedMd(const Param& p, const dnnl::memory::desc& plain);
// Switches p's storage to `want` (the layout a kernel reads) when p is stored plain and `want`
// holds exactly numel() floats; otherwise leaves it (the op then reorders per call).
void adoptLayout(Param& p, const dnnl::memory::desc& plain, const dnnl::memory::desc& want);

// An attribute with the scratchpad owned by the caller.
dnnl::primitive_attr userScratchpad();

// One primitive call's memories, reorders and scratchpad.
class Call {
 public:
  Call();
  dnnl::stream& stream() { return stream_; }
  // A memory over the caller's buffer (const for inputs: oneDNN does not write it).
  dnnl::memory user(const dnnl::memory::desc& md, const float* data);
  dnnl::memory user(const dnnl::memory::desc& md, float* data);
  // An input in the layout `want`: the user memory itself, or a reordered copy.
  dnnl::memory input(const dnnl::memory::desc& want, const dnnl::memory& userMem);
  // An output in the layout `want`; when it differs from the user memory, the result is
  // reordered into the user memory by finish().
  dnnl::memory output(const dnnl::memory::desc& want, const dnnl::memory& userMem);
  dnnl::memory scratchpad(const dnnl::memory::desc& md);
  // Runs the primitive on this call's stream.
  void run(const dnnl::primitive& p, const std::unordered_map<int, dnnl::memory>& args);
  // Copies reordered outputs back and waits.
  void finish();

 private:
  dnnl::stream stream_;
  std::vector<std::pair<dnnl::memory, dnnl::memory>> pendingOut_;  // (primitive's, user's)
};

// Memoises primitive descriptors by a key describing the problem: creating one makes oneDNN
// try its implementations, which costs as much as running a small layer, and a training step
// asks for the same few hundred again and again. Bounded (cleared past 4096 entries).
//
// The calling thread's OpenMP thread count is part of the key: oneDNN fixes a primitive's
// thread count when its descriptor is created (the jit convolutions split their work for
// omp_get_max_threads() threads then, and run parallel(that count) ever after), so a descriptor
// made on 1 thread and reused after setNumThreads(2) keeps running on one thread, and one made
// on 2 threads runs on 2 after setNumThreads(1). The inference plan keys its plans the same way.
template <typename Pd, typename Make>
Pd cachedPd(const std::string& problem, Make&& make) {
  static std::mutex mu;
  static std::unordered_map<std::string, Pd> cache;
  const std::string key = problem + "|t" + std::to_string(omp_get_max_threads());
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  Pd pd = make();
  std::lock_guard<std::mutex> lock(mu);
  if (cache.size() >= 4096) cache.clear();
  cache.emplace(key, pd);
  return pd;
}

// Wraps oneDNN failures into anomalens::Error naming the op.
template <typename F>
void guarded(const char* op, F&& fn) {
  try {
    fn();
  } catch (const dnnl::error& e) {
    throw Error(ErrorCode::Internal, std::string(op) + ": oneDNN failed: " + e.what());
  }
}

}  // namespace anomalens::train::detail
