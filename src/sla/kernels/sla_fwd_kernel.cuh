// Forward: one CTA per (query block, b, h) walks the query block's LUT with an online softmax on
// tensor cores (FlashAttention-2 style, restricted to the selected key blocks). The epilogue adds
// the linear branch after proj_l, either fused (variant all: O += φ(Q)·(S Wᵀ) / (φ(Q)·z + ε) + b,
// one D x D product per tile) or as a precomputed float32 addend, and writes o once, plus lse.
// The backward needs no o_s: it gets rowsum(dO ∘ o_s) from o and the linear branch.
#pragma once

#include "sla_fwd_common.cuh"
#include "sla_params.h"
#include "tile_config.h"
#include "warp_mma.cuh"

#include <cmath>

namespace sla::kernels {

template <class Elem, int D, int BQ, int BK>
struct FwdTraits {
  static constexpr int kWarps = BQ / 16;  // each warp owns 16 query rows
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kStages = fwd_stages(BQ, BK, D);
  static constexpr int kSmemBytes = fwd_smem_bytes(BQ, BK, D, kStages);
  static constexpr int kStride = kSmemStride<D>;
};

template <class Elem, int D, int BQ, int BK>
__global__ void __launch_bounds__(FwdTraits<Elem, D, BQ, BK>::kThreads)
    sla_fwd_kernel(const __grid_constant__ SlaParams p) {
  using Tr = FwdTraits<Elem, D, BQ, BK>;
  static_assert(D % 16 == 0 && BQ % 16 == 0 && BK % 16 == 0, "tiles are whole mma fragments");
  static_assert(Tr::kSmemBytes <= kSmemBudgetBytes, "shared-memory budget");
  static_assert(Tr::kStages * 2 * BK >= D, "the K, V stages hold M after the loop");
  constexpr int kS = Tr::kStride;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  Elem* sQ = reinterpret_cast<Elem*>(smem_raw);  // [BQ][kS]
  Elem* sK = sQ + BQ * kS;                       // [kStages][BK][kS]
  Elem* sM = sK;                                 // [D][kS] after the main loop: M = S Wᵀ of the linear branch
  Elem* sV = sK + Tr::kStages * BK * kS;         // [kStages][BK][kS]

  const int qb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int bh = b * p.heads + h;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int t = lane & 3;
  const int row0 = qb * BQ;
  const int n = p.blocks_per_row;
  const int32_t* lut = p.lut + (int64_t(bh) * p.num_q_blocks + qb) * n;  // [n]

  const Elem* q = row_ptr<Elem>(p.q, b, h, 0);  // (L, D)
  const Elem* k = row_ptr<Elem>(p.k, b, h, 0);  // (L, D)
  const Elem* v = row_ptr<Elem>(p.v, b, h, 0);  // (L, D)

  auto issue_kv = [&](int step) {
    const int key0 = lut[step] * BK;
    const int stage = step % Tr::kStages;
    load_tile_async<BK, D, Tr::kThreads>(sK + stage * BK * kS, k + key0 * p.k.row, p.k.row, p.seqlen - key0, tid);
    load_tile_async<BK, D, Tr::kThreads>(sV + stage * BK * kS, v + key0 * p.v.row, p.v.row, p.seqlen - key0, tid);
    cp_async_commit();
  };

  load_tile_async<BQ, D, Tr::kThreads>(sQ, q + row0 * p.q.row, p.q.row, p.seqlen - row0, tid);
  issue_kv(0);  // commits Q with the first K, V

  uint32_t a_q[D / 16][4];  // Q rows of this warp (16 x D) as A fragments
  float acc_o[D / 8][4];    // O (16 x D), unnormalised
  zero(acc_o);
  float row_max[2] = {-INFINITY, -INFINITY};  // rows g and g + 8, in log2 units
  float row_sum[2] = {0.f, 0.f};              // this lane's share of the softmax denominators

  for (int step = 0; step < n; ++step) {
    const bool prefetch = Tr::kStages == 2 && step + 1 < n;
    if (prefetch) issue_kv(step + 1);
    if (prefetch) {
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (step == 0) load_a_frags<D>(a_q, sQ + warp * 16 * kS, kS, lane);

    const int stage = step % Tr::kStages;
    const int key0 = lut[step] * BK;
    float acc_s[BK / 8][4];  // S = Q Kᵀ (16 x BK)
    zero(acc_s);
    mma_a_bt<BK, D>(acc_s, a_q, sK + stage * BK * kS, kS, lane);

    float alpha[2];
    online_softmax_step<BK>(acc_s, row_max, row_sum, alpha, key0, p, t);
    rescale_rows<D>(acc_o, alpha);

    // O += P V
    uint32_t a_p[BK / 16][4];
    c_to_a<BK, Elem>(a_p, acc_s);
    mma_a_b<D, BK>(acc_o, a_p, sV + stage * BK * kS, kS, lane);

    __syncthreads();  // this stage is refilled by a later issue_kv
    if (Tr::kStages == 1 && step + 1 < n) issue_kv(step + 1);
  }

  // M of the fused linear branch goes where K and V were (the loop ended with a barrier and no copy
  // in flight), so that the main loop's shared memory holds only Q and the K, V stages.
  fwd_epilogue<Elem, D, Tr::kThreads>(p, acc_o, row_max, row_sum, a_q, sM, b, h, qb, row0 + warp * 16, tid, lane,
                                      [] { __syncthreads(); });
}

}  // namespace sla::kernels
