// PANDA's whole optimisation step on one batch in one native call, as the original's run_epoch:
// the trainable ResNet's forward to its last tap, global average pooling, the compactness loss to
// the fixed centre, backward, EWC's penalty (when asked) added before the clipping,
// clip_grad_norm_ and torch.optim.SGD. The same ops the step-level API exposes one by one, run
// back to back on one thread's OpenMP team with no copies between them.
#pragma once
#include <string>

#include "anomalens/core/tensor.h"
#include "anomalens/train/optim.h"
#include "anomalens/train/resnet.h"

namespace anomalens::train {

struct CompactnessStepOptions {
  std::string startTap = "input";  // where x comes in: the image or a tap's cached output
  bool bnTrain = false;            // PANDA keeps BN frozen (eval mode)
  bool clip = true;                // clip_grad_norm_(maxNorm) before the step
  double maxNorm = 1e-3;
  bool ewc = false;                // add addEwcPenalty(ewcLambda) (anchors in the params' states)
  double ewcLambda = 0;
  SgdOptions sgd;
};

struct CompactnessStepResult {
  double loss = 0;      // compactness (+ the EWC penalty)
  double gradNorm = 0;  // total norm before clipping (0 without clipping)
  Tensor features;      // the pooled features [n, c] the loss was computed on
};

// x [n, c, h, w] from o.startTap; centre [channels of the last tap]. Throws InvalidArgument
// naming what is wrong (shapes, taps, options).
CompactnessStepResult compactnessStep(TrainableResnet& net, const float* x, int64_t n, int64_t c, int64_t h,
                                      int64_t w, const float* centre, const CompactnessStepOptions& o);

}  // namespace anomalens::train
