// One gradient step whose size is chosen so that the loss goes down: what `regenerate` takes on a
// projection distilled from dense attention, and what a model's own regenerate step (the example
// DiT's) takes on its SLA projections.
//
// For parameters that the output depends on linearly (proj_l: o = o_s + W o_l + b), the loss
// along the negative gradient g is a parabola e(t) = e0 - t |g|^2 + c t^2 with c = e(1) - e0 + |g|^2,
// so t* = |g|^2 / (2c) lowers it whenever g != 0; rounding of half-precision inputs is absorbed by
// halving t until the loss is lower than before.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

namespace sla {

struct OneStep {
  double loss_before = 0;
  double loss_after = 0;
  double learning_rate = 0;
};

// Steps `params` (leaves with requires_grad) in place; throws CheckpointError (E_REGENERATE) naming
// `where` when no step size lowers the loss (the gradient vanished).
OneStep descend_once(const std::vector<at::Tensor>& params, const std::function<at::Tensor()>& loss,
                     const std::string& where);

}  // namespace sla
