// The dk/dv pass on Hopper, warp-specialised (FlashAttention-3's structure, as the forward and the
// dq pass): per (key block of 64 rows, b, h) one producer warpgroup and two consumer warpgroups.
// The producer's first warp loads K and V once (TMA), then walks the key block's list of query
// blocks: per block it writes lse (log2 units) and delta of its rows into a stage and has TMA
// bring Q and dO; the stage's full barrier completes with all 32 lanes' arrivals and the bytes.
// Query blocks of 128: each consumer warpgroup takes one 64-row half of every block. Of 64: the
// warpgroups take the blocks in turn (even and odd steps). Each hands a stage back per warp; the
// two warpgroups exchange their partials at the end as in the cp.async pass (dkdv_sm90_epilogue).
#pragma once

#include "sla_bwd_sm90_kernel.cuh"
#include "sla_params.h"
#include "sla_sm90_steps.cuh"
#include "tma.cuh"
#include "wgmma.cuh"

#include <cmath>

namespace sla::kernels {

template <class Elem, int D, int BQ>
struct BwdDkdvWsSm90Traits {
  static constexpr int kBlockK = 64;
  static constexpr int kRows = BQ;                         // query block
  static constexpr int kThreads = 3 * 128;                 // producer + two consumer warpgroups
  static constexpr int kConsumerThreads = 256;
  static constexpr int kKVBytes = 2 * kBlockK * D * 2;     // K and V, each sw128 [D / 64][64][64]
  static constexpr int kQBytes = kRows * D * 2;            // Q or dO, sw128 [D / 64][BQ][64]
  // Q, dO, then lse and delta [BQ] each; rounded up so that every stage's panels stay aligned.
  static constexpr int kStageBytes = (2 * kQBytes + 2 * kRows * 4 + 1023) / 1024 * 1024;
  static constexpr int kStages = (227 * 1024 - 1024 - 256 - kKVBytes) / kStageBytes;  // 2 (BQ 128), 5 (64) at D 128
  // Warps that read each stage: all eight (halves) or the four of the block's warpgroup.
  static constexpr int kReaders = BQ == 128 ? 8 : 4;
  // The epilogue's exchanged partials (float32 dK of the first warpgroup, dV of the second: 64 KB
  // at D 128), then dS and dz.
  static constexpr int kPartialBytes = 2 * 128 * (D / 2) * 4;
  static constexpr int kDsOffset = kPartialBytes > kStageBytes ? kPartialBytes : kStageBytes;
  static constexpr int kSmemBytes = 1024 + kKVBytes + kStages * kStageBytes + 8 * (2 * kStages + 1);
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = 240;
};

template <class Elem, int D, int BQ>
__global__ void __launch_bounds__(BwdDkdvWsSm90Traits<Elem, D, BQ>::kThreads, 1)
    sla_bwd_dkdv_ws_sm90_kernel(const __grid_constant__ SlaParams p, const __grid_constant__ BwdTensorMaps maps) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Tr = BwdDkdvWsSm90Traits<Elem, D, BQ>;
  constexpr int BK = Tr::kBlockK, kRows = Tr::kRows, kS = Tr::kStages;
  constexpr int kHalf = 64;
  static_assert(D == 64 || D == 128, "wgmma widths 64 and 128 for dK, dV");
  static_assert(BQ == 64 || BQ == 128, "halves or turns of the two warpgroups");
  static_assert(kS >= 2, "the stage in use and the next");
  static_assert(Tr::kSmemBytes <= 227 * 1024, "shared memory per CTA");
  static_assert(Tr::kKVBytes % 1024 == 0 && Tr::kStageBytes % 1024 == 0, "every panel 1024-byte aligned");
  static_assert(Tr::kDsOffset + D * kSmemStride<D> * 2 + D * 4 <= kS * Tr::kStageBytes, "partials, dS and dz fit");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* smem = align_sw128(smem_raw);
  Elem* sK = reinterpret_cast<Elem*>(smem);  // sw128 [D / 64][BK][64]
  Elem* sV = sK + BK * D;                     // sw128 [D / 64][BK][64]
  unsigned char* stages = smem + Tr::kKVBytes;
  auto sQ = [&](int stage) { return reinterpret_cast<Elem*>(stages + stage * Tr::kStageBytes); };
  auto sdO = [&](int stage) { return sQ(stage) + kRows * D; };
  auto sLse = [&](int stage) { return reinterpret_cast<float*>(sdO(stage) + kRows * D); };  // log2 units
  auto sDelta = [&](int stage) { return sLse(stage) + kRows; };
  uint64_t* full = reinterpret_cast<uint64_t*>(stages + kS * Tr::kStageBytes);  // [kS]
  uint64_t* empty = full + kS;                                                   // [kS]
  uint64_t* kv_full = empty + kS;

