// Forward on Hopper: the walk of sla_fwd_kernel.cuh (one CTA per (query block, b, h) over the
// query block's LUT, online softmax, fused linear-branch epilogue) with both products on wgmma.
// Each warpgroup owns 64 query rows: S = Q Kᵀ reads Q and K from shared memory through
// descriptors, O += P V takes P from registers (the S accumulators, rounded to 16 bits) and V
// from shared memory. All threads load K/V stages with cp.async, one step ahead.
// Compiled for sm_90a only (sla_fwd_sm90.cu); key blocks of 64 rows.
#pragma once

#include "sla_fwd_common.cuh"
#include "sla_params.h"
#include "wgmma.cuh"

#include <cmath>

namespace sla::kernels {

template <class Elem, int D, int BQ>
struct FwdSm90Traits {
  static constexpr int kBlockK = 64;                 // keys per LUT entry: an m64n64 S tile each
  static constexpr int kWarpgroups = BQ / 64;        // 64 query rows each
  static constexpr int kThreads = 128 * kWarpgroups;
  // LUT entries per step: 128-row CTAs (one per SM) take two, so S = Q Kᵀ is one m64n128 wgmma
  // per k16 step instead of two m64n64 ones; 64-row CTAs take one and keep two CTAs per SM.
  static constexpr int kGroup = BQ == 128 ? 2 : 1;
  // Stages of kGroup K/V blocks: the current step's, the previous one's (its O += P V) and one
  // in flight.
  static constexpr int kStages = 3;
  static constexpr int kQBytes = BQ * D * 2;                     // sw128 [D / 64][BQ][64]
  static constexpr int kBlockBytes = kBlockK * D * 2;            // one K or V block, sw128 [D / 64][64][64]
  static constexpr int kStageBytes = 2 * kGroup * kBlockBytes;   // K blocks, then V blocks
  static constexpr int kSmemBytes = 1024 + kQBytes + kStages * kStageBytes;  // + alignment of the panels
};

template <class Elem, int D, int BQ>
__global__ void __launch_bounds__(FwdSm90Traits<Elem, D, BQ>::kThreads)
    sla_fwd_sm90_kernel(const __grid_constant__ SlaParams p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Tr = FwdSm90Traits<Elem, D, BQ>;
  constexpr int BK = Tr::kBlockK;
  constexpr int G = Tr::kGroup;
  static_assert(D == 64 || D == 128, "wgmma widths 64 and 128 for O");
  static_assert(BQ == 64 || BQ == 128, "one or two warpgroups");
  static_assert(Tr::kStages * Tr::kStageBytes >= D * kSmemStride<D> * 2, "the K, V stages hold M after the loop");
  static_assert(Tr::kSmemBytes <= 227 * 1024, "shared memory per CTA");
  static_assert(Tr::kQBytes % 1024 == 0 && Tr::kBlockBytes % 1024 == 0, "every panel 1024-byte aligned");
  static_assert(G * BK == 64 || G * BK == 128, "wgmma widths 64 and 128 for S");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  // Panels of sw128 tiles must start 1024-byte aligned (the swizzle reads address bits 7-9).
  unsigned char* smem = smem_raw + ((1024 - smem_addr(smem_raw) % 1024) % 1024);
  Elem* sQ = reinterpret_cast<Elem*>(smem);  // sw128 [D / 64][BQ][64]
  Elem* sKV = sQ + BQ * D;                    // [kStages][K blocks, V blocks][G] x sw128 [D / 64][BK][64]
  Elem* sM = sKV;                             // padded [D][D + 8] after the loop: M = S Wᵀ
  // A stage's K (and V) is one sw128 tile of G BK rows, LUT entry blk in rows blk BK..: S = Q Kᵀ
  // is then one m64n(G BK) product per k16 step.
  auto sK = [&](int stage) { return sKV + (stage * 2) * G * BK * D; };
  auto sV = [&](int stage) { return sKV + (stage * 2 + 1) * G * BK * D; };

  const int qb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int bh = b * p.heads + h;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wg = warp / 4, t = lane & 3;
  const int row0 = qb * BQ;
  const int n = p.blocks_per_row;
  const int steps = (n + G - 1) / G;
  const int32_t* lut = p.lut + (int64_t(bh) * p.num_q_blocks + qb) * n;  // [n]

  const Elem* q = row_ptr<Elem>(p.q, b, h, 0);  // (L, D)
  const Elem* k = row_ptr<Elem>(p.k, b, h, 0);  // (L, D)
  const Elem* v = row_ptr<Elem>(p.v, b, h, 0);  // (L, D)

  // The step's LUT entries step * G.. into its stage, one cp.async group per call (empty past the
  // last step, so the waits count uniformly). Entries past the LUT's end are zero-filled, so the
  // products below need no branches (their scores are masked; 0 x 0 adds nothing to O).
  auto issue_kv = [&](int step) {
    if (step < steps) {
      const int stage = step % Tr::kStages;
#pragma unroll
      for (int blk = 0; blk < G; ++blk) {
        const bool entry = step * G + blk < n;
        const int key0 = entry ? lut[step * G + blk] * BK : 0;
        const int rows = entry ? p.seqlen - key0 : 0;
        load_tile_sw128_async<BK, D, Tr::kThreads>(sK(stage) + blk * BK * 64, k + key0 * p.k.row, p.k.row, rows,
                                                   tid, G * BK);
        load_tile_sw128_async<BK, D, Tr::kThreads>(sV(stage) + blk * BK * 64, v + key0 * p.v.row, p.v.row, rows,
                                                   tid, G * BK);
      }
    }
    cp_async_commit();
  };
  // Descriptors: Q of this warpgroup (its 64 rows of every panel), K and V blocks. The k16 steps
  // advance the start address field (16-byte units) by constants.
  const uint64_t desc_q = sw128_desc(sQ + wg * 64 * 64, 0);
  auto k16_step = [](int kk, int panel_rows) { return uint64_t(((kk / 4) * panel_rows * 64 + (kk % 4) * 16) * 2 / 16); };
  // O += P V of a step: V blocks MN-major, 16 keys per k16 step.
  auto issue_pv = [&](float (&acc_o)[D / 8][4], const uint32_t (&a_p)[G * BK / 16][4], int step) {
    const uint64_t dv = sw128_desc(sV(step % Tr::kStages), G * BK * 64 * 2);
#pragma unroll
    for (int kk = 0; kk < G * BK / 16; ++kk) wgmma_rs<D, Elem>(acc_o, a_p[kk], dv + uint64_t(kk * 16 * 64 * 2 / 16));
  };

  load_tile_sw128_async<BQ, D, Tr::kThreads>(sQ, q + row0 * p.q.row, p.q.row, p.seqlen - row0, tid);
#pragma unroll
  for (int s = 0; s < Tr::kStages - 2; ++s) issue_kv(s);  // the first group carries Q too

  float acc_o[D / 8][4];  // O (this warp's 16 rows x D), unnormalised
  zero(acc_o);
  float row_max[2] = {-INFINITY, -INFINITY};  // rows g and g + 8, in log2 units
  float row_sum[2] = {0.f, 0.f};              // this lane's share of the softmax denominators
  uint32_t a_p[G * BK / 16][4];               // P of the previous step: A of its O += P V

  // Step s: S = Q Kᵀ is issued ahead of step s - 1's O += P V, so the tensor cores work on both
  // while this warpgroup waits for S, and on O += P V during the softmax. A stage is refilled two
  // steps after its own: its V is read until the next step's O += P V is done.
  for (int step = 0; step < steps; ++step) {
    cp_async_wait<Tr::kStages - 3>();  // this thread's copies of step `step` have landed
    fence_proxy_async();
    __syncthreads();                   // everyone's have; everyone is done with step - 2
    issue_kv(step + Tr::kStages - 2);

    float acc_s[G * BK / 8][4];  // S = Q Kᵀ (this warp's 16 rows x G BK keys)
    zero(acc_s);
    fence_operand(acc_s);  // registers written before the fence, as wgmma requires
    fence_operand(acc_o);
    fence_operand(a_p);
    wgmma_fence();
    const uint64_t dk = sw128_desc(sK(step % Tr::kStages), 0);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) wgmma_ss<G * BK, Elem>(acc_s, desc_q + k16_step(kk, BQ), dk + k16_step(kk, G * BK));
    wgmma_commit();
    if (step > 0) {
      wgmma_fence();  // ptxas wants one in this branch too
      issue_pv(acc_o, a_p, step - 1);
      wgmma_commit();
      wgmma_wait<1>();
    } else {
      wgmma_wait<0>();
    }
    fence_operand(acc_s);

#pragma unroll
    for (int blk = 0; blk < G; ++blk) {
      float (&s_blk)[BK / 8][4] = *reinterpret_cast<float(*)[BK / 8][4]>(&acc_s[blk * BK / 8]);
      const int entry = step * G + blk;
      mask_keys<BK>(s_blk, entry < n ? lut[entry] * BK : p.seqlen, p.seqlen, t);
    }
    float alpha[2];
    online_softmax_step<G * BK>(acc_s, row_max, row_sum, alpha, p);
    wgmma_wait<0>();
    fence_operand(acc_o);
    rescale_rows<D>(acc_o, alpha);
    c_to_a<G * BK, Elem>(a_p, acc_s);
  }
  {  // the last step's O += P V
    fence_operand(acc_o);
    fence_operand(a_p);
    wgmma_fence();
    issue_pv(acc_o, a_p, steps - 1);
    wgmma_commit();
    wgmma_wait<0>();
    fence_operand(acc_o);
  }
  cp_async_wait<0>();  // the empty groups past the LUT's end
  __syncthreads();     // the K, V stages become M's

  uint32_t a_q[D / 16][4];  // this warp's Q rows as A fragments, for φ(Q) of the linear branch
  if (p.lin_state != nullptr) load_a_frags_sw128<D>(a_q, sQ, BQ, warp * 16, lane);
  fwd_epilogue<Elem, D, Tr::kThreads>(p, acc_o, row_max, row_sum, a_q, sM, b, h, row0 + warp * 16, tid, lane);
#else
  __trap();  // built without sm_90a code: the launcher never selects this kernel then
#endif
}

}  // namespace sla::kernels
