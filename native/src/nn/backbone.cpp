// oneDNN implementation of Backbone. See anomalens/nn/backbone.h.
//
// A forward "plan" is built per (input shape, deepest tap, taps, thread count): a list of
// oneDNN primitives over a handful of reusable activation buffers ("slots"). Convolutions
// take their source in whatever layout the previous layer produced (blocked, e.g. nChw16c)
// and choose their own destination layout; residual additions are sum post-ops written in
// place into the shortcut's buffer, so a block costs exactly its convolutions.
#include "anomalens/nn/backbone.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <set>
#include <unordered_map>

#include "anomalens/core/error.h"
#include "anomalens/io/safetensors.h"
#include "nn/resnet_spec.h"

namespace anomalens {
namespace {

using dnnl::algorithm;
using dnnl::memory;
using dnnl::prop_kind;
using tag = memory::format_tag;
using dt = memory::data_type;

// Convolution with batch-norm folded in (float64 arithmetic, float32 result).
struct FoldedConv {
  resnet::ConvDef def;
  Tensor weight;  // [cout, cin, k, k], plain oihw
  Tensor bias;    // [cout]
  // Weights reordered to the layout a primitive asked for, keyed by that layout.
  std::vector<std::pair<memory::desc, memory>> reordered;
};

// A standalone inference batch-norm (v2 pre-activation, data BN).
struct PlainBn {
  Tensor mean, var, scale, shift;  // [c]
};

struct Step {
  dnnl::primitive prim;
  std::unordered_map<int, memory> args;
  std::string name;
  std::string impl;
  double gflop = 0;
};

struct TapOutput {
  std::string name;
  memory plain;  // NCHW, data handle set per run
  Shape shape;
};

struct Plan {
  std::vector<Step> steps;
  memory input;  // NCHW user input, data handle set per run
  std::vector<TapOutput> outputs;
  std::vector<std::shared_ptr<void>> buffers;
};

int64_t convOut(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

std::shared_ptr<void> alignedBuffer(size_t bytes) {
  void* p = std::aligned_alloc(64, std::max<size_t>(64, (bytes + 63) / 64 * 64));
  if (!p) throw Error(ErrorCode::Internal, "out of memory allocating " + std::to_string(bytes) + " bytes of activations");
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

class OneDnnBackbone;

// Builds a plan: tracks which memory objects live in which slot, sizes the slots at the end.
class PlanBuilder {
 public:
  PlanBuilder(dnnl::engine& eng, dnnl::stream& strm, Plan& plan) : eng_(eng), strm_(strm), plan_(plan) {}

  // A new memory of `md` living in `slot`.
  memory inSlot(const memory::desc& md, int slot) {
    memory m(md, eng_, DNNL_MEMORY_NONE);
    if (static_cast<size_t>(slot) >= slotBytes_.size()) slotBytes_.resize(slot + 1, 0);
    slotBytes_[slot] = std::max(slotBytes_[slot], md.get_size());
    slotMemories_.emplace_back(slot, m);
    return m;
  }

  // Lowest slot not in `busy`.
  static int freeSlot(std::initializer_list<int> busy) {
    for (int s = 0;; ++s)
      if (std::find(busy.begin(), busy.end(), s) == busy.end()) return s;
  }

  // Convolution (+ folded BN bias) [+ sum into `sumInto`] [+ ReLU]; output in `slot` unless
  // summing, in which case the output is `sumInto` itself.
  memory conv(const memory& src, FoldedConv& c, bool relu, const memory* sumInto, int slot) {
    const memory::desc srcMd = src.get_desc();
    const memory::dims sd = srcMd.dims();
    const int64_t n = sd[0], h = sd[2], w = sd[3];
    const auto& d = c.def;
    const int64_t oh = convOut(h, d.k, d.stride, d.pad), ow = convOut(w, d.k, d.stride, d.pad);
    require(oh >= 1 && ow >= 1, "input is too small for " + d.name + ": " + std::to_string(h) + "x" +
                                    std::to_string(w) + " gives an empty output");
    // oneDNN derives the output size as (in - k + pl + pr) / s + 1; choose pr so that it equals
    // PyTorch's floor((in + 2p - k) / s) + 1 (pr may be smaller than pl, even negative).
    const int64_t prH = (oh - 1) * d.stride + d.k - h - d.pad;
    const int64_t prW = (ow - 1) * d.stride + d.k - w - d.pad;
    memory::desc wMd({d.cout, d.cin, d.k, d.k}, dt::f32, tag::any);
    memory::desc bMd({d.cout}, dt::f32, tag::x);
    memory::desc dstMd = sumInto ? sumInto->get_desc() : memory::desc({n, d.cout, oh, ow}, dt::f32, tag::any);
    dnnl::post_ops ops;
    if (sumInto) ops.append_sum(1.f);
    if (relu) ops.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
    dnnl::primitive_attr attr = scratchAttr();
    attr.set_post_ops(ops);
    auto makePd = [&](algorithm alg) {
      dnnl::convolution_forward::desc desc(prop_kind::forward_inference, alg, srcMd, wMd, bMd, dstMd,
                                           {d.stride, d.stride}, {d.pad, d.pad}, {prH, prW});
      return dnnl::convolution_forward::primitive_desc(desc, attr, eng_);
    };
    // Winograd (F(4x4, 3x3) at batch >= 2, F(2x2, 3x3) at batch 1) does 3x3 stride-1 layers in
    // 1.5-3.5x less time than direct convolution on AVX-512, with errors of the same order
    // (test/backbone.test.ts); direct everywhere else, or when ANOMALENS_CONV_DIRECT is set.
    static const bool forceDirect = std::getenv("ANOMALENS_CONV_DIRECT") != nullptr;
    dnnl::convolution_forward::primitive_desc pd;
    bool made = false;
    if (!forceDirect && d.k == 3 && d.stride == 1) {
      try {
        pd = makePd(algorithm::convolution_winograd);
        made = true;
      } catch (const dnnl::error&) {
        // no Winograd kernel for this shape or ISA: direct below
      }
    }
    if (!made) pd = makePd(algorithm::convolution_direct);
    memory dst = sumInto ? *sumInto : inSlot(pd.dst_desc(), slot);
    Step st;
    st.prim = dnnl::convolution_forward(pd);
    st.args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weightsFor(c, pd.weights_desc())},
               {DNNL_ARG_BIAS, memory(bMd, eng_, c.bias.data())}, {DNNL_ARG_DST, dst}};
    addScratchpad(st, pd.scratchpad_desc());
    st.name = d.name;
    st.impl = pd.impl_info_str();
    st.gflop = 2.0 * n * d.cout * oh * ow * d.cin * d.k * d.k * 1e-9;
    plan_.steps.push_back(std::move(st));
    return dst;
  }

  // Inference batch-norm (+ ReLU) into `slot`, same layout as the source.
  memory batchNorm(const memory& src, PlainBn& bn, float eps, bool relu, int slot, const std::string& name) {
    auto flags = dnnl::normalization_flags::use_global_stats | dnnl::normalization_flags::use_scale |
                 dnnl::normalization_flags::use_shift;
    if (relu) flags = flags | dnnl::normalization_flags::fuse_norm_relu;
    dnnl::batch_normalization_forward::desc desc(prop_kind::forward_inference, src.get_desc(), eps, flags);
    dnnl::batch_normalization_forward::primitive_desc pd(desc, scratchAttr(), eng_);
    memory dst = inSlot(pd.dst_desc(), slot);
    memory::desc cMd({bn.mean.dim(0)}, dt::f32, tag::x);
    Step st;
    st.prim = dnnl::batch_normalization_forward(pd);
    st.args = {{DNNL_ARG_SRC, src},
               {DNNL_ARG_DST, dst},
               {DNNL_ARG_MEAN, memory(cMd, eng_, bn.mean.data())},
               {DNNL_ARG_VARIANCE, memory(cMd, eng_, bn.var.data())},
               {DNNL_ARG_SCALE, memory(cMd, eng_, bn.scale.data())},
               {DNNL_ARG_SHIFT, memory(cMd, eng_, bn.shift.data())}};
    addScratchpad(st, pd.scratchpad_desc());
    st.name = name;
    st.impl = pd.impl_info_str();
    plan_.steps.push_back(std::move(st));
    return dst;
  }

  memory pool(const memory& src, algorithm alg, int64_t k, int64_t stride, int64_t pad, int slot,
              const std::string& name, bool global = false) {
    const memory::dims sd = src.get_desc().dims();
    const int64_t n = sd[0], c = sd[1], h = sd[2], w = sd[3];
    const int64_t kh = global ? h : k, kw = global ? w : k;
    const int64_t oh = global ? 1 : convOut(h, k, stride, pad), ow = global ? 1 : convOut(w, k, stride, pad);
    require(oh >= 1 && ow >= 1, "input is too small for " + name);
    const int64_t prH = global ? 0 : (oh - 1) * stride + k - h - pad;
    const int64_t prW = global ? 0 : (ow - 1) * stride + k - w - pad;
    memory::desc dstMd({n, c, oh, ow}, dt::f32, tag::any);
    dnnl::pooling_forward::desc desc(prop_kind::forward_inference, alg, src.get_desc(), dstMd,
                                     {global ? 1 : stride, global ? 1 : stride}, {kh, kw},
                                     {global ? 0 : pad, global ? 0 : pad}, {prH, prW});
    dnnl::pooling_forward::primitive_desc pd(desc, scratchAttr(), eng_);
    memory dst = inSlot(pd.dst_desc(), slot);
    Step st;
    st.prim = dnnl::pooling_forward(pd);
    st.args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
    addScratchpad(st, pd.scratchpad_desc());
    st.name = name;
    st.impl = pd.impl_info_str();
    plan_.steps.push_back(std::move(st));
    return dst;
  }

  // Reorders `src` into a plain NCHW output tensor for `tap` (handle set per run).
  void tap(const memory& src, const std::string& name) {
    const memory::dims sd = src.get_desc().dims();
    memory::desc plainMd(sd, dt::f32, tag::nchw);
    memory plain(plainMd, eng_, DNNL_MEMORY_NONE);
    dnnl::reorder::primitive_desc pd(src, plain, scratchAttr());
    Step st;
    st.prim = dnnl::reorder(pd);
    st.args = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, plain}};
    addScratchpad(st, pd.scratchpad_desc());
    st.name = name + " (to NCHW)";
    st.impl = "reorder";
    plan_.steps.push_back(std::move(st));
    plan_.outputs.push_back(TapOutput{name, plain, Shape(sd.begin(), sd.end())});
  }

