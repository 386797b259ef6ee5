// The dq pass on Hopper, warp-specialised as the forward (sla_fwd_ws_sm90_kernel.cuh): one
// producer warpgroup issuing TMA loads of Q, dO and of the LUT's K/V blocks into an mbarrier-guarded
// ring, two consumer warpgroups of 64 query rows running sla_bwd_dq_sm90_kernel's loop (S = Q Kᵀ
// and dP = dO Vᵀ of block j issued ahead of dQ += dS K of block j - 1) without a CTA barrier per
// block. A CTA takes 128 query rows: one query block of 128, whose LUT row both warpgroups walk
// through one ring of K/V blocks, or two query blocks of 64, one per warpgroup, each stage holding
// a K/V block of each LUT row. There Q and dO (each consumer keeps its rows in registers) come as
// the ring's first entry, so that their 64 KB serve as a third stage afterwards.
#pragma once

#include "sla_params.h"
#include "sla_sm90_steps.cuh"
#include "tma.cuh"
#include "wgmma.cuh"

#include <cmath>

namespace sla::kernels {

template <class Elem, int D, int BQ>
struct BwdDqWsSm90Traits {
  static constexpr int kBlockK = 64;
  static constexpr int kRows = 128;                       // query rows per CTA
  static constexpr int kQBlocks = kRows / BQ;             // query blocks (LUT rows) per CTA
  static constexpr int kThreads = 3 * 128;                // producer + two consumer warpgroups
  static constexpr int kQBytes = kRows * D * 2;           // Q and dO, each sw128 [D / 64][128][64]
  static constexpr int kKBytes = kBlockK * D * 2;         // a K or V block, sw128 [D / 64][64][64]
  static constexpr int kStageBytes = kQBlocks * 2 * kKBytes;  // K and V of each query block
  // Two query blocks: Q and dO arrive through the ring (its first entry fills exactly one stage).
  static constexpr bool kQInRing = kQBlocks == 2;
  static constexpr int kQRegion = kQInRing ? 0 : 2 * kQBytes;  // Q and dO outside the ring
  // 5 stages at D 128 with one query block, 3 (the first holding Q and dO at first) with two.
  static constexpr int kStages = (227 * 1024 - 1024 - 256 - kQRegion) / kStageBytes;
  static constexpr int kSmemBytes = 1024 + kQRegion + kStages * kStageBytes + 8 * (2 * kStages + 1);
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = 240;
};

template <class Elem, int D, int BQ>
__global__ void __launch_bounds__(BwdDqWsSm90Traits<Elem, D, BQ>::kThreads, 1)
    sla_bwd_dq_ws_sm90_kernel(const __grid_constant__ SlaParams p, const __grid_constant__ BwdTensorMaps maps) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Tr = BwdDqWsSm90Traits<Elem, D, BQ>;
  constexpr int BK = Tr::kBlockK, kRows = Tr::kRows, kQB = Tr::kQBlocks, kS = Tr::kStages;
  constexpr int kQE = Tr::kQInRing ? 1 : 0;  // ring entries before the first K/V blocks
  static_assert(D == 64 || D == 128, "wgmma widths 64 and 128 for dQ");
  static_assert(BQ == 64 || BQ == 128, "one or two query blocks per CTA");
  static_assert(kS >= 3, "a stage in use, the previous one's K, one in flight");
  static_assert(Tr::kSmemBytes <= 227 * 1024, "shared memory per CTA");
  static_assert(Tr::kQBytes % 1024 == 0 && Tr::kKBytes % 1024 == 0, "every panel 1024-byte aligned");
  static_assert(!Tr::kQInRing || 2 * Tr::kQBytes == Tr::kStageBytes, "Q and dO fill the first stage");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* smem = align_sw128(smem_raw);
  Elem* sK = reinterpret_cast<Elem*>(smem + Tr::kQRegion);  // [kS][kQB] x sw128 [D / 64][BK][64]
  Elem* sV = sK + kS * kQB * BK * D;                          // [kS][kQB] x sw128 [D / 64][BK][64]
  // Q, dO: sw128 [D / 64][128][64] each, before the ring or in its first stage (K half, V half).
  Elem* sQ = Tr::kQInRing ? sK : reinterpret_cast<Elem*>(smem);
  Elem* sdO = Tr::kQInRing ? sV : sQ + kRows * D;
  uint64_t* full = reinterpret_cast<uint64_t*>(sV + kS * kQB * BK * D);  // [kS]
  uint64_t* empty = full + kS;                                            // [kS]
  uint64_t* q_full = Tr::kQInRing ? &full[0] : empty + kS;

