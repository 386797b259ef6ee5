// Backward of the sparse branch, FlashAttention-2 style restricted to the block mask, in three
// named stages (all deterministic: every output element is accumulated by one thread in registers
// and written once):
//   1. preprocess:  delta = rowsum(dO ∘ o_s) = rowsum(dO ∘ o) − rowsum(dO ∘ proj_l(o_l))
//   2. dq pass:     one CTA per (query block, b, h) over its LUT:           dQ_i = scale Σ_j dS_ij K_j
//   3. dk/dv pass:  one CTA per (key block, b, h) over the transposed index: dV_j = Σ_i P_ijᵀ dO_i,
//                                                                           dK_j = scale Σ_i dS_ijᵀ Q_i
// with P = exp(scale Q Kᵀ − lse), dP = dO Vᵀ, dS = P ∘ (dP − delta).
// The linear-branch gradients arrive as float32 addends and are folded into the single write.
#pragma once

#include "sla_params.h"
#include "tile_config.h"
#include "warp_mma.cuh"

#include <cmath>

namespace sla::kernels {

inline constexpr float kLog2e = 1.4426950408889634f;

// Stage 1: one warp per row. delta (B*H, L) float32. o = o_s + proj_l(o_l), so rowsum(dO ∘ o_s)
// comes from o and the linear branch's row sums (delta_lin) without storing o_s.
template <class Elem, int D>
__global__ void __launch_bounds__(256) sla_bwd_preprocess_kernel(const __grid_constant__ SlaParams p) {
  static_assert(D % 32 == 0, "whole lanes per row");
  const int64_t row_id = int64_t(blockIdx.x) * 8 + threadIdx.x / 32;  // over B*H*L
  const int lane = threadIdx.x % 32;
  if (row_id >= int64_t(p.batch) * p.heads * p.seqlen) return;
  const int r = int(row_id % p.seqlen);
  const int bh = int(row_id / p.seqlen);
  const int b = bh / p.heads, h = bh % p.heads;
  const Elem* d_o = static_cast<const Elem*>(p.d_o.ptr) + b * p.d_o.batch + h * p.d_o.head + r * p.d_o.row;
  const Elem* o = static_cast<const Elem*>(p.o.ptr) + b * p.o.batch + h * p.o.head + r * p.o.row;
  float sum = 0.f;
#pragma unroll
  for (int d = lane; d < D; d += 32) sum += to_float(d_o[d]) * to_float(o[d]);
#pragma unroll
  for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffff, sum, off);
  if (lane == 0) p.delta[row_id] = p.delta_lin != nullptr ? sum - p.delta_lin[row_id] : sum;
}

template <class Elem, int D, int BQ, int BK>
struct BwdDqTraits {
  static constexpr int kWarps = BQ / 16;  // each warp owns 16 query rows
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kSub = bwd_sub_tile(BK, D);  // keys per inner product
  static constexpr int kStages = bwd_dq_stages(BQ, BK, D);
  static constexpr int kSmemBytes = bwd_dq_smem_bytes(BQ, BK, D, kStages);
};

