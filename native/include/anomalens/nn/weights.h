// ResNet weights: which tensors a file must hold for an architecture (validation), and the
// inference rewrite that folds batch-norm into the convolutions before it.
//
//   SafetensorsFile f = SafetensorsFile::read(path);
//   resnet::ResnetDef def = resnet::makeResnet(arch, resnet::isV2(arch) ? detectV2Prefix(f, arch) : "");
//   WeightsCoverage have = validateWeights(def, f);          // throws Error(WeightsMismatch)
//   ResnetGraph g = buildResnetGraph(def, f, have.stages, have.avgpool);   // resnet_graph.h
//   ResnetGraph inference = foldBatchNorms(g);                // g itself stays unfolded
#pragma once
#include <string>

#include "anomalens/io/safetensors.h"
#include "anomalens/nn/resnet_graph.h"
#include "anomalens/nn/resnet_spec.h"

namespace anomalens::nn {

// How far a validated file reaches: the stem always, then `stages` complete stages (0..4),
// and the final BN + pool (`avgpool`) when all four stages and (v2) the final BN are there.
struct WeightsCoverage {
  int stages = 0;
  bool avgpool = false;
};

// The ONNX Model Zoo initializer prefix of a v2 file ("resnetv24_"). Throws
// Error(WeightsMismatch) when the file has no v2 stem tensor.
std::string detectV2Prefix(const SafetensorsFile& file, const std::string& arch);

// Checks `file` against `def`: unexpected tensors (classifier tensors and ignored suffixes
// aside), mis-shaped tensors, a partly present stem or stage, a stage present after an absent
// one. Throws Error(WeightsMismatch) naming the tensors and the file; returns the coverage.
WeightsCoverage validateWeights(const resnet::ResnetDef& def, const SafetensorsFile& file);

// Throws Error(WeightsMismatch) naming the missing tensors when tap `tapIndex` (into
// stem, stage 1..4, avgpool) is beyond `have`; returns otherwise. `lastTap` names the deepest
// tap the file covers, `path` the file.
void requireTapWeights(const resnet::ResnetDef& def, const WeightsCoverage& have, const std::string& path,
                       const std::string& tap, int tapIndex, const std::string& lastTap);

// conv followed by bn as one convolution: w' = w * s, b' = (b - mean) * s + beta with
// s = gamma / sqrt(var + eps), in float64 and rounded once to float32. Returns new tensors
// (the inputs are not modified). Throws Error(WeightsMismatch) naming bn.varName for a
// variance with var + eps <= 0.
Conv2dParams foldBatchNorm(const Conv2dParams& conv, const BatchNormParams& bn);

// Every BatchNorm op whose input is written by a Conv2d (no ReLU, no residual) and read by
// nothing else is folded into that convolution, which then writes the BN's output value and
// takes its ReLU. Other BatchNorms stay (v2's data, pre-activation and final BNs).
ResnetGraph foldBatchNorms(const ResnetGraph& graph);

}  // namespace anomalens::nn
