// The linear branch of SLA followed by proj_l. The fused sparse kernels receive its output
// (forward) and its input gradients (backward) as float32 addends, or for variant all its D x D
// state, applied in the forward kernel's epilogue. Variant all runs on the linear-branch kernels
// (linear_kernels.cuh: one pass over K, V forward; one over q, dO and one over K, V backward);
// variant complement's forward hands the epilogue one state per query block (complement_linear_state),
// and its backward (linear_branch_backward) runs over chunks of heads so that its temporaries stay
// small: the block sums on the state pass's kernel, the query side on the query-side kernel per
// query block where blkq is a multiple of D or D / 2, the sums over blocks in ATen GEMMs, and the
// key side in the dk/dv pass's epilogue (or ATen).
// ε = kLinearEps (kernels/support.h). LibTorch glue: lives in src/sla/cuda/, beside the module.
//   variant all:        o_l = φ(q) S / (φ(q)·z + ε),  S = φ(K)ᵀ V, z = Σ_rows φ(K)
//   variant complement: S, z summed over the key blocks NOT selected for the row's query block;
//                       no epsilon; o_l = 0 where nothing is left (every block selected).
#pragma once

#include "sla/sla_config.h"
#include "sla/kernels/sla_params.h"

#include <ATen/ATen.h>

#include <functional>

