#include "sparse_linear_attention.h"

#include "reference.h"
#include "sla_kernels.h"

#include <ATen/core/grad_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <string>

namespace sla {

SparseLinearAttentionImpl::SparseLinearAttentionImpl(int64_t head_dim, SlaConfig cfg)
    : head_dim_(head_dim), cfg_(cfg) {
  proj_l = register_module("proj_l", torch::nn::Linear(torch::nn::LinearOptions(head_dim, head_dim)));
  at::NoGradGuard no_grad;
  proj_l->weight.zero_();
  proj_l->bias.zero_();
}

at::Tensor SparseLinearAttentionImpl::forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                              double scale) {
  // SLA runs in q's dtype with proj_l in float32; autocast would recast both, so it is off here.
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
#ifdef SLA_HAVE_CUDA_KERNELS
  std::string why;
  if (cuda_kernels_support(q, k, v, cfg_, &why)) {
    return cuda_sla_attention(q, k, v, proj_l->weight, proj_l->bias, cfg_, scale);
  }
#endif
  return reference::attention(q, k, v, proj_l->weight, proj_l->bias, cfg_, scale);
}

void SparseLinearAttentionImpl::to(torch::Device device, torch::Dtype /*dtype*/, bool non_blocking) {
  torch::nn::Module::to(device, non_blocking);
}

void SparseLinearAttentionImpl::to(torch::Dtype /*dtype*/, bool /*non_blocking*/) {}

void SparseLinearAttentionImpl::to(torch::Device device, bool non_blocking) {
  torch::nn::Module::to(device, non_blocking);
}

}  // namespace sla
