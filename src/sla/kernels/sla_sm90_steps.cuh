// The per-key-block steps of the Hopper forward and dq pass, shared by their cp.async kernels
// (sla_fwd_sm90_kernel.cuh, sla_bwd_sm90_kernel.cuh) and their warp-specialised ones
// (sla_fwd_ws_sm90_kernel.cuh, sla_bwd_dq_ws_sm90_kernel.cuh), which differ only in how the K/V
// stages arrive. Each step is one warpgroup's: the products of block j are issued ahead of the
// previous block's last product, so the tensor cores work on that one while the warps turn block
// j's scores into probabilities. When a step returns, the previous block's stage is no longer read.
// Include only from sources compiled for sm_90a.
#pragma once

#include "sla_fwd_common.cuh"
#include "sla_params.h"
#include "wgmma.cuh"

namespace sla::kernels {

// Descriptor offset (16-byte units) of the k16 step kk along the reduction dimension of a
// K-major sw128 operand with `panel_rows` rows per 64-column panel.
__device__ __forceinline__ uint64_t k16_step(int kk, int panel_rows) {
  return uint64_t(((kk / 4) * panel_rows * 64 + (kk % 4) * 16) * 2 / 16);
}
// ... of an MN-major sw128 operand (rows = the reduction dimension): 16 rows further.
__device__ __forceinline__ uint64_t mn_k16_step(int kk) { return uint64_t(kk * 16 * 64 * 2 / 16); }

// The previous block's product C += A B (A from registers, B MN-major at desc_b) issued behind the
// group just committed, where there is one (has_prev); then waits until that group alone has
// completed, so that its results can be read while this product runs on.
template <class Elem, int N, int K>
__device__ __forceinline__ void wgmma_rs_behind(float (&c)[N / 8][4], uint32_t (&a)[K / 16][4], uint64_t desc_b,
                                                bool has_prev) {
  if (has_prev) {
    wgmma_fence();  // ptxas wants one in this branch too
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) wgmma_rs<N, Elem>(c, a[kk], desc_b + mn_k16_step(kk));
    wgmma_commit();
    wgmma_wait<1>();
  } else {
    wgmma_wait<0>();
  }
}

// Forward, NB key blocks of BK rows at once (NB = 2: a score tile of 128 columns, half the
// per-step work of the softmax and the waits): S = Q Kᵀ (desc_q: this warpgroup's 64 rows of a Q
// tile of q_rows rows per panel; dk: the step's K tile of NB·BK rows per panel), issued ahead of
// O += P V of the previous step (P in a_p, V at dv_prev; none at the first step); online softmax,
// block i's keys from key0[i] (key0[i] = seqlen: a padding block, masked whole); a_p becomes P.
template <class Elem, int D, int BK, int NB = 1>
__device__ __forceinline__ void fwd_sm90_step(float (&acc_o)[D / 8][4], float (&row_max)[2], float (&row_sum)[2],
                                              uint32_t (&a_p)[NB * BK / 16][4], uint64_t desc_q, int q_rows,
                                              uint64_t dk, uint64_t dv_prev, bool has_prev, const int (&key0)[NB],
                                              const SlaParams& p, int t) {
  constexpr int BN = NB * BK;
  float acc_s[BN / 8][4];  // S = Q Kᵀ (this warp's 16 rows x BN)
  zero(acc_s);
  fence_operand(acc_s);  // registers written before the fence, as wgmma requires
  fence_operand(acc_o);
  fence_operand(a_p);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) wgmma_ss<BN, Elem>(acc_s, desc_q + k16_step(kk, q_rows), dk + k16_step(kk, BN));
  wgmma_commit();
  wgmma_rs_behind<Elem, D, BN>(acc_o, a_p, dv_prev, has_prev);  // the previous step's O += P V
  fence_operand(acc_s);
  float alpha[2];
#pragma unroll
  for (int i = 0; i < NB; ++i) mask_keys_past_end<BK>(acc_s, i * BK / 8, key0[i], p, t);
  online_softmax_rows<BN>(acc_s, row_max, row_sum, alpha, p);
  wgmma_wait<0>();
  fence_operand(acc_o);
  rescale_rows<D>(acc_o, alpha);
  c_to_a<BN, Elem>(a_p, acc_s);
}