namespace sla::kernels {

struct LinearGrads {
  at::Tensor dq, dk, dv;  // float32 (B, H, L, D), contiguous
  at::Tensor dw, db;      // float32 (D, D), (D)
  at::Tensor delta_lin;   // float32 (B*H, L): rowsum(dO ∘ proj_l(o_l)) (SlaParams::delta_lin)
  // Key side left to the dk/dv pass (key_pass false; dk, dv undefined then): dS L / ds_scale in q's
  // dtype, ds_scale and dz. Variant all (fused_linear_backward_k): (B*H, D, D), (B*H), (B*H, D);
  // complement (linear_branch_backward), one per key block: (B*H, Nk, D, D), (B*H, Nk), (B*H, Nk, D).
  at::Tensor ds, ds_scale, dz;
};

// What the fused forward epilogue needs for variant all, per (b, h), divided by c = L so that it
// stays O(1) in 16 bits (the quotient φ(q) M / (φ(q)·z + ε) does not change):
struct FusedLinearState {
  at::Tensor state;  // M / c = (S W_projᵀ) / c: (B*H, D, D) in q's dtype, contiguous
  at::Tensor z;      // z / c: (B*H, D) float32
  at::Tensor s;      // S / c: (B*H, D, D) float32, for the backward's d proj_w
  float eps = 0.f;   // kLinearEps / c
};
FusedLinearState fused_linear_state(const at::Tensor& k, const at::Tensor& v, const at::Tensor& proj_w,
                                    const SlaConfig& cfg);

// Variant complement's block sums per key block of k, v (B, H, L, D): S_j = φ(K_j)ᵀ V_j
// (B*H, Nk, D, D) and z_j = Σ φ(K_j) (B*H, Nk, D) float32, on the block-sums kernel for 16-bit
// CUDA inputs (ATen otherwise). S_j in the state's GEMM operand dtype (bf16: bf16, rounded once;
// fp16: float32, the unnormalised sums would leave fp16's range; float64: float64), or with
// float32 in the accumulation dtype (float32; float64 inputs: float64) for the backward's d proj_w.
struct ComplementBlockSums {
  at::Tensor s, z;
  at::ScalarType dtype = at::kBFloat16;  // k's
};
ComplementBlockSums complement_block_sums(const at::Tensor& k, const at::Tensor& v, const SlaConfig& cfg, int64_t nk,
                                          bool float32 = false);

// Variant complement's per-query-block states for the forward epilogue (SlaParams::lin_per_q_block),
// divided by L (seqlen): state (B*H, Nq, D, D) in k's dtype, M_i / L = (Σ_{j not selected for i} S_j / L) Wᵀ;
// z (B*H, Nq, D) float32, z_i / L; eps 0. mask: bool (B, H, Nq, Nk) selected blocks. bf16: on
// tensor cores with float32 accumulation, as the forward kernel's own φ(Q) M: the sums over blocks
// rounded once, M once; fp16: the sums in float32, M_i / L rounded once. With float32 block sums,
// s = S_j (not divided) for the backward's d proj_w; the state is the same as without.
FusedLinearState complement_linear_state(const ComplementBlockSums& sums, const at::Tensor& proj_w,
                                         const at::Tensor& mask, int64_t seqlen);
// Both steps for k, v (B, H, L, D); block_sums: the float32 S_j in `s`.
FusedLinearState complement_linear_state(const at::Tensor& k, const at::Tensor& v, const at::Tensor& proj_w,
                                         const at::Tensor& mask, const SlaConfig& cfg, bool block_sums = false);

// Variant all: the gradients of proj_l(linear branch) from the forward's state, in two halves
// on the current stream. The query side (one pass over q, dO) gives dq, delta_lin and the sums
// the key side needs; the key side (D x D algebra, one pass over K, V) gives dk, dv, d proj_w,
// d proj_b (its LinearGrads leaves dq and delta_lin undefined: they belong to the query side).
// key_pass false: no key-side pass; dk, dv stay undefined and ds, ds_scale, dz are returned for
// the dk/dv pass's epilogue (SlaParams::lin_ds, kernels::dkdv_fuses_linear).
struct LinearQSide {
  at::Tensor dq;                         // float32 (B, H, L, D)
  at::Tensor delta_lin;                  // float32 (B*H, L): rowsum(dO ∘ proj_l(o_l)); undefined with o
  at::Tensor a_part, dz_part, db_part;  // per-CTA partial sums (see LinearParams)
};
// With o (the forward's output) and delta (float32 (B*H, L)): the sparse backward's delta =
// rowsum(dO ∘ o) − rowsum(dO ∘ proj_l(o_l)) is written there instead of delta_lin.
LinearQSide fused_linear_backward_q(const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& proj_b,
                                    const FusedLinearState& fused, const SlaConfig& cfg, const at::Tensor& o = {},
                                    const at::Tensor& delta = {});
LinearGrads fused_linear_backward_k(const LinearQSide& q_side, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& proj_w, const FusedLinearState& fused, const SlaConfig& cfg,
                                    bool key_pass = true);

// The kernels' view of a (B, H, L, D) tensor (undefined: null).
inline TensorRef tensor_ref(const at::Tensor& x) {
  if (!x.defined()) return {};
  return TensorRef{x.data_ptr(), x.stride(0), x.stride(1), x.stride(2)};
}

// Variant complement: the gradients of sum(grad_o ∘ proj_l(o_l)) for q, k, v, proj_w, proj_b, and
// delta_lin, recomputing the forward's block sums over chunks of heads; the formulas are in
// linear_branch.cpp. mask: bool (B, H, Nq, Nk) selected blocks. bf16: GEMM operands in bf16 with
// float32 results, the rest float32, as the kernels, with o_l and d proj_w at float32 precision
// but for φ(q), φ(K) (bf16, as the kernels); fp16: float32 throughout (fp16's range); float64
// inputs: float64 throughout. 16-bit CUDA inputs with blkq a multiple of D or D / 2 take the query side on
// sla_linear_bwd_q_kernel per query block (the forward's per-block states, recomputed), its
// precision that of variant all's query side; the tests hold both paths to the same bounds.
// There key_pass false leaves the key side to the dk/dv pass: dk, dv undefined, ds, ds_scale, dz
// per key block instead (LinearGrads; the ATen query side ignores it and returns dk, dv).
LinearGrads linear_branch_backward(const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k,
                                   const at::Tensor& v, const at::Tensor& proj_w, const at::Tensor& proj_b,
                                   const at::Tensor& mask, const SlaConfig& cfg, bool key_pass = true);

// What the complement's query side computes for one chunk of c heads (sla_linear_bwd_q_kernel
// per query block on CUDA; the tests hand in a float64 emulation): from q, grad_o (1, c, L, D),
// the chunk's per-block states (complement_linear_state: M_i / L, z_i / L) and proj_l's bias,
// it writes dq (1, c, L, D) and delta_lin (c, L) in full, and per row tile of tile_rows rows
// (tile t in query block t / (blkq / tile_rows)) aᵀ = Σ φ(q)ᵀ dO / den', dz = Σ dden' φ(q) / L and
// db = Σ dO into a_tile (c, T, D, D), dz_tile, db_tile (c, T, D), T = Nq blkq / tile_rows, for
// the tiles that hold rows (the others are 0). den' = φ(q)·z_i / L; where it is 0 (every key block
// selected) the row's branch is 0. Accumulation dtype: float32 for 16-bit inputs.
struct ComplementQSideChunk {
  at::Tensor q, grad_o;
  FusedLinearState state;
  at::Tensor bias;
  int64_t tile_rows = 0;
  at::Tensor a_tile, dz_tile, db_tile, dq, delta_lin;
};
using ComplementQSide = std::function<void(const ComplementQSideChunk&)>;

// linear_branch_backward with the query side given: the per-block sums and the key side in ATen
// (linear_branch.cpp has the formulas), or with key_pass false the key side's dS_j, dz_j per key
// block (LinearGrads::ds); tile_rows must divide blkq.
LinearGrads complement_backward_from_q_side(const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& v, const at::Tensor& proj_w, const at::Tensor& proj_b,
                                            const at::Tensor& mask, const SlaConfig& cfg, int64_t tile_rows,
                                            const ComplementQSide& q_side, bool key_pass = true);

}  // namespace sla::kernels
