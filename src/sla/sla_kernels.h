// The bridge between the module and the fused CUDA kernels. Implemented by the CUDA layer
// (sla_api.cpp) when SLA_HAVE_CUDA_KERNELS is defined; the module uses the reference otherwise.
#pragma once

#include "sla_config.h"

#include <ATen/ATen.h>

#include <string>

namespace sla {

// True when the fused kernels support these inputs (CUDA, bf16/fp16, head_dim, layout, ...);
// otherwise false with the reason in *why.
bool cuda_kernels_support(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const SlaConfig& cfg,
                          std::string* why);

// Differentiable fused SLA: o = sparse(q, k, v) + proj_l(linear(q, k, v)), in q's dtype, with
// gradients for q, k, v, proj_w and proj_b. scale <= 0 means D^-1/2.
at::Tensor cuda_sla_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& proj_w, const at::Tensor& proj_b, const SlaConfig& cfg,
                              double scale);

}  // namespace sla
