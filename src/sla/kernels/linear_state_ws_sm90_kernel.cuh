// The linear state pass (sla_linear_state_kernel's S = Σ φ(K)ᵀ V and z = Σ φ(K) over a CTA's row
// tiles) on Hopper, warp-specialised: a producer thread issues TMA loads of 128-row K and V tiles
// into an mbarrier-guarded ring; two consumer warpgroups turn each tile's K into φ(K) in place
// (each warp 16 rows, the row-wise map in registers), then each warpgroup adds its 64 rows of S
// (features 64 wg..) over the whole tile on wgmma, φ(K)ᵀ and V read MN-major from shared memory.
// The product of tile i runs while the warps map tile i + 1. One named barrier per tile joins the
// warpgroups (each product reads the rows both mapped). Include only from sources compiled for
// sm_90a.
#pragma once

#include "feature_map.cuh"
#include "sla_params.h"
#include "sla_sm90_steps.cuh"
#include "tma.cuh"
#include "wgmma.cuh"

namespace sla::kernels {

// K and V of the linear passes as TMA boxes of 64 columns x kRows rows.
struct LinearTensorMaps {
  CUtensorMap k, v;
};

template <class Elem, int D>
struct LinearStateWsTraits {
  static constexpr int kRows = 128;                   // rows per tile (as linear_tile_rows at D 128)
  static constexpr int kThreads = 3 * 128;            // producer + two consumer warpgroups
  static constexpr int kTileBytes = kRows * D * 2;    // K or V, sw128 [D / 64][kRows][64]
  static constexpr int kStageBytes = 2 * kTileBytes;
  static constexpr int kSumBytes = 8 * D * 4;         // column sums of φ(K), one row per consumer warp
  static constexpr int kStages = (227 * 1024 - 1024 - 256 - kSumBytes) / kStageBytes;  // 3 at D 128
  static constexpr int kSmemBytes = 1024 + kStages * kStageBytes + kSumBytes + 8 * (2 * kStages + 1);
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = 240;
};

template <class Elem, int D>
__global__ void __launch_bounds__(LinearStateWsTraits<Elem, D>::kThreads, 1)
    sla_linear_state_ws_sm90_kernel(const __grid_constant__ LinearParams p, const __grid_constant__ LinearTensorMaps maps) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Tr = LinearStateWsTraits<Elem, D>;
  constexpr int R = Tr::kRows, kS = Tr::kStages;
  static_assert(D == 128, "each warpgroup's 64 features are one sw128 panel of φ(K)");
  static_assert(kS >= 2, "a tile mapped while the previous one's product runs");
  static_assert(Tr::kSmemBytes <= 227 * 1024, "shared memory per CTA");
  static_assert(Tr::kTileBytes % 1024 == 0, "every panel 1024-byte aligned");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* smem = align_sw128(smem_raw);
  Elem* sK = reinterpret_cast<Elem*>(smem);  // [kS] x sw128 [D / 64][R][64]: K rows, then φ(K) (0 past L)
  Elem* sV = sK + kS * R * D;                 // [kS] x sw128 [D / 64][R][64]
  float* sSum = reinterpret_cast<float*>(sV + kS * R * D);  // [8][D]
  uint64_t* full = reinterpret_cast<uint64_t*>(sSum + 8 * D);  // [kS]
  uint64_t* empty = full + kS;                                 // [kS]

  const int split = blockIdx.x, bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int tiles = (p.seqlen + R - 1) / R;
  const int count = split < tiles ? (tiles - split + p.splits - 1) / p.splits : 0;  // tiles split, + splits, ...

  init_ring_barriers(full, empty, kS, 1, 8, empty + kS);  // one producer thread; all eight consumer warps

  if (warp < 4) {  // the producer warpgroup
    warpgroup_reg_dealloc<Tr::kProducerRegs>();
    if (tid == 0) {
      produce_row_tiles<R, D, kS>(sK, sV, &maps.k, &maps.v, split, p.splits, count, h, b, full, empty);
    }
    return;
  }