// Stage 2.
template <class Elem, int D, int BQ, int BK>
__global__ void __launch_bounds__(BwdDqTraits<Elem, D, BQ, BK>::kThreads)
    sla_bwd_dq_kernel(const __grid_constant__ SlaParams p) {
  using Tr = BwdDqTraits<Elem, D, BQ, BK>;
  static_assert(D % 16 == 0 && BQ % 16 == 0 && Tr::kSub % 16 == 0 && BK % Tr::kSub == 0, "whole fragments");
  static_assert(Tr::kSmemBytes <= kSmemBudgetBytes, "shared-memory budget");
  constexpr int kS = kSmemStride<D>;
  constexpr int kSub = Tr::kSub;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  Elem* sQ = reinterpret_cast<Elem*>(smem_raw);  // [BQ][kS]
  Elem* sdO = sQ + BQ * kS;                      // [BQ][kS]
  Elem* sK = sdO + BQ * kS;                      // [kStages][BK][kS]
  Elem* sV = sK + Tr::kStages * BK * kS;         // [kStages][BK][kS]

  const int qb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int bh = b * p.heads + h;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;
  const int row0 = qb * BQ;
  const int wrow0 = row0 + warp * 16;
  const int n = p.blocks_per_row;
  const int32_t* lut = p.lut + (int64_t(bh) * p.num_q_blocks + qb) * n;  // [n]

  const Elem* q = row_ptr<Elem>(p.q, b, h, 0);
  const Elem* k = row_ptr<Elem>(p.k, b, h, 0);
  const Elem* v = row_ptr<Elem>(p.v, b, h, 0);
  const Elem* d_o = row_ptr<Elem>(p.d_o, b, h, 0);

  auto issue_kv = [&](int step) {
    const int key0 = lut[step] * BK;
    const int stage = step % Tr::kStages;
    load_tile_async<BK, D, Tr::kThreads>(sK + stage * BK * kS, k + key0 * p.k.row, p.k.row, p.seqlen - key0, tid);
    load_tile_async<BK, D, Tr::kThreads>(sV + stage * BK * kS, v + key0 * p.v.row, p.v.row, p.seqlen - key0, tid);
    cp_async_commit();
  };
  load_tile_async<BQ, D, Tr::kThreads>(sQ, q + row0 * p.q.row, p.q.row, p.seqlen - row0, tid);
  load_tile_async<BQ, D, Tr::kThreads>(sdO, d_o + row0 * p.d_o.row, p.d_o.row, p.seqlen - row0, tid);
  issue_kv(0);

  // Per-row statistics of this lane's two rows (g, g + 8); rows past the end get P = 0.
  float lse2[2], delta[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = wrow0 + g + 8 * half;
    const bool valid = r < p.seqlen;
    lse2[half] = valid ? p.lse[int64_t(bh) * p.seqlen + r] * kLog2e : INFINITY;
    delta[half] = valid ? p.delta[int64_t(bh) * p.seqlen + r] : 0.f;
  }

  uint32_t a_q[D / 16][4];   // Q rows of this warp (16 x D)
  uint32_t a_do[D / 16][4];  // dO rows of this warp (16 x D)
  float acc_dq[D / 8][4];    // dQ (16 x D) / scale
  zero(acc_dq);

  for (int step = 0; step < n; ++step) {
    const bool prefetch = Tr::kStages == 2 && step + 1 < n;
    if (prefetch) issue_kv(step + 1);
    if (prefetch) {
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (step == 0) {
      load_a_frags<D>(a_q, sQ + warp * 16 * kS, kS, lane);
      load_a_frags<D>(a_do, sdO + warp * 16 * kS, kS, lane);
    }
    const int stage = step % Tr::kStages;
    const int key0 = lut[step] * BK;
#pragma unroll 1
    for (int sub = 0; sub < BK / kSub; ++sub) {
      const Elem* tK = sK + (stage * BK + sub * kSub) * kS;  // [kSub][kS]
      const Elem* tV = sV + (stage * BK + sub * kSub) * kS;  // [kSub][kS]
      float acc_s[kSub / 8][4];  // S = Q Kᵀ, then P
      zero(acc_s);
      mma_a_bt<kSub, D>(acc_s, a_q, tK, kS, lane);
      float acc_dp[kSub / 8][4];  // dP = dO Vᵀ, then dS
      zero(acc_dp);
      mma_a_bt<kSub, D>(acc_dp, a_do, tV, kS, lane);
      // P = exp(scale S − lse) (0 past the end); dS = P ∘ (dP − delta)
#pragma unroll
      for (int j = 0; j < kSub / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = key0 + sub * kSub + 8 * j + 2 * t + (e & 1);
          const int half = e >> 1;
          const float pr = key < p.seqlen ? exp2f(acc_s[j][e] * p.scale_log2 - lse2[half]) : 0.f;
          acc_dp[j][e] = pr * (acc_dp[j][e] - delta[half]);
        }
      }
      // dQ += dS K
      uint32_t a_ds[kSub / 16][4];
      c_to_a<kSub, Elem>(a_ds, acc_dp);
      mma_a_b<D, kSub>(acc_dq, a_ds, tK, kS, lane);
    }
    __syncthreads();
    if (Tr::kStages == 1 && step + 1 < n) issue_kv(step + 1);
  }

  store_rows<D, Elem>(acc_dq, p.scale, p.dq, p.dq_add, b, h, wrow0, p.seqlen, lane);
}

