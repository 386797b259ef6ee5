// SparseLinearAttention: the SLA operator with its learned projection proj_l (Linear(D, D),
// float32, zero-initialised so an untrained module equals sparse attention alone).
// forward(q, k, v[, scale]) runs the fused CUDA kernels when they are built and support the
// inputs, the reference otherwise; the output has q's dtype.
#pragma once

#include "sla_config.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace sla {

class SparseLinearAttentionImpl : public torch::nn::Module {
 public:
  SparseLinearAttentionImpl(int64_t head_dim, SlaConfig cfg);

  // q, k, v: (B, H, L, D), any strides, one dtype. scale <= 0 means D^-1/2.
  at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale = 0.0);

  // Casting the module moves proj_l between devices but never changes its float32: the
  // projection is trained in float32 whatever the attention dtype (SimpleTuner does the same).
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

  int64_t head_dim() const { return head_dim_; }
  const SlaConfig& config() const { return cfg_; }

  torch::nn::Linear proj_l{nullptr};

 private:
  int64_t head_dim_;
  SlaConfig cfg_;
};

TORCH_MODULE(SparseLinearAttention);

}  // namespace sla