  const int x = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int bh = b * p.heads + h;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int row0 = x * kRows;
  const int n = p.blocks_per_row;
  // Query block j's LUT row; past the last one (an odd count of 64-row blocks) the last block's
  // again, whose rows, past L, are never written.
  auto lut_row = [&](int j) {
    return p.lut + (int64_t(bh) * p.num_q_blocks + min(x * kQB + j, p.num_q_blocks - 1)) * n;  // [n]
  };
  auto k_tile = [&](int stage, int j) { return sK + (stage * kQB + j) * BK * D; };
  auto v_tile = [&](int stage, int j) { return sV + (stage * kQB + j) * BK * D; };

  init_ring_barriers(full, empty, kS, 1, 8, empty + kS);  // one producer thread; all eight consumer warps

  if (warp < 4) {  // the producer warpgroup
    warpgroup_reg_dealloc<Tr::kProducerRegs>();
    if (tid == 0) {
      tma_prefetch_map(&maps.k);
      tma_prefetch_map(&maps.v);
      mbar_arrive_expect_tx(q_full, 2 * Tr::kQBytes);  // entry 0 where kQInRing: a fresh stage, no wait
#pragma unroll
      for (int c = 0; c < D / 64; ++c) {
        tma_load_4d(sQ + c * kRows * 64, &maps.q, c * 64, row0, h, b, q_full);
        tma_load_4d(sdO + c * kRows * 64, &maps.d_o, c * 64, row0, h, b, q_full);
      }
      const int32_t* luts[kQB];
#pragma unroll
      for (int j = 0; j < kQB; ++j) luts[j] = lut_row(j);
      for (int step = 0; step < n; ++step) {
        const int e = kQE + step, stage = e % kS;
        mbar_wait(&empty[stage], ((e / kS) & 1) ^ 1);
        mbar_arrive_expect_tx(&full[stage], Tr::kStageBytes);
        load_lut_step<kQB, 1, BK, D>(k_tile(stage, 0), v_tile(stage, 0), luts, step, n, &maps.k, &maps.v, h, b,
                                     &full[stage]);
      }
    }
    return;
  }

  warpgroup_reg_alloc<Tr::kConsumerRegs>();
  const int cwarp = warp - 4;  // 0..7 over the consumers: rows 16 cwarp..
  const int own = kQB == 1 ? 0 : cwarp / 4;  // this warpgroup's query block in the CTA
  const int g = lane >> 2, t = lane & 3;
  const int wrow0 = row0 + cwarp * 16;
  const int32_t* lut = lut_row(own);
  auto desc_k = [&](int stage) { return sw128_desc(k_tile(stage, own), 0); };             // K-major (S)
  auto desc_v = [&](int stage) { return sw128_desc(v_tile(stage, own), 0); };             // K-major (dP)
  auto desc_k_mn = [&](int stage) { return sw128_desc(k_tile(stage, own), BK * 64 * 2); };  // MN-major (dQ)

  float lse2[2], delta[2];
  dq_row_stats(p, bh, wrow0, g, lse2, delta);
  float acc_dq[D / 8][4];  // dQ / scale (this warp's 16 rows x D)
  zero(acc_dq);
  uint32_t a_ds[BK / 16][4];  // dS of the previous block: A of its dQ += dS K
  uint32_t a_q[D / 16][4], a_do[D / 16][4];  // this warp's Q and dO rows as A fragments
  mbar_wait(q_full, 0);
  load_a_frags_sw128<D>(a_q, sQ, kRows, cwarp * 16, lane);
  load_a_frags_sw128<D>(a_do, sdO, kRows, cwarp * 16, lane);
  if (Tr::kQInRing && lane == 0) mbar_arrive(&empty[0]);  // this warp is done with the first stage's Q, dO

  for (int step = 0; step < n; ++step) {
    const int e = kQE + step, stage = e % kS, prev = (e + kS - 1) % kS;
    mbar_wait(&full[stage], (e / kS) & 1);
    dq_sm90_step<Elem, D, BK>(acc_dq, a_ds, a_q, a_do, desc_k(stage), desc_v(stage), desc_k_mn(prev), step > 0, lse2,
                              delta, lut[step] * BK, p, t);
    if (step > 0 && lane == 0) mbar_arrive(&empty[prev]);  // this warp is done with the previous block
  }
  wgmma_rs_wait<Elem, D, BK>(acc_dq, a_ds, desc_k_mn((kQE + n - 1) % kS));  // the last block's dQ += dS K
  // written once; the addend's row loaded whole before its stores (registers allow it here)
  store_rows<D, Elem, D / 8>(acc_dq, p.scale, p.dq, p.dq_add, b, h, wrow0, p.seqlen, lane);
#else
  __trap();  // built without sm_90a code: the launcher never selects this kernel then
#endif
}

}  // namespace sla::kernels