  // Allocates the slots and the scratchpad and points every memory at its buffer.
  void finish() {
    std::vector<void*> ptrs;
    for (size_t bytes : slotBytes_) {
      plan_.buffers.push_back(alignedBuffer(bytes));
      ptrs.push_back(plan_.buffers.back().get());
    }
    for (auto& [slot, m] : slotMemories_) m.set_data_handle(ptrs[slot]);
    if (!scratch_.empty()) {
      plan_.buffers.push_back(alignedBuffer(scratchBytes_));
      for (auto& m : scratch_) m.set_data_handle(plan_.buffers.back().get());
    }
  }

 private:
  // oneDNN's default scratchpad is per executing thread, but a plan built on one libuv worker
  // runs on whichever worker takes the next extract(): every primitive gets the plan's own
  // scratchpad instead (steps run one after another, so one buffer serves them all).
  static dnnl::primitive_attr scratchAttr() {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    return attr;
  }
  void addScratchpad(Step& st, const memory::desc& md) {
    if (md.get_size() == 0) return;
    memory m(md, eng_, DNNL_MEMORY_NONE);
    scratchBytes_ = std::max(scratchBytes_, md.get_size());
    scratch_.push_back(m);
    st.args[DNNL_ARG_SCRATCHPAD] = m;
  }

