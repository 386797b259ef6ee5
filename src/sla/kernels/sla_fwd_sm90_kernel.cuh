// Forward on Hopper: the walk of sla_fwd_kernel.cuh (one CTA per (query block, b, h) over the
// query block's LUT, online softmax, fused linear-branch epilogue) with both products on wgmma.
// Each warpgroup owns 64 query rows: S = Q Kᵀ reads Q and K from shared memory through
// descriptors, O += P V takes P from registers (the S accumulators, rounded to 16 bits) and V
// from shared memory. All threads load K/V stages with cp.async, kStages - 2 blocks ahead.
// Compiled for sm_90a only (sla_fwd_sm90.cu); key blocks of 64 rows.
#pragma once

#include "sla_fwd_common.cuh"
#include "sla_params.h"
#include "sla_sm90_steps.cuh"
#include "wgmma.cuh"

#include <cmath>

namespace sla::kernels {

template <class Elem, int D, int BQ>
struct FwdSm90Traits {
  static constexpr int kBlockK = 64;                 // keys per LUT entry: the S tile is m64n64
  static constexpr int kWarpgroups = BQ / 64;        // 64 query rows each
  static constexpr int kThreads = 128 * kWarpgroups;
  // V stages: the current block, the previous one (its O += P V) and kStages - 2 in flight. K's
  // ring is one stage shorter: the previous block's K is done with once its S is. 128-row CTAs
  // run with three blocks in flight; 64-row ones with one, four CTAs per SM at D 64.
  static constexpr int kStages = BQ == 128 ? 5 : 3;
  static constexpr int kKStages = kStages - 1;
  static constexpr int kQBytes = BQ * D * 2;          // sw128 [D / 64][BQ][64]
  static constexpr int kBlockBytes = kBlockK * D * 2;  // one K or V block, sw128 [D / 64][64][64]
  static constexpr int kSmemBytes = 1024 + kQBytes + (kKStages + kStages) * kBlockBytes;  // + alignment of the panels
};

template <class Elem, int D, int BQ>
__global__ void __launch_bounds__(FwdSm90Traits<Elem, D, BQ>::kThreads)
    sla_fwd_sm90_kernel(const __grid_constant__ SlaParams p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Tr = FwdSm90Traits<Elem, D, BQ>;
  constexpr int BK = Tr::kBlockK;
  static_assert(D == 64 || D == 128, "wgmma widths 64 and 128 for O");
  static_assert(BQ == 64 || BQ == 128, "one or two warpgroups");
  static_assert((Tr::kKStages + Tr::kStages) * Tr::kBlockBytes >= D * kSmemStride<D> * 2,
                "the K, V stages hold M after the loop");
  static_assert(Tr::kSmemBytes <= 227 * 1024, "shared memory per CTA");
  static_assert(Tr::kQBytes % 1024 == 0 && Tr::kBlockBytes % 1024 == 0, "every panel 1024-byte aligned");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* smem = align_sw128(smem_raw);
  Elem* sQ = reinterpret_cast<Elem*>(smem);     // sw128 [D / 64][BQ][64]
  Elem* sK = sQ + BQ * D;                        // [kKStages] x sw128 [D / 64][BK][64]
  Elem* sV = sK + Tr::kKStages * BK * D;         // [kStages] x sw128 [D / 64][BK][64]
  Elem* sM = sK;                                 // padded [D][D + 8] after the loop: M = S Wᵀ

  const int qb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int bh = b * p.heads + h;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wg = warp / 4, t = lane & 3;
  const int row0 = qb * BQ;
  const int n = p.blocks_per_row;
  const int32_t* lut = p.lut + (int64_t(bh) * p.num_q_blocks + qb) * n;  // [n]

  const Elem* q = row_ptr<Elem>(p.q, b, h, 0);  // (L, D)
  const Elem* k = row_ptr<Elem>(p.k, b, h, 0);  // (L, D)
  const Elem* v = row_ptr<Elem>(p.v, b, h, 0);  // (L, D)

  // Every call commits one cp.async group (empty past the LUT's end), so the waits count uniformly.
  auto issue_kv = [&](int step) {
    if (step < n) {
      const int key0 = lut[step] * BK;
      load_tile_sw128_async<BK, D, Tr::kThreads>(sK + (step % Tr::kKStages) * BK * D, k + key0 * p.k.row, p.k.row,
                                                 p.seqlen - key0, tid);
      load_tile_sw128_async<BK, D, Tr::kThreads>(sV + (step % Tr::kStages) * BK * D, v + key0 * p.v.row, p.v.row,
                                                 p.seqlen - key0, tid);
    }
    cp_async_commit();
  };
  // Descriptors: Q of this warpgroup (its 64 rows of every panel), K and V of a stage of their rings.
  const uint64_t desc_q = sw128_desc(sQ + wg * 64 * 64, 0);
  auto desc_k = [&](int stage) { return sw128_desc(sK + stage * BK * D, 0); };
  auto desc_v = [&](int stage) { return sw128_desc(sV + stage * BK * D, BK * 64 * 2); };

  load_tile_sw128_async<BQ, D, Tr::kThreads>(sQ, q + row0 * p.q.row, p.q.row, p.seqlen - row0, tid);
#pragma unroll
  for (int s = 0; s < Tr::kStages - 2; ++s) issue_kv(s);  // the first group carries Q too

  float acc_o[D / 8][4];  // O (this warp's 16 rows x D), unnormalised
  zero(acc_o);
  float row_max[2] = {-INFINITY, -INFINITY};  // rows g and g + 8, in log2 units
  float row_sum[2] = {0.f, 0.f};              // this lane's share of the softmax denominators
  uint32_t a_p[BK / 16][4];                   // P of the previous block: A of its O += P V

  // A V stage is refilled two blocks after its own (its V is read until the next block's step is
  // done), a K stage one block after (its K only by its own block's step).
  for (int step = 0; step < n; ++step) {
    cp_async_wait<Tr::kStages - 3>();  // this thread's copies of block `step` have landed
    fence_proxy_async();
    __syncthreads();                   // everyone's have; done with K of step - 1, V of step - 2
    issue_kv(step + Tr::kStages - 2);
    const int key0[1] = {lut[step] * BK};
    fwd_sm90_step<Elem, D, BK>(acc_o, row_max, row_sum, a_p, desc_q, BQ, desc_k(step % Tr::kKStages),
                               desc_v((step + Tr::kStages - 1) % Tr::kStages), step > 0, key0, p, t);
  }
  wgmma_rs_wait<Elem, D, BK>(acc_o, a_p, desc_v((n - 1) % Tr::kStages));  // the last block's O += P V
  cp_async_wait<0>();  // the empty groups past the LUT's end
  __syncthreads();     // the K, V stages become M's

  uint32_t a_q[D / 16][4];  // this warp's Q rows as A fragments, for φ(Q) of the linear branch
  if (p.lin_state != nullptr) load_a_frags_sw128<D>(a_q, sQ, BQ, warp * 16, lane);
  fwd_epilogue<Elem, D, Tr::kThreads>(p, acc_o, row_max, row_sum, a_q, sM, b, h, qb, row0 + warp * 16, tid, lane,
                                      [] { __syncthreads(); });
#else
  __trap();  // built without sm_90a code: the launcher never selects this kernel then
#endif
}

}  // namespace sla::kernels
