// The linear branch's query-side backward pass of variant all (sla_linear_bwd_q_kernel, kPerBlock
// false: the same outputs and partials) on Hopper, warp-specialised: a producer thread loads M'
// once and 128-row q and dO tiles by TMA into a double buffer; each consumer warpgroup takes 64 rows
// of a tile (each warp 16): φ(q) and den' in registers, t = φ(q) M' and dO M'ᵀ on wgmma with the
// rows as A from registers, dq_add and delta_lin written, the column sums of dO and dden' φ(q)
// added in shared memory; then φ(q) / den' replaces q in the tile and, after a barrier of both
// warpgroups, each adds its 64 rows of Σ dOᵀ φ(q) / den' (dO's features 64 wg..) over the whole
// tile, dO and φ(q) / den' read MN-major from shared memory. That product runs while the warps
// start on the next tile. Include only from sources compiled for sm_90a.
#pragma once

#include "feature_map.cuh"
#include "linear_kernels.cuh"
#include "sla_params.h"
#include "sla_sm90_steps.cuh"
#include "tma.cuh"
#include "wgmma.cuh"

namespace sla::kernels {

// q, dO of the query-side pass as TMA boxes of 64 columns x kRows rows; M' (B*H matrices D x D).
struct LinearBwdQMaps {
  CUtensorMap q, d_o, m;
};

template <class Elem, int D>
struct LinearBwdQWsTraits {
  static constexpr int kRows = 128;                 // rows per tile (as linear_tile_rows at D 128)
  static constexpr int kThreads = 3 * 128;          // producer + two consumer warpgroups
  static constexpr int kTileBytes = kRows * D * 2;  // q or dO, sw128 [D / 64][kRows][64]
  static constexpr int kStageBytes = 2 * kTileBytes;
  static constexpr int kStages = 2;
  static constexpr int kMBytes = D * D * 2;         // M', sw128 [D / 64][D][64]
  static constexpr int kFloatBytes = (2 + 2 * 8) * D * 4;  // z', bias; column sums of dO and dden' φ per warp
  static constexpr int kSmemBytes = 1024 + kMBytes + kStages * kStageBytes + kFloatBytes + 8 * (2 * kStages + 1);
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = 240;
};

template <class Elem, int D>
__global__ void __launch_bounds__(LinearBwdQWsTraits<Elem, D>::kThreads, 1)
    sla_linear_bwd_q_ws_sm90_kernel(const __grid_constant__ LinearParams p, const __grid_constant__ LinearBwdQMaps maps) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Tr = LinearBwdQWsTraits<Elem, D>;
  constexpr int R = Tr::kRows, kS = Tr::kStages;
  static_assert(D == 128, "each warpgroup's 64 features are one sw128 panel of dO");
  static_assert(Tr::kSmemBytes <= 227 * 1024, "shared memory per CTA");
  static_assert(Tr::kTileBytes % 1024 == 0 && Tr::kMBytes % 1024 == 0, "every panel 1024-byte aligned");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* smem = align_sw128(smem_raw);
  Elem* sM = reinterpret_cast<Elem*>(smem);  // sw128 [D / 64][D][64]: M'
  Elem* sQ = sM + D * D;                      // [kS] x sw128 [D / 64][R][64]: q, then φ(q) / den'
  Elem* sG = sQ + kS * R * D;                 // [kS] x sw128 [D / 64][R][64]: dO (0 past L)
  float* sZ = reinterpret_cast<float*>(sG + kS * R * D);  // [D]: z'
  float* sBias = sZ + D;                                   // [D]
  float* sDb = sBias + D;                                  // [8][D]: Σ dO per consumer warp
  float* sDz = sDb + 8 * D;                                // [8][D]: Σ dden' φ(q) per consumer warp
  uint64_t* full = reinterpret_cast<uint64_t*>(sDz + 8 * D);  // [kS]
  uint64_t* empty = full + kS;                                // [kS]
  uint64_t* m_full = empty + kS;

  const int split = blockIdx.x, bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int tiles = (p.seqlen + R - 1) / R;
  const int count = split < tiles ? (tiles - split + p.splits - 1) / p.splits : 0;  // tiles split, + splits, ...

  init_ring_barriers(full, empty, kS, 1, 8, m_full);  // one producer thread; all eight consumer warps

  if (warp < 4) {  // the producer warpgroup
    warpgroup_reg_dealloc<Tr::kProducerRegs>();
    if (tid == 0) {
      mbar_arrive_expect_tx(m_full, Tr::kMBytes);
#pragma unroll
      for (int c = 0; c < D / 64; ++c) tma_load_4d(sM + c * D * 64, &maps.m, c * 64, 0, bh, 0, m_full);
      produce_row_tiles<R, D, kS>(sQ, sG, &maps.q, &maps.d_o, split, p.splits, count, h, b, full, empty);
    }
    return;
  }

