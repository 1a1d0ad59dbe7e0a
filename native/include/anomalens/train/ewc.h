// PANDA's EWC penalty over a whole parameter store: each parameter holding the states
// "ewc_star" (theta*, the pretrained value) and "ewc_fisher" (the diagonal Fisher F) adds
// lambda * F * (theta - theta*) to its gradient; the penalty lambda / 2 * sum F (theta - theta*)^2
// is returned (summed over those parameters). Frozen parameters are skipped: they equal their
// anchor, so their penalty and gradient are zero. Sums in double, in store order.
#pragma once
#include "anomalens/train/params.h"

namespace anomalens::train {

double addEwcPenalty(ParamStore& params, double lambda);

}  // namespace anomalens::train
