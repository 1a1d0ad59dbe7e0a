// The oneDNN inference plan of a ResnetGraph. See anomalens/nn/onednn_plan.h.
#include "anomalens/nn/onednn_plan.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <set>
#include <unordered_map>

#include "anomalens/core/error.h"

namespace anomalens::nn {
namespace {

using dnnl::algorithm;
using dnnl::memory;
using dnnl::prop_kind;
using tag = memory::format_tag;
using dt = memory::data_type;

// A convolution's parameters with the weights reordered to the layouts primitives asked for.
struct ConvWeights {
  const Conv2dParams* params = nullptr;
  Tensor bias;  // [cout]: the graph's, or zeros (oneDNN always gets a bias)
  std::vector<std::pair<memory::desc, memory>> reordered;
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

  // Convolution (+ folded BN bias) [+ sum into `sumInto`] [+ ReLU]; output in `slot` unless
  // summing, in which case the output is `sumInto` itself.
  memory conv(const memory& src, ConvWeights& c, bool relu, const memory* sumInto, int slot) {
    const memory::desc srcMd = src.get_desc();
    const memory::dims sd = srcMd.dims();
    const int64_t n = sd[0], h = sd[2], w = sd[3];
    const Conv2dParams& d = *c.params;
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
  memory batchNorm(const memory& src, const BatchNormParams& bn, bool relu, int slot) {
    auto flags = dnnl::normalization_flags::use_global_stats | dnnl::normalization_flags::use_scale |
                 dnnl::normalization_flags::use_shift;
    if (relu) flags = flags | dnnl::normalization_flags::fuse_norm_relu;
    dnnl::batch_normalization_forward::desc desc(prop_kind::forward_inference, src.get_desc(), bn.eps, flags);
    dnnl::batch_normalization_forward::primitive_desc pd(desc, scratchAttr(), eng_);
    memory dst = inSlot(pd.dst_desc(), slot);
    memory::desc cMd({bn.mean.dim(0)}, dt::f32, tag::x);
    Step st;
    st.prim = dnnl::batch_normalization_forward(pd);
    st.args = {{DNNL_ARG_SRC, src},
               {DNNL_ARG_DST, dst},
               {DNNL_ARG_MEAN, memory(cMd, eng_, const_cast<float*>(bn.mean.data()))},
               {DNNL_ARG_VARIANCE, memory(cMd, eng_, const_cast<float*>(bn.var.data()))},
               {DNNL_ARG_SCALE, memory(cMd, eng_, const_cast<float*>(bn.gamma.data()))},
               {DNNL_ARG_SHIFT, memory(cMd, eng_, const_cast<float*>(bn.beta.data()))}};
    addScratchpad(st, pd.scratchpad_desc());
    st.name = bn.name;
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

  memory weightsFor(ConvWeights& c, const memory::desc& md) {
    for (auto& [have, mem] : c.reordered)
      if (have == md) return mem;
    const Conv2dParams& d = *c.params;
    memory plain({{d.cout, d.cin, d.k, d.k}, dt::f32, tag::oihw}, eng_, const_cast<float*>(d.weight.data()));
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

}  // namespace

struct OneDnnPlan::Impl {
  explicit Impl(ResnetGraph g) : graph(std::move(g)), eng(dnnl::engine::kind::cpu, 0), strm(eng) {
    for (const Op& op : graph.ops)
      if (op.kind == OpKind::Add)
        throw Error(ErrorCode::Unsupported, "the oneDNN inference plan needs residual additions fused into "
                                            "convolutions (fuseResidualAdds); '" + op.name + "' is not");
    weights.resize(graph.convs.size());
    for (size_t i = 0; i < graph.convs.size(); ++i) {
      const Conv2dParams& c = graph.convs[i];
      weights[i].params = &graph.convs[i];
      weights[i].bias = c.bias.empty() ? Tensor::zeros({c.cout}) : c.bias;
    }
  }

  Plan& planFor(const Shape& in, const std::vector<int>& tapIdx) {
    std::string key = shapeString(in) + "|" + std::to_string(omp_get_max_threads());
    std::vector<int> sorted = tapIdx;
    std::sort(sorted.begin(), sorted.end());
    for (int i : sorted) key += "," + std::to_string(i);
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    // Plans hold activation buffers; keep a few shapes only.
    if (plans.size() >= 4) plans.clear();
    Plan& plan = plans[key];
    try {
      build(plan, in, sorted);
    } catch (const dnnl::error& e) {
      plans.erase(key);
      throw Error(ErrorCode::Internal, std::string("oneDNN could not build the forward pass: ") + e.what());
    } catch (...) {
      plans.erase(key);
      throw;
    }
    return plan;
  }

  // Walks the graph's ops up to the deepest requested tap. A value's buffer (slot) is free
  // again after its last reader; a convolution with a fused residual writes into the
  // residual's buffer, which must have no later reader.
  void build(Plan& plan, const Shape& in, const std::vector<int>& tapIdx) {
    PlanBuilder b(eng, strm, plan);
    const int lastOp = producerOf(graph, graph.taps[tapIdx.back()].value);
    std::vector<int> lastRead(graph.values, -1);
    for (int i = 0; i <= lastOp; ++i) {
      const Op& op = graph.ops[i];
      lastRead[op.input] = i;
      if (op.input2 >= 0) lastRead[op.input2] = i;
    }
    std::vector<memory> mem(graph.values);
    std::vector<int> slot(graph.values, -1);
    memory::desc inMd({in[0], in[1], in[2], in[3]}, dt::f32, tag::nchw);
    plan.input = memory(inMd, eng, DNNL_MEMORY_NONE);
    mem[0] = plan.input;
    for (int i = 0; i <= lastOp; ++i) {
      const Op& op = graph.ops[i];
      // Lowest slot not holding a value that this op or a later one reads.
      auto freeSlot = [&] {
        std::set<int> busy;
        for (int v = 0; v < graph.values; ++v)
          if (slot[v] >= 0 && lastRead[v] >= i) busy.insert(slot[v]);
        int s = 0;
        while (busy.count(s)) ++s;
        return s;
      };
      int s = -1;
      memory out;
      switch (op.kind) {
        case OpKind::Conv2d:
          if (op.input2 >= 0) {
            require(op.input2 != 0 && lastRead[op.input2] == i && slot[op.input2] >= 0,
                    "the residual of " + op.name + " is read after it", ErrorCode::Internal);
            s = slot[op.input2];
            out = b.conv(mem[op.input], weights[op.param], op.relu, &mem[op.input2], s);
          } else {
            s = freeSlot();
            out = b.conv(mem[op.input], weights[op.param], op.relu, nullptr, s);
          }
          break;
        case OpKind::BatchNorm:
          s = freeSlot();
          out = b.batchNorm(mem[op.input], graph.bns[op.param], op.relu, s);
          break;
        case OpKind::MaxPool:
          s = freeSlot();
          out = b.pool(mem[op.input], algorithm::pooling_max, op.k, op.stride, op.pad, s, op.name);
          break;
        case OpKind::GlobalAvgPool:
          s = freeSlot();
          out = b.pool(mem[op.input], algorithm::pooling_avg_exclude_padding, 0, 1, 0, s, op.name, true);
          break;
        case OpKind::Add:
          throw Error(ErrorCode::Unsupported, "unfused Add " + op.name);
      }
      mem[op.output] = out;
      slot[op.output] = s;
      for (int t : tapIdx)
        if (graph.taps[t].value == op.output) b.tap(out, graph.taps[t].name);
    }
    b.finish();
  }

  ResnetGraph graph;
  dnnl::engine eng;
  dnnl::stream strm;
  std::vector<ConvWeights> weights;  // one per graph.convs entry
  std::map<std::string, Plan> plans;
  std::mutex mutex;
};

OneDnnPlan::OneDnnPlan(ResnetGraph graph) {
  try {
    impl_ = std::make_unique<Impl>(std::move(graph));
  } catch (const dnnl::error& e) {
    throw Error(ErrorCode::Internal, std::string("oneDNN failed while loading weights: ") + e.what());
  }
}

OneDnnPlan::~OneDnnPlan() = default;

const ResnetGraph& OneDnnPlan::graph() const { return impl_->graph; }

std::map<std::string, Tensor> OneDnnPlan::run(const TensorView& input, const std::vector<int>& taps,
                                              std::vector<LayerProfile>* profile) {
  require(!taps.empty(), "at least one tap is required");
  for (int t : taps)
    require(t >= 0 && t < static_cast<int>(impl_->graph.taps.size()), "tap index out of range", ErrorCode::Internal);
  std::lock_guard<std::mutex> lock(impl_->mutex);
  Plan& plan = impl_->planFor(input.shape, taps);
  dnnl::stream& strm = impl_->strm;
  std::map<std::string, Tensor> out;
  plan.input.set_data_handle(const_cast<float*>(input.data));
  for (auto& o : plan.outputs) {
    Tensor t(o.shape);
    o.plain.set_data_handle(t.data());
    out.emplace(o.name, std::move(t));
  }
  if (!profile) {
    for (auto& st : plan.steps) st.prim.execute(strm, st.args);
    strm.wait();
  } else {
    profile->clear();
    for (auto& st : plan.steps) {
      auto t0 = std::chrono::steady_clock::now();
      st.prim.execute(strm, st.args);
      strm.wait();
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      profile->push_back(LayerProfile{st.name, st.impl, ms, st.gflop});
    }
  }
  // Detach user memory so no stale pointer survives in the cached plan.
  plan.input.set_data_handle(DNNL_MEMORY_NONE);
  for (auto& o : plan.outputs) o.plain.set_data_handle(DNNL_MEMORY_NONE);
  return out;
}

}  // namespace anomalens::nn