  memory weightsFor(FoldedConv& c, const memory::desc& md) {
    for (auto& [have, mem] : c.reordered)
      if (have == md) return mem;
    memory plain({{c.def.cout, c.def.cin, c.def.k, c.def.k}, dt::f32, tag::oihw}, eng_, c.weight.data());
    memory mem(md, eng_);
    dnnl::reorder(plain, mem).execute(strm_, plain, mem);
    strm_.wait();
    c.reordered.emplace_back(md, mem);
    return mem;
  }

  dnnl::engine& eng_;
  dnnl::stream& strm_;
  Plan& plan_;
  std::vector<size_t> slotBytes_;
  std::vector<std::pair<int, memory>> slotMemories_;
  std::vector<memory> scratch_;
  size_t scratchBytes_ = 0;
};

struct FoldedBlock {
  std::vector<FoldedConv> convs;
  PlainBn preBn;  // v2
  bool hasProj = false;
  FoldedConv proj;
};

class OneDnnBackbone : public Backbone {
 public:
  OneDnnBackbone(resnet::ResnetDef def, const SafetensorsFile& file) : def_(std::move(def)), eng_(dnnl::engine::kind::cpu, 0), strm_(eng_) {
    validate(file);
    loadWeights(file);
  }

  const std::string& arch() const override { return def_.arch; }

