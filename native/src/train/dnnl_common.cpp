#include "dnnl_common.h"

#include <unordered_map>

namespace anomalens::train::detail {

dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

dnnl::primitive_attr userScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

Call::Call() : stream_(engine()) {}

dnnl::memory Call::user(const dnnl::memory::desc& md, const float* data) {
  return dnnl::memory(md, engine(), const_cast<float*>(data));
}

dnnl::memory Call::user(const dnnl::memory::desc& md, float* data) { return dnnl::memory(md, engine(), data); }

dnnl::memory Call::input(const dnnl::memory::desc& want, const dnnl::memory& userMem) {
  if (want == userMem.get_desc()) return userMem;
  dnnl::memory m(want, engine()), src = userMem;
  dnnl::reorder(src, m).execute(stream_, src, m);
  return m;
}

dnnl::memory Call::output(const dnnl::memory::desc& want, const dnnl::memory& userMem) {
  if (want == userMem.get_desc()) return userMem;
  dnnl::memory m(want, engine());
  pendingOut_.emplace_back(m, userMem);
  return m;
}

dnnl::memory Call::scratchpad(const dnnl::memory::desc& md) { return dnnl::memory(md, engine()); }

void Call::run(const dnnl::primitive& p, const std::unordered_map<int, dnnl::memory>& args) {
  p.execute(stream_, args);
}

void Call::finish() {
  for (auto& [prim, user] : pendingOut_) dnnl::reorder(prim, user).execute(stream_, prim, user);
  pendingOut_.clear();
  stream_.wait();
}

}  // namespace anomalens::train::detail