  warpgroup_reg_alloc<Tr::kConsumerRegs>();
  const int ctid = tid - 128, cwarp = warp - 4, wg = cwarp / 4;  // rows 16 cwarp.. of each tile
  if (ctid < D) {
    sZ[ctid] = p.z_scaled[int64_t(bh) * D + ctid];
    sBias[ctid] = p.bias[ctid];
  }
  for (int i = ctid; i < 16 * D; i += 256) sDb[i] = 0.f;  // sDb and sDz
  named_barrier_sync(1, 2 * 128);
  const uint64_t desc_m_mn = sw128_desc(sM, D * 64 * 2);  // M' as B of φ(q) M' (MN-major)
  const uint64_t desc_m_k = sw128_desc(sM, 0);            // M' as B of dO M'ᵀ (K-major)
  float acc_a[D / 8][4];  // Σ dOᵀ φ(q) / den': rows (dO's features) 64 wg + 16 (cwarp % 4).., all D columns
  zero(acc_a);
  fence_operand(acc_a);  // written before the first wgmma; inside the loop only wgmma touches it
  mbar_wait(m_full, 0);

  // Column sums of a C-layout tile of this warp's 16 rows into sum[D] (this warp's row of sDb or
  // sDz; rows past L hold zeros here).
  auto add_column_sums = [&](const float(&c)[D / 8][4], float* sum, int g, int t) {
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float s = c[j][e] + c[j][2 + e];
        s += __shfl_xor_sync(0xffffffff, s, 4);
        s += __shfl_xor_sync(0xffffffff, s, 8);
        s += __shfl_xor_sync(0xffffffff, s, 16);
        if (g == 0) sum[8 * j + 2 * t + e] += s;
      }
    }
  };

  for (int i = 0; i < count; ++i) {
    // The lane, hidden from the compiler's loop-invariance analysis: the shared-memory offsets derived
    // from it are recomputed per tile instead of being hoisted into registers for the whole loop (80
    // bytes of spills with them hoisted).
    int lane_v = lane;
    asm volatile("" : "+r"(lane_v));
    const int g = lane_v >> 2, t = lane_v & 3;
    const int stage = i % kS;
    const int wrow0 = (split + i * p.splits) * R + cwarp * 16;  // this warp's first row
    const int rows_valid = p.seqlen - wrow0;
    Elem* q_tile = sQ + stage * R * D;
    const Elem* g_tile = sG + stage * R * D;
    auto g_pair = [&](int row, int col) {  // dO at (row, col), (row, col + 1) of the tile, col even
      return reinterpret_cast<const Elem*>(g_tile + sw128_offset(row, col, R));
    };
    mbar_wait(&full[stage], (i / kS) & 1);

    // φ(q) waits in the warp's rows of the q tile between its uses: reloading it costs a few
    // ldmatrix, keeping it live beside dO M'ᵀ costs spills.
    float den[2];
    float dden[2];
    {
      uint32_t a_phi[D / 16][4];  // φ(q) of this warp's rows
      {
        uint32_t a_x[D / 16][4];
        load_a_frags_sw128<D>(a_x, q_tile, R, cwarp * 16, lane_v);
        feature_map_rows<D, Elem>(a_phi, den, a_x, p.feature_map, sZ, p.eps_scaled, lane_v);
      }
      store_a_frags_sw128<D>(q_tile, R, cwarp * 16, a_phi, lane_v);
      float acc_t[D / 8][4];  // t = φ(q) M'
      zero(acc_t);
      wgmma_rs_wait<Elem, D, D>(acc_t, a_phi, desc_m_mn);  // also completes the previous tile's Σ product
      if (i > 0 && lane == 0) mbar_arrive(&empty[(i + kS - 1) % kS]);  // this warp is done with that stage
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        float dot = 0.f;
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
          const Elem* pair = g_pair(cwarp * 16 + g + 8 * half, 8 * j + 2 * t);
          dot += to_float(pair[0]) * acc_t[j][2 * half] + to_float(pair[1]) * acc_t[j][2 * half + 1];
        }
        const float dot_all = quad_sum(dot);
        dden[half] = den[half] > 0.f ? -dot_all / (den[half] * den[half]) : 0.f;
      }
    }
    {
      float acc_d[D / 8][4];  // dO M'ᵀ, then dL/dφ(q), then dL/dq
      zero(acc_d);
      {
        uint32_t a_g[D / 16][4];  // dO of this warp's rows
        load_a_frags_sw128<D>(a_g, g_tile, R, cwarp * 16, lane_v);
        fence_operand(acc_d);
        fence_operand(a_g);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) wgmma_m64n128k16_rs_kmajor<Elem>(acc_d, a_g[kk], desc_m_k + k16_step(kk, D));
        wgmma_commit();
        wgmma_wait<0>();
        fence_operand(acc_d);
      }
      const float inv_den[2] = {den[0] > 0.f ? 1.f / den[0] : 0.f, den[1] > 0.f ? 1.f / den[1] : 0.f};