template <class Elem, int D, int BQ, int BK>
struct BwdDkdvTraits {
  static constexpr int kWarps = BK / 16;  // each warp owns 16 key rows
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kSub = bwd_sub_tile(BQ, D);  // query rows per inner product
  static constexpr int kStages = bwd_dkdv_stages(BQ, BK, D);
  static constexpr int kSmemBytes = bwd_dkdv_smem_bytes(BQ, BK, D, kStages);
};

// Stage 3.
template <class Elem, int D, int BQ, int BK>
__global__ void __launch_bounds__(BwdDkdvTraits<Elem, D, BQ, BK>::kThreads)
    sla_bwd_dkdv_kernel(const __grid_constant__ SlaParams p) {
  using Tr = BwdDkdvTraits<Elem, D, BQ, BK>;
  static_assert(D % 16 == 0 && BK % 16 == 0 && Tr::kSub % 16 == 0 && BQ % Tr::kSub == 0, "whole fragments");
  static_assert(Tr::kSmemBytes <= kSmemBudgetBytes, "shared-memory budget");
  constexpr int kS = kSmemStride<D>;
  constexpr int kSub = Tr::kSub;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  Elem* sK = reinterpret_cast<Elem*>(smem_raw);             // [BK][kS]
  Elem* sV = sK + BK * kS;                                  // [BK][kS]
  Elem* sQ = sV + BK * kS;                                  // [kStages][BQ][kS]
  Elem* sdO = sQ + Tr::kStages * BQ * kS;                   // [kStages][BQ][kS]
  float* sLse = reinterpret_cast<float*>(sdO + Tr::kStages * BQ * kS);  // [kStages][BQ], log2 units
  float* sDelta = sLse + Tr::kStages * BQ;                  // [kStages][BQ]

  const int kb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int bh = b * p.heads + h;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int t = lane & 3;
  const int key0 = kb * BK;
  const int wkey0 = key0 + warp * 16;
  const int count = p.kv_count[int64_t(bh) * p.num_k_blocks + kb];
  const int32_t* qblocks = p.kv_list + (int64_t(bh) * p.num_k_blocks + kb) * p.num_q_blocks;  // [count]

  const Elem* q = row_ptr<Elem>(p.q, b, h, 0);
  const Elem* k = row_ptr<Elem>(p.k, b, h, 0);
  const Elem* v = row_ptr<Elem>(p.v, b, h, 0);
  const Elem* d_o = row_ptr<Elem>(p.d_o, b, h, 0);
  const float* lse = p.lse + int64_t(bh) * p.seqlen;
  const float* delta_g = p.delta + int64_t(bh) * p.seqlen;

  auto issue_q = [&](int step) {
    const int row0 = qblocks[step] * BQ;
    const int stage = step % Tr::kStages;
    load_tile_async<BQ, D, Tr::kThreads>(sQ + stage * BQ * kS, q + row0 * p.q.row, p.q.row, p.seqlen - row0, tid);
    load_tile_async<BQ, D, Tr::kThreads>(sdO + stage * BQ * kS, d_o + row0 * p.d_o.row, p.d_o.row,
                                         p.seqlen - row0, tid);
    cp_async_commit();
  };
  // lse and delta rows of a query block, read synchronously (rows past the end: P = 0).
  auto load_stats = [&](int step) {
    const int row0 = qblocks[step] * BQ;
    const int stage = step % Tr::kStages;
    for (int i = tid; i < BQ; i += Tr::kThreads) {
      const bool valid = row0 + i < p.seqlen;
      sLse[stage * BQ + i] = valid ? lse[row0 + i] * kLog2e : INFINITY;
      sDelta[stage * BQ + i] = valid ? delta_g[row0 + i] : 0.f;
    }
  };

  float acc_dk[D / 8][4];  // dK (16 x D) / scale
  float acc_dv[D / 8][4];  // dV (16 x D)
  zero(acc_dk);
  zero(acc_dv);

  load_tile_async<BK, D, Tr::kThreads>(sK, k + key0 * p.k.row, p.k.row, p.seqlen - key0, tid);
  load_tile_async<BK, D, Tr::kThreads>(sV, v + key0 * p.v.row, p.v.row, p.seqlen - key0, tid);
  if (count > 0) {
    issue_q(0);
    load_stats(0);
  } else {
    cp_async_commit();
  }

  for (int step = 0; step < count; ++step) {
    const bool prefetch = Tr::kStages == 2 && step + 1 < count;
    if (prefetch) {
      issue_q(step + 1);
      load_stats(step + 1);
    }
    if (prefetch) {
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int stage = step % Tr::kStages;
#pragma unroll 1
    for (int sub = 0; sub < BQ / kSub; ++sub) {
      const Elem* tQ = sQ + (stage * BQ + sub * kSub) * kS;    // [kSub][kS]
      const Elem* tdO = sdO + (stage * BQ + sub * kSub) * kS;  // [kSub][kS]
      const float* tLse = sLse + stage * BQ + sub * kSub;
      const float* tDelta = sDelta + stage * BQ + sub * kSub;

      float acc_st[kSub / 8][4];  // Sᵀ = K Qᵀ (16 keys x kSub queries), then Pᵀ
      zero(acc_st);
      {
        uint32_t a_k[D / 16][4];
        load_a_frags<D>(a_k, sK + warp * 16 * kS, kS, lane);
        mma_a_bt<kSub, D>(acc_st, a_k, tQ, kS, lane);
      }
      // Pᵀ = exp(scale Sᵀ − lse[query])
#pragma unroll
      for (int j = 0; j < kSub / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = 8 * j + 2 * t + (e & 1);
          acc_st[j][e] = exp2f(acc_st[j][e] * p.scale_log2 - tLse[col]);
        }
      }
      // dV += Pᵀ dO
      {
        uint32_t a_p[kSub / 16][4];
        c_to_a<kSub, Elem>(a_p, acc_st);
        mma_a_b<D, kSub>(acc_dv, a_p, tdO, kS, lane);
      }
      // dPᵀ = V dOᵀ; dSᵀ = Pᵀ ∘ (dPᵀ − delta[query])
      float acc_dpt[kSub / 8][4];
      zero(acc_dpt);
      {
        uint32_t a_v[D / 16][4];
        load_a_frags<D>(a_v, sV + warp * 16 * kS, kS, lane);
        mma_a_bt<kSub, D>(acc_dpt, a_v, tdO, kS, lane);
      }
#pragma unroll
      for (int j = 0; j < kSub / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = 8 * j + 2 * t + (e & 1);
          acc_dpt[j][e] = acc_st[j][e] * (acc_dpt[j][e] - tDelta[col]);
        }
      }
      // dK += dSᵀ Q
      uint32_t a_ds[kSub / 16][4];
      c_to_a<kSub, Elem>(a_ds, acc_dpt);
      mma_a_b<D, kSub>(acc_dk, a_ds, tQ, kS, lane);
    }
    __syncthreads();
    if (Tr::kStages == 1 && step + 1 < count) {
      issue_q(step + 1);
      load_stats(step + 1);
    }
  }

  store_rows<D, Elem>(acc_dk, p.scale, p.dk, p.dk_add, b, h, wkey0, p.seqlen, lane);
  store_rows<D, Elem>(acc_dv, 1.f, p.dv, p.dv_add, b, h, wkey0, p.seqlen, lane);
}

}  // namespace sla::kernels
