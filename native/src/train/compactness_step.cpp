#include "anomalens/train/compactness_step.h"

#include "anomalens/train/ewc.h"
#include "anomalens/train/losses.h"
#include "anomalens/train/ops.h"

namespace anomalens::train {

CompactnessStepResult compactnessStep(TrainableResnet& net, const float* x, int64_t n, int64_t c, int64_t h,
                                      int64_t w, const float* centre, const CompactnessStepOptions& o) {
  CompactnessStepResult r;
  const Tensor out = net.forward(x, n, c, h, w, o.bnTrain, o.startTap);
  const int64_t d = out.dim(1), oh = out.dim(2), ow = out.dim(3);
  r.features = Tensor({n, d});
  globalAvgPoolForward(n, d, oh, ow, out.data(), r.features.data());
  Tensor grad({n, d}), dOut(out.shape());
  r.loss = compactnessLoss(n, d, r.features.data(), centre, grad.data());
  globalAvgPoolBackward(n, d, oh, ow, grad.data(), dOut.data());
  net.backward(dOut.data());
  if (o.ewc) r.loss += addEwcPenalty(net.params(), o.ewcLambda);
  if (o.clip) r.gradNorm = clipGradNorm(net.params(), o.maxNorm);
  sgdStep(net.params(), o.sgd);
  return r;
}

}  // namespace anomalens::train