#pragma unroll
      for (int j = 0; j < D / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc_d[j][e] = acc_d[j][e] * inv_den[e / 2] + dden[e / 2] * sZ[8 * j + 2 * t + e % 2];
      uint32_t a_phi[D / 16][4];
      load_a_frags_sw128<D>(a_phi, q_tile, R, cwarp * 16, lane_v);
      feature_map_backward_rows<D, Elem>(acc_d, a_phi, p.feature_map);
      if (rows_valid > 0) {
        float* dq = static_cast<float*>(p.dq_add.ptr) + b * p.dq_add.batch + h * p.dq_add.head + wrow0 * p.dq_add.row;
        store_c_tile<D, float>(acc_d, 1.f, dq, p.dq_add.row, nullptr, 0, rows_valid, lane_v);
      }
    }
    uint32_t a_phi[D / 16][4];  // φ(q), then φ(q) / den'
    load_a_frags_sw128<D>(a_phi, q_tile, R, cwarp * 16, lane_v);
    {
      float c[D / 8][4];  // dO, then dden' φ(q), in C layout
#pragma unroll
      for (int j = 0; j < D / 8; ++j)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const Elem* pair = g_pair(cwarp * 16 + g + 8 * half, 8 * j + 2 * t);
          c[j][2 * half] = to_float(pair[0]);
          c[j][2 * half + 1] = to_float(pair[1]);
        }
      write_delta_lin<D, Elem>(c, sBias, dden, den, o_rows<Elem>(p, b, h, wrow0), p.o.row,
                               p.delta_lin + int64_t(bh) * p.seqlen + wrow0, rows_valid, lane_v);
      add_column_sums(c, sDb + cwarp * D, g, t);
#pragma unroll
      for (int j = 0; j < D / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) c[j][e] = a_frag_elem<D, Elem>(a_phi, j, e / 2, e % 2) * dden[e / 2];
      add_column_sums(c, sDz + cwarp * D, g, t);
    }
    // φ(q) / den' over q, then Σ dOᵀ φ(q) / den' over the whole tile.
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const Elem* pair = reinterpret_cast<const Elem*>(&a_phi[kk][r]);
        const float inv = den[r & 1] > 0.f ? 1.f / den[r & 1] : 0.f;
        a_phi[kk][r] = pack2<Elem>(to_float(pair[0]) * inv, to_float(pair[1]) * inv);
      }
    store_a_frags_sw128<D>(q_tile, R, cwarp * 16, a_phi, lane_v);
    fence_proxy_async();             // written through the generic proxy, read by wgmma
    named_barrier_sync(1, 2 * 128);  // every row of φ(q) / den' is in place
    wgmma_fence();
    const uint64_t desc_g = sw128_desc(g_tile + wg * R * 64, R * 64 * 2);  // dOᵀ: this warpgroup's panel
    const uint64_t desc_phi = sw128_desc(q_tile, R * 64 * 2);
#pragma unroll
    for (int kk = 0; kk < R / 16; ++kk) {
      wgmma_m64n128k16_ss_mn<Elem>(acc_a, desc_g + mn_k16_step(kk), desc_phi + mn_k16_step(kk));
    }
    wgmma_commit();  // completes under the next tile's first wait (or after the loop)
  }
  wgmma_wait<0>();
  fence_operand(acc_a);

  const int64_t part = int64_t(bh) * p.splits + split;
  store_square_rows<D>(acc_a, p.a_part + part * D * D, 64 * wg + 16 * (cwarp % 4), lane);
  named_barrier_sync(1, 2 * 128);  // every warp's column sums are in
  if (ctid < D) {
    float dz = 0.f, db = 0.f;
#pragma unroll
    for (int w = 0; w < 8; ++w) {
      dz += sDz[w * D + ctid];
      db += sDb[w * D + ctid];
    }
    p.dz_part[part * D + ctid] = dz * p.inv_len;
    p.db_part[part * D + ctid] = db;
  }
#else
  __trap();  // built without sm_90a code: the launcher never selects this kernel then
#endif
}

}  // namespace sla::kernels
