// The bridge between the module and the fused CUDA kernels. Implemented by the LibTorch glue
// (cuda/sla_api.cpp, over the torch-free sla::kernels) when SLA_HAVE_CUDA_KERNELS is defined; the
// module uses the reference otherwise.
#pragma once

#include "reference.h"
#include "sla_config.h"

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace sla {

// True when the fused kernels support these inputs (CUDA, one shape and dtype, and what
// kernels::can_implement checks against the support table); otherwise false with the reason in
// *why ("expected ..., got ...", kernels::why_not).
bool cuda_kernels_support(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const SlaConfig& cfg,
                          std::string* why);

// The same verdict from metadata alone, for q, k, v of shape `sizes` and dtype `dtype` on one CUDA
// device (the operators' fake implementations ask it which path a call takes; no tensor needed).
bool cuda_kernels_support_shape(at::IntArrayRef sizes, at::ScalarType dtype, const SlaConfig& cfg, std::string* why);

// Differentiable fused SLA: o = sparse(q, k, v) + proj_l(linear(q, k, v)), in q's dtype, with
// gradients for q, k, v, proj_w and proj_b. scale <= 0 means D^-1/2. When a gradient is needed the
// graph keeps o itself (the backward reads it, so modifying o in place makes the backward refuse),
// lse, the block map and the linear branch's D x D state: no other (B, H, L, D) tensor. Autocast
// does not reach inside: the kernels and the ATen ops around them keep their own precisions.
at::Tensor cuda_sla_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& proj_w, const at::Tensor& proj_b, const SlaConfig& cfg,
                              double scale);

// The block map of the kernels in the reference's format (lut int64 ascending, mask bool).
reference::BlockMap cuda_block_map(const at::Tensor& q, const at::Tensor& k, const SlaConfig& cfg);

// Gradients {dq, dk, dv, d proj_w, d proj_b} of sum(grad_o ∘ cuda_sla_attention(...)); recomputes
// the forward. For callers outside autograd (the kernel playground, tests/playground).
std::vector<at::Tensor> cuda_sla_backward(const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& v, const at::Tensor& proj_w, const at::Tensor& proj_b,
                                          const SlaConfig& cfg, double scale);

// The kernels' forward with everything their backward reads, as tensors (the sla::attention_fwd
// operator returns them, so that autograd, AOTAutograd and CUDA graphs see every buffer):
struct SlaSaved {
  at::Tensor o;          // (B, H, L, D) in q's dtype, laid out like the kernels' copy of q
  at::Tensor lse;        // float32 (B*H, L): log-sum-exp of the sparse branch's scaled scores
  at::Tensor lut;        // int32 (B*H, Nq, n): the block map, ascending
  at::Tensor lin_state;  // variant all: (B*H, D, D) in q's dtype (FusedLinearState::state); else undefined
  at::Tensor lin_z;      // variant all: float32 (B*H, D); else undefined
  at::Tensor lin_s;      // variant all: float32 (B*H, D, D); else undefined
};
SlaSaved cuda_sla_forward_saved(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const at::Tensor& proj_w, const at::Tensor& proj_b, const SlaConfig& cfg,
                                double scale);
// Gradients {dq, dk, dv, d proj_w, d proj_b} from the forward's SlaSaved, without recomputing it;
// the saved tensors are checked (shape, dtype, device, layout) before any kernel reads them.
std::vector<at::Tensor> cuda_sla_backward_saved(const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v, const at::Tensor& proj_w,
                                                const at::Tensor& proj_b, const SlaSaved& saved,
                                                const SlaConfig& cfg, double scale);

}  // namespace sla
