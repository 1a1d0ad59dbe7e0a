// Optimisers with torch.optim's update rules (torch 1.13, single-tensor path, float32):
// each parameter that is not frozen and has a gradient is updated in the store's order.
// Element-wise only, so results do not depend on the thread count.
#pragma once
#include "anomalens/train/params.h"

namespace anomalens::train {

// torch.optim.SGD(lr, momentum, dampening, weight_decay, nesterov):
//   g = grad + weight_decay * p
//   buf = g (first step) | momentum * buf + (1 - dampening) * g;  g = buf (or g + momentum * buf
//   with nesterov)
//   p -= lr * g
struct SgdOptions {
  double lr = 0.01;
  double momentum = 0;
  double dampening = 0;
  double weightDecay = 0;
  bool nesterov = false;
};
void sgdStep(ParamStore& params, const SgdOptions& o);

// torch.optim.Adam(lr, betas, eps, weight_decay) without amsgrad: weight decay in torch's L2
// form (added to the gradient), bias-corrected moments, eps added after the square root.
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weightDecay = 0;
};
void adamStep(ParamStore& params, const AdamOptions& o);

// torch.nn.utils.clip_grad_norm_(params, maxNorm) (L2): total = ||(||g_i||_2)_i||_2 over
// every parameter with a gradient; every gradient is multiplied by
// min(maxNorm / (total + 1e-6), 1). Returns the total norm before clipping.
double clipGradNorm(ParamStore& params, double maxNorm);

}  // namespace anomalens::train