  warpgroup_reg_alloc<Tr::kConsumerRegs>();
  const int cwarp = warp - 4, wg = cwarp / 4;  // rows 16 cwarp.. of each tile; features 64 wg.. of S
  const int g = lane >> 2, t = lane & 3;
  float acc[D / 8][4];  // S rows (features) 64 wg + 16 (cwarp % 4).., all D columns
  zero(acc);
  fence_operand(acc);  // written before the first wgmma; inside the loop only wgmma touches it
  float col_sum[D / 16][2][2];  // Σ φ(K) of this lane's rows, columns 16 kk + 8 hi + 2 t + e
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
    for (int i = 0; i < 4; ++i) col_sum[kk][i / 2][i % 2] = 0.f;

  for (int i = 0; i < count; ++i) {
    const int stage = i % kS;
    const int rows_valid = p.seqlen - (split + i * p.splits) * R - cwarp * 16;  // of this warp's 16
    Elem* k_tile = sK + stage * R * D;
    mbar_wait(&full[stage], (i / kS) & 1);
    {
      uint32_t a[D / 16][4];  // K, then φ(K), of this warp's rows
      load_a_frags_sw128<D>(a, k_tile, R, cwarp * 16, lane);
      feature_map_rows_in_place<D, Elem>(a, p.feature_map);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          if (g + 8 * (r & 1) >= rows_valid) a[kk][r] = 0u;  // φ(0) ≠ 0: padding must not count
          const Elem* pair = reinterpret_cast<const Elem*>(&a[kk][r]);
          col_sum[kk][r >> 1][0] += to_float(pair[0]);
          col_sum[kk][r >> 1][1] += to_float(pair[1]);
        }
      }
      store_a_frags_sw128<D>(k_tile, R, cwarp * 16, a, lane);
    }
    fence_proxy_async();                   // φ(K), written through the generic proxy, is read by wgmma
    named_barrier_sync(1, 2 * 128);        // every row of φ(K) is in place
    wgmma_fence();
    const uint64_t desc_phi = sw128_desc(k_tile + wg * R * 64, R * 64 * 2);  // φ(K)ᵀ: this warpgroup's panel
    const uint64_t desc_v = sw128_desc(sV + stage * R * D, R * 64 * 2);
#pragma unroll
    for (int kk = 0; kk < R / 16; ++kk) {
      wgmma_m64n128k16_ss_mn<Elem>(acc, desc_phi + mn_k16_step(kk), desc_v + mn_k16_step(kk));
    }
    wgmma_commit();
    wgmma_wait<1>();  // the previous tile's product has completed
    if (i > 0 && lane == 0) mbar_arrive(&empty[(i + kS - 1) % kS]);  // this warp is done with that stage
  }
  wgmma_wait<0>();
  fence_operand(acc);

  const int64_t part = int64_t(bh) * p.splits + split;
#pragma unroll
  for (int j = 0; j < D / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] *= p.inv_len;
  store_square_rows<D>(acc, p.state_part + part * D * D, 64 * wg + 16 * (cwarp % 4), lane);
  // z: this lane's two rows per tile summed over the warp's eight row pairs, then over the warps.
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float s = col_sum[kk][i / 2][i % 2];
      s += __shfl_xor_sync(0xffffffff, s, 4);
      s += __shfl_xor_sync(0xffffffff, s, 8);
      s += __shfl_xor_sync(0xffffffff, s, 16);
      if (g == 0) sSum[cwarp * D + 16 * kk + 8 * (i / 2) + 2 * t + i % 2] = s;
    }
  }
  named_barrier_sync(1, 2 * 128);
  const int ctid = tid - 128;
  if (ctid < D) {
    float z = 0.f;
#pragma unroll
    for (int w = 0; w < 8; ++w) z += sSum[w * D + ctid];
    p.z_part[part * D + ctid] = z * p.inv_len;
  }
#else
  __trap();  // built without sm_90a code: the launcher never selects this kernel then
#endif
}

}  // namespace sla::kernels
