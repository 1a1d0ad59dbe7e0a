#include "dnnl_common.h"

#include <string>
#include <unordered_map>

namespace anomalens::train::detail {

dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

dnnl::memory::desc activationMd(const char* op, int64_t n, int64_t c, int64_t h, int64_t w, Layout layout) {
  if (layout == Layout::Blocked16)
    require(c % 16 == 0, std::string(op) + ": the blocked layout needs channels divisible by 16, received " +
                             std::to_string(c));
  return dnnl::memory::desc({n, c, h, w}, dt::f32, layout == Layout::Blocked16 ? tag::nChw16c : tag::nchw);
}

namespace {

void reorderBuffers(const dnnl::memory::desc& from, const float* src, const dnnl::memory::desc& to, float* dst) {
  dnnl::stream stream(engine());
  dnnl::memory a(from, engine(), const_cast<float*>(src)), b(to, engine(), dst);
  dnnl::reorder(a, b).execute(stream, a, b);
  stream.wait();
}

}  // namespace

void DnnlLayout::toPlain(const float* stored, float* plain) const { reorderBuffers(stored_, stored, plain_, plain); }
void DnnlLayout::fromPlain(const float* plain, float* stored) const { reorderBuffers(plain_, plain, stored_, stored); }

dnnl::memory::desc storedMd(const Param& p, const dnnl::memory::desc& plain) {
  const auto* l = dynamic_cast<const DnnlLayout*>(p.storageLayout().get());
  return l ? l->stored() : plain;
}

void adoptLayout(Param& p, const dnnl::memory::desc& plain, const dnnl::memory::desc& want) {
  if (p.storageLayout() || want == plain) return;
  if (want.get_size() != static_cast<size_t>(p.numel()) * sizeof(float)) return;  // padded: stays plain
  p.setStorageLayout(std::make_shared<DnnlLayout>(plain, want));
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