  const int kb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int bh = b * p.heads + h;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int key0 = kb * BK;
  const int count = p.kv_count[int64_t(bh) * p.num_k_blocks + kb];
  const int32_t* qblocks = p.kv_list + (int64_t(bh) * p.num_k_blocks + kb) * p.num_q_blocks;  // [count]

  // The producer warp's lanes (lane 0's with the bytes); the warps that read each stage.
  init_ring_barriers(full, empty, kS, 32, Tr::kReaders, kv_full);

  if (warp < 4) {  // the producer warpgroup
    warpgroup_reg_dealloc<Tr::kProducerRegs>();
    if (warp == 0) {
      if (lane == 0) {
        mbar_arrive_expect_tx(kv_full, Tr::kKVBytes);
#pragma unroll
        for (int c = 0; c < D / 64; ++c) {
          tma_load_4d(sK + c * BK * 64, &maps.k, c * 64, key0, h, b, kv_full);
          tma_load_4d(sV + c * BK * 64, &maps.v, c * 64, key0, h, b, kv_full);
        }
      }
      const float* lse = p.lse + int64_t(bh) * p.seqlen;
      const float* delta = p.delta + int64_t(bh) * p.seqlen;
      for (int step = 0; step < count; ++step) {
        const int stage = step % kS;
        mbar_wait(&empty[stage], ((step / kS) & 1) ^ 1);
        const int row0 = qblocks[step] * kRows;
        // Rows past the end: P = 0 (their Q, dO arrive as zeros).
#pragma unroll
        for (int i = lane; i < kRows; i += 32) {
          const bool valid = row0 + i < p.seqlen;
          sLse(stage)[i] = valid ? lse[row0 + i] * 1.4426950408889634f : INFINITY;
          sDelta(stage)[i] = valid ? delta[row0 + i] : 0.f;
        }
        if (lane == 0) {
          mbar_arrive_expect_tx(&full[stage], 2 * Tr::kQBytes);
#pragma unroll
          for (int c = 0; c < D / 64; ++c) {
            tma_load_4d(sQ(stage) + c * kRows * 64, &maps.q, c * 64, row0, h, b, &full[stage]);
            tma_load_4d(sdO(stage) + c * kRows * 64, &maps.d_o, c * 64, row0, h, b, &full[stage]);
          }
        } else {
          mbar_arrive(&full[stage]);
        }
      }
    }
    return;
  }

  warpgroup_reg_alloc<Tr::kConsumerRegs>();
  const int ctid = tid - 128, cwarp = warp - 4, wg = cwarp / 4, t = lane & 3;
  const uint64_t desc_k = sw128_desc(sK, 0), desc_v = sw128_desc(sV, 0);
  float acc_dk[D / 8][4];  // dK / scale (this warp's 16 keys x D), over this warpgroup's share
  float acc_dv[D / 8][4];  // dV
  zero(acc_dk);
  zero(acc_dv);
  mbar_wait(kv_full, 0);
  // Query blocks of 128: every block, this warpgroup's half. Of 64: every other block, whole.
  constexpr int kStep = BQ == 128 ? 1 : 2;
  const int first = BQ == 128 ? 0 : wg, half = BQ == 128 ? wg * kHalf : 0;
  for (int step = first; step < count; step += kStep) {
    const int stage = step % kS;
    mbar_wait(&full[stage], (step / kS) & 1);
    dkdv_sm90_step<Elem, D>(acc_dk, acc_dv, desc_k, desc_v, sQ(stage) + half * 64, sdO(stage) + half * 64, kRows,
                            sLse(stage) + half, sDelta(stage) + half, p, t);
    if (lane == 0) mbar_arrive(&empty[stage]);  // this warp is done with the stage
  }
  dkdv_sm90_epilogue<Elem, D, 2, Tr::kConsumerThreads>(p, acc_dk, acc_dv, sK, sV, stages, Tr::kDsOffset, b, h, key0,
                                                       cwarp, ctid, lane,
                                                       [] { named_barrier_sync(1, Tr::kConsumerThreads); });
#else
  __trap();  // built without sm_90a code: the launcher never selects this kernel then
#endif
}

}  // namespace sla::kernels
