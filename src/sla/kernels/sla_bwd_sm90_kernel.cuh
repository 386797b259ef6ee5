// The dq pass of the backward (sla_bwd_kernel.cuh, stage 2) on Hopper: one CTA per (query block,
// b, h) over the query block's LUT, each warpgroup owning 64 query rows, with the three products
// on wgmma: S = Q Kᵀ and dP = dO Vᵀ from shared memory (K-major), dQ += dS K with dS from
// registers and K read MN-major from the same tile. As in the forward, the products of block j are
// issued ahead of dQ += dS K of block j - 1, so the tensor cores work on that one while the warps
// compute dS of block j. Compiled for sm_90a only (sla_bwd_sm90.cu); key blocks of 64 rows.
#pragma once

#include "sla_fwd_common.cuh"
#include "sla_params.h"
#include "wgmma.cuh"

#include <cmath>

namespace sla::kernels {

template <class Elem, int D, int BQ>
struct BwdDqSm90Traits {
  static constexpr int kBlockK = 64;
  static constexpr int kWarpgroups = BQ / 64;
  static constexpr int kThreads = 128 * kWarpgroups;
  // K/V stages: the current block, the previous one (its dQ += dS K) and kStages - 2 in flight.
  static constexpr int kStages = 4;
  static constexpr int kQBytes = BQ * D * 2;               // Q and dO, each sw128 [D / 64][BQ][64]
  static constexpr int kStageBytes = 2 * kBlockK * D * 2;  // K and V, each sw128 [D / 64][64][64]
  static constexpr int kSmemBytes = 1024 + 2 * kQBytes + kStages * kStageBytes;  // + panel alignment
};

template <class Elem, int D, int BQ>
__global__ void __launch_bounds__(BwdDqSm90Traits<Elem, D, BQ>::kThreads)
    sla_bwd_dq_sm90_kernel(const __grid_constant__ SlaParams p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Tr = BwdDqSm90Traits<Elem, D, BQ>;
  constexpr int BK = Tr::kBlockK;
  static_assert(D == 64 || D == 128, "wgmma widths 64 and 128 for dQ");
  static_assert(BQ == 64 || BQ == 128, "one or two warpgroups");
  static_assert(Tr::kSmemBytes <= 227 * 1024, "shared memory per CTA");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* smem = smem_raw + ((1024 - smem_addr(smem_raw) % 1024) % 1024);
  Elem* sQ = reinterpret_cast<Elem*>(smem);  // sw128 [D / 64][BQ][64]
  Elem* sdO = sQ + BQ * D;                    // sw128 [D / 64][BQ][64]
  Elem* sK = sdO + BQ * D;                    // [kStages] x sw128 [D / 64][BK][64]
  Elem* sV = sK + Tr::kStages * BK * D;       // [kStages] x sw128 [D / 64][BK][64]

  const int qb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int bh = b * p.heads + h;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wg = warp / 4, g = lane >> 2, t = lane & 3;
  const int row0 = qb * BQ;
  const int wrow0 = row0 + warp * 16;
  const int n = p.blocks_per_row;
  const int32_t* lut = p.lut + (int64_t(bh) * p.num_q_blocks + qb) * n;  // [n]

  const Elem* q = row_ptr<Elem>(p.q, b, h, 0);      // (L, D)
  const Elem* k = row_ptr<Elem>(p.k, b, h, 0);      // (L, D)
  const Elem* v = row_ptr<Elem>(p.v, b, h, 0);      // (L, D)
  const Elem* d_o = row_ptr<Elem>(p.d_o, b, h, 0);  // (L, D)

  auto issue_kv = [&](int step) {  // one cp.async group per call, empty past the LUT's end
    if (step < n) {
      const int key0 = lut[step] * BK;
      const int stage = step % Tr::kStages;
      load_tile_sw128_async<BK, D, Tr::kThreads>(sK + stage * BK * D, k + key0 * p.k.row, p.k.row, p.seqlen - key0,
                                                 tid);
      load_tile_sw128_async<BK, D, Tr::kThreads>(sV + stage * BK * D, v + key0 * p.v.row, p.v.row, p.seqlen - key0,
                                                 tid);
    }
    cp_async_commit();
  };
  const uint64_t desc_q = sw128_desc(sQ + wg * 64 * 64, 0);
  const uint64_t desc_do = sw128_desc(sdO + wg * 64 * 64, 0);
  auto desc_k = [&](int stage) { return sw128_desc(sK + stage * BK * D, 0); };             // K-major (S)
  auto desc_v = [&](int stage) { return sw128_desc(sV + stage * BK * D, 0); };             // K-major (dP)
  auto desc_k_mn = [&](int stage) { return sw128_desc(sK + stage * BK * D, BK * 64 * 2); };  // MN-major (dQ)
  auto k16_step = [](int kk, int panel_rows) { return uint64_t(((kk / 4) * panel_rows * 64 + (kk % 4) * 16) * 2 / 16); };

  load_tile_sw128_async<BQ, D, Tr::kThreads>(sQ, q + row0 * p.q.row, p.q.row, p.seqlen - row0, tid);
  load_tile_sw128_async<BQ, D, Tr::kThreads>(sdO, d_o + row0 * p.d_o.row, p.d_o.row, p.seqlen - row0, tid);
#pragma unroll
  for (int s = 0; s < Tr::kStages - 2; ++s) issue_kv(s);  // the first group carries Q and dO too

  // Per-row statistics of this lane's two rows (g, g + 8); rows past the end get P = 0.
  float lse2[2], delta[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = wrow0 + g + 8 * half;
    const bool valid = r < p.seqlen;
    lse2[half] = valid ? p.lse[int64_t(bh) * p.seqlen + r] * 1.4426950408889634f : INFINITY;
    delta[half] = valid ? p.delta[int64_t(bh) * p.seqlen + r] : 0.f;
  }

  float acc_dq[D / 8][4];  // dQ / scale (this warp's 16 rows x D)
  zero(acc_dq);
  uint32_t a_ds[BK / 16][4];  // dS of the previous block: A of its dQ += dS K

  for (int step = 0; step < n; ++step) {
    cp_async_wait<Tr::kStages - 3>();
    fence_proxy_async();
    __syncthreads();  // block `step` landed for everyone; everyone is done with block step - 2
    issue_kv(step + Tr::kStages - 2);

    const int stage = step % Tr::kStages;
    float acc_s[BK / 8][4];   // S = Q Kᵀ, then P
    float acc_dp[BK / 8][4];  // dP = dO Vᵀ, then dS
    zero(acc_s);
    zero(acc_dp);
    fence_operand(acc_s);
    fence_operand(acc_dp);
    fence_operand(acc_dq);
    fence_operand(a_ds);
    wgmma_fence();
    const uint64_t dk = desc_k(stage), dv = desc_v(stage);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      wgmma_m64n64k16_ss<Elem>(acc_s, desc_q + k16_step(kk, BQ), dk + k16_step(kk, BK));
    }
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      wgmma_m64n64k16_ss<Elem>(acc_dp, desc_do + k16_step(kk, BQ), dv + k16_step(kk, BK));
    }
    wgmma_commit();
    if (step > 0) {
      wgmma_fence();
      const uint64_t dk_mn = desc_k_mn((step - 1) % Tr::kStages);
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        wgmma_rs<D, Elem>(acc_dq, a_ds[kk], dk_mn + uint64_t(kk * 16 * 64 * 2 / 16));
      }
      wgmma_commit();
      wgmma_wait<1>();
    } else {
      wgmma_wait<0>();
    }
    fence_operand(acc_s);
    fence_operand(acc_dp);

    // P = 2^(S·scale·log2(e) − lse·log2(e)) (0 past the end); dS = P ∘ (dP − delta)
    const int key0 = lut[step] * BK;
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
  {  // the last block's dQ += dS K
    fence_operand(acc_dq);
    fence_operand(a_ds);
    wgmma_fence();
    const uint64_t dk_mn = desc_k_mn((n - 1) % Tr::kStages);
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) wgmma_rs<D, Elem>(acc_dq, a_ds[kk], dk_mn + uint64_t(kk * 16 * 64 * 2 / 16));
    wgmma_commit();
    wgmma_wait<0>();
    fence_operand(acc_dq);
  }
  cp_async_wait<0>();

  Elem* dq = static_cast<Elem*>(p.dq.ptr) + b * p.dq.batch + h * p.dq.head + wrow0 * p.dq.row;
  const float* add = p.dq_add.ptr == nullptr ? nullptr
                                             : static_cast<const float*>(p.dq_add.ptr) + b * p.dq_add.batch +
                                                   h * p.dq_add.head + wrow0 * p.dq_add.row;
  store_c_tile<D, Elem>(acc_dq, p.scale, dq, p.dq.row, add, p.dq_add.row, p.seqlen - wrow0, lane);
#else
  __trap();  // built without sm_90a code: the launcher never selects this kernel then
#endif
}

}  // namespace sla::kernels