  std::vector<std::string> taps() const override {
    std::vector<std::string> t{"stem"};
    for (const auto& s : def_.stages) t.push_back(s.tap);
    t.push_back("avgpool");
    return t;
  }

  std::vector<std::string> availableTaps() const override {
    std::vector<std::string> all = taps();
    return std::vector<std::string>(all.begin(), all.begin() + 1 + stagesLoaded_ + (avgpoolLoaded_ ? 1 : 0));
  }

  int64_t tapChannels(const std::string& tap) const override {
    int idx = tapIndex(tap);
    if (idx == 0) return 64;
    if (idx <= 4) return def_.stages[idx - 1].outChannels;
    return def_.stages[3].outChannels;
  }

  Shape tapShape(const std::string& tap, const Shape& input) const override {
    require(input.size() == 4, "input must be [n, 3, h, w], received " + shapeString(input));
    int idx = tapIndex(tap);
    int64_t h = convOut(convOut(input[2], 7, 2, 3), 3, 2, 1), w = convOut(convOut(input[3], 7, 2, 3), 3, 2, 1);
    for (int s = 1; s <= std::min(idx, 4); ++s)
      if (s > 1) h = convOut(h, 3, 2, 1), w = convOut(w, 3, 2, 1);
    if (idx == 5) h = w = 1;
    return {input[0], tapChannels(tap), h, w};
  }

