// Backbone: the facade over the three parts of the ResNet backbone. See anomalens/nn/backbone.h.
//   weights.{h,cpp}       which tensors a file must hold; batch-norm folding
//   resnet_graph.{h,cpp}  the ResNet as a device-neutral list of ops
//   onednn_plan.{h,cpp}   the oneDNN inference plan that runs a graph
// This file only checks requests (shapes, taps) and hands them to the plan.
#include "anomalens/nn/backbone.h"

#include <algorithm>

#include "anomalens/core/error.h"
#include "anomalens/io/safetensors.h"
#include "anomalens/nn/onednn_plan.h"
#include "anomalens/nn/resnet_graph.h"
#include "anomalens/nn/resnet_spec.h"
#include "anomalens/nn/weights.h"

namespace anomalens {
namespace {

int64_t convOut(int64_t in, int64_t k, int64_t s, int64_t p) { return (in + 2 * p - k) / s + 1; }

class ResnetBackbone : public Backbone {
 public:
  ResnetBackbone(resnet::ResnetDef def, nn::WeightsCoverage have, std::string path, nn::ResnetGraph inference)
      : def_(std::move(def)), have_(have), path_(std::move(path)), plan_(std::move(inference)) {}

  const std::string& arch() const override { return def_.arch; }

  std::vector<std::string> taps() const override {
    std::vector<std::string> t{"stem"};
    for (const auto& s : def_.stages) t.push_back(s.tap);
    t.push_back("avgpool");
    return t;
  }

  std::vector<std::string> availableTaps() const override {
    std::vector<std::string> all = taps();
    return std::vector<std::string>(all.begin(), all.begin() + 1 + have_.stages + (have_.avgpool ? 1 : 0));
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
      nn::requireTapWeights(def_, have_, path_, t, i, availableTaps().back());
      if (std::find(idx.begin(), idx.end(), i) != idx.end())
        throw Error(ErrorCode::InvalidArgument, "tap '" + t + "' is requested twice");
      idx.push_back(i);
    }
    // The graph's taps are the available prefix of taps(), so the indices agree.
    return plan_.run(input, idx, profile);
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

  resnet::ResnetDef def_;
  nn::WeightsCoverage have_;
  std::string path_;
  nn::OneDnnPlan plan_;
};

}  // namespace

std::unique_ptr<Backbone> Backbone::load(const std::string& arch, const std::string& weightsPath) {
  resnet::makeResnet(arch, "");  // validates the arch name before touching the file
  SafetensorsFile file = SafetensorsFile::read(weightsPath);
  resnet::ResnetDef def = resnet::makeResnet(arch, resnet::isV2(arch) ? nn::detectV2Prefix(file, arch) : "");
  nn::WeightsCoverage have = nn::validateWeights(def, file);
  nn::ResnetGraph graph = nn::buildResnetGraph(def, file, have.stages, have.avgpool);
  nn::ResnetGraph inference = nn::fuseResidualAdds(nn::foldBatchNorms(graph));
  return std::make_unique<ResnetBackbone>(std::move(def), have, file.path(), std::move(inference));
}

}  // namespace anomalens
