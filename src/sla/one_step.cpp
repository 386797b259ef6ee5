#include "one_step.h"

#include "sla/checkpoint/errors.h"

#include <torch/autograd.h>

namespace sla {
namespace {
constexpr int kMaxHalvings = 30;
}  // namespace

OneStep descend_once(const std::vector<at::Tensor>& params, const std::function<at::Tensor()>& loss,
                     const std::string& where) {
  at::Tensor l0 = loss();
  const auto grads = torch::autograd::grad({l0}, params);
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> start;
  for (const auto& p : params) start.push_back(p.detach().clone());
  auto loss_at = [&](double lr) {
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(start[i] - lr * grads[i]);
    return loss().item<double>();
  };
  OneStep r;
  r.loss_before = l0.item<double>();
  double gnorm2 = 0;
  for (const auto& g : grads) gnorm2 += g.pow(2).sum().item<double>();
  const double curvature = loss_at(1.0) - r.loss_before + gnorm2;
  r.learning_rate = curvature > 0 ? gnorm2 / (2 * curvature) : 1.0;
  for (int i = 0; i < kMaxHalvings; ++i, r.learning_rate /= 2) {
    r.loss_after = loss_at(r.learning_rate);
    if (r.loss_after < r.loss_before) return r;
  }
  throw sla::checkpoint::CheckpointError("E_REGENERATE", "the SLA step did not lower the loss (gradient vanished?)", where);
}

}  // namespace sla
