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
    const Tensor* star = p.state("ewc_star");
    const Tensor* fisher = p.state("ewc_fisher");
    if (p.frozen() || !star || !fisher) continue;
    total += ewcPenalty(p.numel(), p.value(), star->data(), fisher->data(), lambda, p.grad());
  }
  return total;
}

}  // namespace anomalens::train