  std::map<std::string, Tensor> extract(const TensorView& input, const std::vector<std::string>& taps,
                                        std::vector<LayerProfile>* profile) override {
    require(input.shape.size() == 4 && input.shape[1] == 3,
            "input must have shape [n, 3, h, w], received " + shapeString(input.shape));
    require(input.shape[0] >= 1 && input.shape[2] >= 1 && input.shape[3] >= 1,
            "input dimensions must be >= 1, received " + shapeString(input.shape));
    require(!taps.empty(), "at least one tap is required");
    std::vector<int> idx;
    for (const auto& t : taps) {
      int i = tapIndex(t);
      checkAvailable(t, i);
      if (std::find(idx.begin(), idx.end(), i) != idx.end()) throw Error(ErrorCode::InvalidArgument, "tap '" + t + "' is requested twice");
      idx.push_back(i);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    Plan& plan = planFor(input.shape, idx);
    std::map<std::string, Tensor> out;
    plan.input.set_data_handle(const_cast<float*>(input.data));
    for (auto& o : plan.outputs) {
      Tensor t(o.shape);
      o.plain.set_data_handle(t.data());
      out.emplace(o.name, std::move(t));
    }
    if (!profile) {
      for (auto& st : plan.steps) st.prim.execute(strm_, st.args);
      strm_.wait();
    } else {
      profile->clear();
      for (auto& st : plan.steps) {
        auto t0 = std::chrono::steady_clock::now();
        st.prim.execute(strm_, st.args);
        strm_.wait();
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        profile->push_back(LayerProfile{st.name, st.impl, ms, st.gflop});
      }
    }
    // Detach user memory so no stale pointer survives in the cached plan.
    plan.input.set_data_handle(DNNL_MEMORY_NONE);
    for (auto& o : plan.outputs) o.plain.set_data_handle(DNNL_MEMORY_NONE);
    return out;
  }

 private:
  int tapIndex(const std::string& tap) const {
    std::vector<std::string> all = taps();
    auto it = std::find(all.begin(), all.end(), tap);
    if (it == all.end()) {
      std::string list;
      for (const auto& t : all) list += (list.empty() ? "'" : ", '") + t + "'";
      throw Error(ErrorCode::InvalidArgument, "unknown tap '" + tap + "' for " + def_.arch + "; expected one of " + list);
    }
    return static_cast<int>(it - all.begin());
  }

  void checkAvailable(const std::string& tap, int idx) const {
    if (idx <= stagesLoaded_ || (idx == 5 && avgpoolLoaded_)) return;
    std::vector<std::string> need;
    for (int s = stagesLoaded_; s < std::min(idx, 4); ++s)
      for (const auto& b : def_.stages[s].blocks) resnet::collectTensors(b, need);
    if (idx == 5 && def_.v2) resnet::collectTensors(def_.finalBn, need);
    std::string list;
    for (size_t i = 0; i < need.size() && i < 4; ++i) list += (i ? ", " : "") + need[i];
    std::vector<std::string> avail = availableTaps();
    throw Error(ErrorCode::WeightsMismatch,
                "tap '" + tap + "' needs tensors absent from the weights file '" + path_ + "': " + list +
                    (need.size() > 4 ? " (and " + std::to_string(need.size() - 4) + " more)" : "") +
                    "; the file holds taps up to '" + avail.back() + "'");
  }

  // ---- weights ---------------------------------------------------------------------------
  void validate(const SafetensorsFile& file) {
    path_ = file.path();
    std::map<std::string, Shape> expected;
    auto expectBn = [&](const resnet::BnDef& bn) {
      for (const auto& n : {bn.gamma, bn.beta, bn.mean, bn.var}) expected[n] = {bn.c};
    };
    auto expectConv = [&](const resnet::ConvDef& c) { expected[c.weight] = {c.cout, c.cin, c.k, c.k}; };
    auto expectBlock = [&](const resnet::BlockDef& b) {
      for (const auto& c : b.convs) expectConv(c);
      for (const auto& bn : b.bns) expectBn(bn);
      if (b.hasProj) {
        expectConv(b.proj);
        if (!b.projBn.gamma.empty()) expectBn(b.projBn);
      }
    };
    if (def_.v2) expectBn(def_.dataBn);
    expectConv(def_.stemConv);
    expectBn(def_.stemBn);
    std::vector<std::vector<std::string>> stageNames;
    for (const auto& s : def_.stages) {
      std::vector<std::string> names;
      for (const auto& b : s.blocks) {
        expectBlock(b);
        resnet::collectTensors(b, names);
      }
      stageNames.push_back(std::move(names));
    }
    if (def_.v2) expectBn(def_.finalBn);

    // Unexpected tensors first: they usually mean the wrong arch was chosen.
    std::vector<std::string> unexpected;
    for (const auto& [name, entry] : file.entries()) {
      if (expected.count(name)) continue;
      if (std::find(def_.headTensors.begin(), def_.headTensors.end(), name) != def_.headTensors.end()) continue;
      bool ignored = false;
      for (const auto& suf : def_.ignoredSuffixes)
        if (name.size() >= suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0) ignored = true;
      if (!ignored) unexpected.push_back(name);
    }
    if (!unexpected.empty()) {
      std::string list;
      for (size_t i = 0; i < unexpected.size() && i < 5; ++i) list += (i ? ", " : "") + unexpected[i];
      throw Error(ErrorCode::WeightsMismatch,
                  "weights file '" + path_ + "' has " + std::to_string(unexpected.size()) + " tensor(s) unexpected for " +
                      def_.arch + ": " + list + (unexpected.size() > 5 ? ", ..." : "") + " (is the arch right?)");
    }
    for (const auto& [name, shape] : expected) {
      if (!file.has(name)) continue;
      const auto& e = file.entry(name);
      if (e.shape != shape)
        throw Error(ErrorCode::WeightsMismatch, "tensor '" + name + "' in '" + path_ + "' has shape " +
                                                    shapeString(e.shape) + ", expected " + shapeString(shape) +
                                                    " for " + def_.arch);
    }
    auto missingOf = [&](const std::vector<std::string>& names) {
      std::vector<std::string> m;
      for (const auto& n : names)
        if (!file.has(n)) m.push_back(n);
      return m;
    };
    auto missingError = [&](const std::string& what, const std::vector<std::string>& m) {
      std::string list;
      for (size_t i = 0; i < m.size() && i < 5; ++i) list += (i ? ", " : "") + m[i];
      return Error(ErrorCode::WeightsMismatch, "weights file '" + path_ + "' lacks " + std::to_string(m.size()) +
                                                   " tensor(s) of " + what + " for " + def_.arch + ": " + list +
                                                   (m.size() > 5 ? ", ..." : ""));
    };
    std::vector<std::string> stem;
    if (def_.v2) resnet::collectTensors(def_.dataBn, stem);
    stem.push_back(def_.stemConv.weight);
    resnet::collectTensors(def_.stemBn, stem);
    if (auto m = missingOf(stem); !m.empty()) throw missingError("the stem", m);
    stagesLoaded_ = 0;
    int absent = -1;  // first stage with none of its tensors
    for (size_t s = 0; s < stageNames.size(); ++s) {
      auto m = missingOf(stageNames[s]);
      if (m.size() == stageNames[s].size()) {
        if (absent < 0) absent = static_cast<int>(s);
        continue;
      }
      if (!m.empty()) throw missingError(def_.stages[s].tap, m);
      // A complete stage after an absent one: the absent stage is the problem.
      if (absent >= 0) throw missingError(def_.stages[absent].tap, missingOf(stageNames[absent]));
      stagesLoaded_ = static_cast<int>(s) + 1;
    }
    if (stagesLoaded_ == 4) {
      if (def_.v2) {
        std::vector<std::string> fin;
        resnet::collectTensors(def_.finalBn, fin);
        auto m = missingOf(fin);
        if (!m.empty() && m.size() != fin.size()) throw missingError("the final batch-norm", m);
        avgpoolLoaded_ = m.empty();
      } else {
        avgpoolLoaded_ = true;
      }
    }
  }

  static std::vector<double> readD(const SafetensorsFile& f, const std::string& name) {
    Tensor t = f.toFloat(name);
    return std::vector<double>(t.data(), t.data() + t.numel());
  }

  // conv followed by bn (bn may be null: identity with zero bias).
  FoldedConv fold(const SafetensorsFile& f, const resnet::ConvDef& c, const resnet::BnDef* bn) {
    FoldedConv out;
    out.def = c;
    out.weight = f.toFloat(c.weight);
    out.bias = Tensor::zeros({c.cout});
    if (!bn) return out;
    auto g = readD(f, bn->gamma), b = readD(f, bn->beta), m = readD(f, bn->mean), v = readD(f, bn->var);
    const int64_t per = c.cin * c.k * c.k;
    for (int64_t o = 0; o < c.cout; ++o) {
      require(v[o] + def_.eps > 0, "tensor '" + bn->var + "' has a negative variance at index " + std::to_string(o),
              ErrorCode::WeightsMismatch);
      double scale = g[o] / std::sqrt(v[o] + static_cast<double>(def_.eps));
      float* w = out.weight.data() + o * per;
      for (int64_t i = 0; i < per; ++i) w[i] = static_cast<float>(w[i] * scale);
      out.bias.data()[o] = static_cast<float>(b[o] - m[o] * scale);
    }
    return out;
  }

  PlainBn plainBn(const SafetensorsFile& f, const resnet::BnDef& bn) {
    return PlainBn{f.toFloat(bn.mean), f.toFloat(bn.var), f.toFloat(bn.gamma), f.toFloat(bn.beta)};
  }

  void loadWeights(const SafetensorsFile& f) {
    if (def_.v2) dataBn_ = plainBn(f, def_.dataBn);
    stem_ = fold(f, def_.stemConv, &def_.stemBn);
    for (int s = 0; s < stagesLoaded_; ++s) {
      std::vector<FoldedBlock> blocks;
      for (const auto& b : def_.stages[s].blocks) {
        FoldedBlock fb;
        const size_t nc = b.convs.size();
        for (size_t i = 0; i < nc; ++i) {
          const resnet::BnDef* bn = def_.v2 ? (i + 1 < nc ? &b.bns[i + 1] : nullptr) : &b.bns[i];
          fb.convs.push_back(fold(f, b.convs[i], bn));
        }
        if (def_.v2) fb.preBn = plainBn(f, b.bns[0]);
        fb.hasProj = b.hasProj;
        if (b.hasProj) fb.proj = fold(f, b.proj, def_.v2 ? nullptr : &b.projBn);
        blocks.push_back(std::move(fb));
      }
      stages_.push_back(std::move(blocks));
    }
    if (avgpoolLoaded_ && def_.v2) finalBn_ = plainBn(f, def_.finalBn);
  }

  // ---- plans -----------------------------------------------------------------------------
  Plan& planFor(const Shape& in, const std::vector<int>& tapIdx) {
    std::string key = shapeString(in) + "|" + std::to_string(omp_get_max_threads());
    std::vector<int> sorted = tapIdx;
    std::sort(sorted.begin(), sorted.end());
    for (int i : sorted) key += "," + std::to_string(i);
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    // Plans hold activation buffers; keep a few shapes only.
    if (plans_.size() >= 4) plans_.clear();
    Plan& plan = plans_[key];
    try {
      build(plan, in, sorted);
    } catch (const dnnl::error& e) {
      plans_.erase(key);
      throw Error(ErrorCode::Internal, std::string("oneDNN could not build the forward pass: ") + e.what());
    } catch (...) {
      plans_.erase(key);
      throw;
    }
    return plan;
  }

  void build(Plan& plan, const Shape& in, const std::vector<int>& tapIdx) {
    PlanBuilder b(eng_, strm_, plan);
    const int deepest = tapIdx.back();
    auto wanted = [&](int i) { return std::find(tapIdx.begin(), tapIdx.end(), i) != tapIdx.end(); };
    const std::vector<std::string> names = taps();
    memory::desc inMd({in[0], in[1], in[2], in[3]}, dt::f32, tag::nchw);
    plan.input = memory(inMd, eng_, DNNL_MEMORY_NONE);

    // Stem. Slots: x is the residual stream, the others are scratch.
    memory x = plan.input;
    int xs = -1;
    if (def_.v2) {
      x = b.batchNorm(x, dataBn_, def_.eps, false, 0, "batchnorm0 (data)");
      xs = 0;
    }
    int cs = PlanBuilder::freeSlot({xs});
    memory c = b.conv(x, stem_, true, nullptr, cs);
    xs = PlanBuilder::freeSlot({cs});
    x = b.pool(c, algorithm::pooling_max, 3, 2, 1, xs, "maxpool");
    if (wanted(0)) b.tap(x, names[0]);

    for (int s = 0; s < std::min(deepest, 4); ++s) {
      for (auto& blk : stages_[s]) {
        memory p = x;
        int ps = xs;
        if (def_.v2) {
          ps = PlanBuilder::freeSlot({xs});
          p = b.batchNorm(x, blk.preBn, def_.eps, true, ps, blk.convs[0].def.name + " pre-activation");
        }
        // Main path: every conv but the last into scratch slots.
        memory y = p;
        int ys = ps;
        for (size_t i = 0; i + 1 < blk.convs.size(); ++i) {
          int s2 = PlanBuilder::freeSlot({xs, ps, ys});
          y = b.conv(y, blk.convs[i], true, nullptr, s2);
          ys = s2;
        }
        memory shortcut = x;
        int ss = xs;
        if (blk.hasProj) {
          ss = PlanBuilder::freeSlot({xs, ps, ys});
          shortcut = b.conv(p, blk.proj, false, nullptr, ss);
        }
        // Last conv: sum into the shortcut in place, ReLU after the sum for v1.
        x = b.conv(y, blk.convs.back(), !def_.v2, &shortcut, ss);
        xs = ss;
      }
      if (wanted(s + 1)) b.tap(x, names[s + 1]);
    }
    if (deepest == 5) {
      if (def_.v2) {
        int fs = PlanBuilder::freeSlot({xs});
        x = b.batchNorm(x, finalBn_, def_.eps, true, fs, "batchnorm2 (final)");
        xs = fs;
      }
      x = b.pool(x, algorithm::pooling_avg_exclude_padding, 0, 1, 0, PlanBuilder::freeSlot({xs}), "avgpool", true);
      b.tap(x, names[5]);
    }
    b.finish();
  }

  resnet::ResnetDef def_;
  std::string path_;
  int stagesLoaded_ = 0;
  bool avgpoolLoaded_ = false;
  dnnl::engine eng_;
  dnnl::stream strm_;
  PlainBn dataBn_, finalBn_;
  FoldedConv stem_;
  std::vector<std::vector<FoldedBlock>> stages_;
  std::map<std::string, Plan> plans_;
  std::mutex mutex_;
};

std::string detectV2Prefix(const SafetensorsFile& f, const std::string& arch) {
  for (const auto& [name, e] : f.entries()) {
    const std::string suffix = "_conv0_weight";
    if (name.rfind("resnetv2", 0) == 0 && name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        name.find("stage") == std::string::npos)
      return name.substr(0, name.size() - suffix.size() + 1);
  }
  throw Error(ErrorCode::WeightsMismatch, "weights file '" + f.path() + "' has no ONNX Model Zoo stem tensor " +
                                              "(resnetv2*_conv0_weight) expected for " + arch +
                                              "; is it a torchvision file (use the arch without _v2)?");
}

}  // namespace

std::unique_ptr<Backbone> Backbone::load(const std::string& arch, const std::string& weightsPath) {
  resnet::makeResnet(arch, "");  // validates the arch name before touching the file
  SafetensorsFile file = SafetensorsFile::read(weightsPath);
  std::string prefix = resnet::isV2(arch) ? detectV2Prefix(file, arch) : "";
  try {
    return std::make_unique<OneDnnBackbone>(resnet::makeResnet(arch, prefix), file);
  } catch (const dnnl::error& e) {
    throw Error(ErrorCode::Internal, std::string("oneDNN failed while loading weights: ") + e.what());
  }
}

}  // namespace anomalens
