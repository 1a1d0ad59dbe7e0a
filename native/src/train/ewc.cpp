#include "anomalens/train/ewc.h"

#include <cmath>
#include <string>

#include "anomalens/core/error.h"
#include "anomalens/train/losses.h"

namespace anomalens::train {

double addEwcPenalty(ParamStore& params, double lambda) {
  require(std::isfinite(lambda) && lambda >= 0, "addEwcPenalty: lambda must be a finite number >= 0, received " +
                                                    std::to_string(lambda));
  double total = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    Param& p = params[i];
    // Element-wise on the storage as it is (the anchors are states: stored alike).
    const Tensor* star = p.rawState("ewc_star");
    const Tensor* fisher = p.rawState("ewc_fisher");
    if (p.frozen() || !star || !fisher) continue;
    total += ewcPenalty(p.numel(), p.rawValue(), star->data(), fisher->data(), lambda, p.rawGrad());
  }
  return total;
}

}  // namespace anomalens::train