// C (64 x N) += A B with A (64 x K) from registers and B (K x N) MN-major in shared memory at
// desc_b, issued and waited for: the last block's product of the forward (O += P V) and of the dq
// pass (dQ += dS K), and the forward epilogue's φ(Q) M.
template <class Elem, int N, int K>
__device__ __forceinline__ void wgmma_rs_wait(float (&c)[N / 8][4], uint32_t (&a)[K / 16][4], uint64_t desc_b) {
  fence_operand(c);
  fence_operand(a);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) wgmma_rs<N, Elem>(c, a[kk], desc_b + mn_k16_step(kk));
  wgmma_commit();
  wgmma_wait<0>();
  fence_operand(c);
}

// dq pass, key block `key0..`: S = Q Kᵀ and dP = dO Vᵀ (Q, dO from registers; dk, dv K-major),
// issued ahead of dQ += dS K of the previous block (dS in a_ds, K MN-major at dk_mn_prev); then
// P = 2^(S·scale·log2(e) − lse·log2(e)) (0 past the end), dS = P ∘ (dP − delta) into a_ds.
template <class Elem, int D, int BK>
__device__ __forceinline__ void dq_sm90_step(float (&acc_dq)[D / 8][4], uint32_t (&a_ds)[BK / 16][4],
                                             uint32_t (&a_q)[D / 16][4], uint32_t (&a_do)[D / 16][4], uint64_t dk,
                                             uint64_t dv, uint64_t dk_mn_prev, bool has_prev, const float (&lse2)[2],
                                             const float (&delta)[2], int key0, const SlaParams& p, int t) {
  float acc_s[BK / 8][4];   // S = Q Kᵀ, then P
  float acc_dp[BK / 8][4];  // dP = dO Vᵀ, then dS
  zero(acc_s);
  zero(acc_dp);
  fence_operand(acc_s);
  fence_operand(acc_dp);
  fence_operand(acc_dq);
  fence_operand(a_ds);
  fence_operand(a_q);
  fence_operand(a_do);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) wgmma_m64n64k16_rs_kmajor<Elem>(acc_s, a_q[kk], dk + k16_step(kk, BK));
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) wgmma_m64n64k16_rs_kmajor<Elem>(acc_dp, a_do[kk], dv + k16_step(kk, BK));
  wgmma_commit();
  wgmma_rs_behind<Elem, D, BK>(acc_dq, a_ds, dk_mn_prev, has_prev);  // the previous block's dQ += dS K
  fence_operand(acc_s);
  fence_operand(acc_dp);
  const bool partial = key0 + BK > p.seqlen;
#pragma unroll
  for (int j = 0; j < BK / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int half = e >> 1;
      float pr = fast_exp2(fmaf(acc_s[j][e], p.scale_log2, -lse2[half]));
      if (partial && key0 + 8 * j + 2 * t + (e & 1) >= p.seqlen) pr = 0.f;
      acc_dp[j][e] = pr * (acc_dp[j][e] - delta[half]);
    }
  }
  wgmma_wait<0>();
  fence_operand(acc_dq);
  c_to_a<BK, Elem>(a_ds, acc_dp);
}

// dq pass: lse (log2 units) and delta of this lane's two rows (g, g + 8) of the warp's rows
// wrow0..; rows past the end get lse = +inf, so that P = 0 there.
__device__ __forceinline__ void dq_row_stats(const SlaParams& p, int bh, int wrow0, int g, float (&lse2)[2],
                                             float (&delta)[2]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = wrow0 + g + 8 * half;
    const bool valid = r < p.seqlen;
    lse2[half] = valid ? p.lse[int64_t(bh) * p.seqlen + r] * 1.4426950408889634f : INFINITY;
    delta[half] = valid ? p.delta[int64_t(bh) * p.seqlen + r] : 0.f;
  }
}

}  // namespace sla::kernels
