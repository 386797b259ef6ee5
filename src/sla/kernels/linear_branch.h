// The linear branch of SLA followed by proj_l, computed with ATen in float32 over chunks of heads
// so that its temporaries stay small (a few (L, D) float32 tensors per chunk): the fused sparse
// kernels receive its output (forward) and its input gradients (backward) as float32 addends.
//   variant all:        o_l = φ(q) S / (φ(q)·z + 1e-5),  S = φ(K)ᵀ V, z = Σ_rows φ(K)
//   variant complement: S, z summed over the key blocks NOT selected for the row's query block;
//                       no epsilon; o_l = 0 where nothing is left (every block selected).
#pragma once

#include "sla_config.h"

#include <ATen/ATen.h>

namespace sla::kernels {

struct LinearGrads {
  at::Tensor dq, dk, dv;  // float32 (B, H, L, D), contiguous
  at::Tensor dw, db;      // float32 (D, D), (D)
};

// What the fused forward epilogue needs for variant all, per (b, h), divided by c = L so that it
// stays O(1) in 16 bits (the quotient φ(q) M / (φ(q)·z + ε) does not change):
struct FusedLinearState {
  at::Tensor state;  // M / c = (S W_projᵀ) / c: (B*H, D, D) in q's dtype, contiguous
  at::Tensor z;      // z / c: (B*H, D) float32
  float eps = 0.f;   // 1e-5 / c
};
FusedLinearState fused_linear_state(const at::Tensor& k, const at::Tensor& v, const at::Tensor& proj_w,
                                    const SlaConfig& cfg);

// proj_l(o_l) as float32 (B, H, L, D), contiguous. mask: bool (B, H, Nq, Nk) selected blocks
// (used by variant complement only; may be undefined for variant all).
at::Tensor linear_branch_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& proj_w, const at::Tensor& proj_b, const at::Tensor& mask,
                                 const SlaConfig& cfg);

// Gradients of sum(grad_o ∘ proj_l(o_l)) for q, k, v, proj_w, proj_b (recomputes per chunk).
LinearGrads linear_branch_backward(const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k,
                                   const at::Tensor& v, const at::Tensor& proj_w, const at::Tensor& proj_b,
                                   const at::Tensor& mask, const SlaConfig& cfg);

}  // namespace sla::kernels
