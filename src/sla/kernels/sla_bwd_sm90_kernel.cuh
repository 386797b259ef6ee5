// The dq pass of the backward (sla_bwd_kernel.cuh, stage 2) on Hopper: one CTA per (query block,
// b, h) over the query block's LUT, each warpgroup owning 64 query rows, with the three products
// on wgmma: S = Q Kᵀ and dP = dO Vᵀ from shared memory (K-major), dQ += dS K with dS from
// registers and K read MN-major from the same tile. As in the forward, the products of block j are
// issued ahead of dQ += dS K of block j - 1, so the tensor cores work on that one while the warps
// compute dS of block j. Compiled for sm_90a only (sla_bwd_sm90.cu); key blocks of 64 rows.
#pragma once

#include "feature_map.cuh"
#include "sla_fwd_common.cuh"
#include "sla_params.h"
#include "sla_sm90_steps.cuh"
#include "wgmma.cuh"

#include <cmath>

namespace sla::kernels {

template <class Elem, int D, int BQ>
struct BwdDqSm90Traits {
  static constexpr int kBlockK = 64;
  static constexpr int kWarpgroups = BQ / 64;
  static constexpr int kThreads = 128 * kWarpgroups;
  // K stages: the current block, the previous one (its dQ += dS K) and kStages - 2 in flight; V's
  // ring is one stage shorter (a block's V is done with once its dP is).
  static constexpr int kStages = 4;
  static constexpr int kVStages = kStages - 1;
  static constexpr int kQBytes = BQ * D * 2;          // Q and dO, each sw128 [D / 64][BQ][64]
  static constexpr int kBlockBytes = kBlockK * D * 2;  // one K or V block, sw128 [D / 64][64][64]
  static constexpr int kSmemBytes = 1024 + 2 * kQBytes + (kStages + kVStages) * kBlockBytes;  // + panel alignment
  // At D 64 and 64-row blocks three CTAs share an SM (shared memory 73 KB each; registers <= 168).
  static constexpr int kMinBlocks = D == 64 && BQ == 64 ? 3 : 1;
};

template <class Elem, int D, int BQ>
__global__ void __launch_bounds__(BwdDqSm90Traits<Elem, D, BQ>::kThreads, BwdDqSm90Traits<Elem, D, BQ>::kMinBlocks)
    sla_bwd_dq_sm90_kernel(const __grid_constant__ SlaParams p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Tr = BwdDqSm90Traits<Elem, D, BQ>;
  constexpr int BK = Tr::kBlockK;
  static_assert(D == 64 || D == 128, "wgmma widths 64 and 128 for dQ");
  static_assert(BQ == 64 || BQ == 128, "one or two warpgroups");
  static_assert(Tr::kSmemBytes <= 227 * 1024, "shared memory per CTA");
  static_assert(Tr::kQBytes % 1024 == 0 && Tr::kBlockBytes % 1024 == 0, "every panel 1024-byte aligned");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* smem = align_sw128(smem_raw);
  Elem* sQ = reinterpret_cast<Elem*>(smem);  // sw128 [D / 64][BQ][64]
  Elem* sdO = sQ + BQ * D;                    // sw128 [D / 64][BQ][64]
  Elem* sK = sdO + BQ * D;                    // [kStages] x sw128 [D / 64][BK][64]
  Elem* sV = sK + Tr::kStages * BK * D;       // [kVStages] x sw128 [D / 64][BK][64]

  const int qb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int bh = b * p.heads + h;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;
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
      load_tile_sw128_async<BK, D, Tr::kThreads>(sK + (step % Tr::kStages) * BK * D, k + key0 * p.k.row, p.k.row,
                                                 p.seqlen - key0, tid);
      load_tile_sw128_async<BK, D, Tr::kThreads>(sV + (step % Tr::kVStages) * BK * D, v + key0 * p.v.row, p.v.row,
                                                 p.seqlen - key0, tid);
    }
    cp_async_commit();
  };
  auto desc_k = [&](int stage) { return sw128_desc(sK + stage * BK * D, 0); };             // K-major (S)
  auto desc_v = [&](int stage) { return sw128_desc(sV + stage * BK * D, 0); };             // K-major (dP)
  auto desc_k_mn = [&](int stage) { return sw128_desc(sK + stage * BK * D, BK * 64 * 2); };  // MN-major (dQ)

  load_tile_sw128_async<BQ, D, Tr::kThreads>(sQ, q + row0 * p.q.row, p.q.row, p.seqlen - row0, tid);
  load_tile_sw128_async<BQ, D, Tr::kThreads>(sdO, d_o + row0 * p.d_o.row, p.d_o.row, p.seqlen - row0, tid);
#pragma unroll
  for (int s = 0; s < Tr::kStages - 2; ++s) issue_kv(s);  // the first group carries Q and dO too

  float lse2[2], delta[2];
  dq_row_stats(p, bh, wrow0, g, lse2, delta);
  float acc_dq[D / 8][4];  // dQ / scale (this warp's 16 rows x D)
  zero(acc_dq);
  uint32_t a_ds[BK / 16][4];  // dS of the previous block: A of its dQ += dS K
  // This warp's Q and dO rows as A fragments: S and dP read only K and V from shared memory.
  uint32_t a_q[D / 16][4], a_do[D / 16][4];

  for (int step = 0; step < n; ++step) {
    cp_async_wait<Tr::kStages - 3>();
    fence_proxy_async();
    __syncthreads();  // block `step` landed for everyone; everyone is done with block step - 2
    issue_kv(step + Tr::kStages - 2);
    if (step == 0) {
      load_a_frags_sw128<D>(a_q, sQ, BQ, warp * 16, lane);
      load_a_frags_sw128<D>(a_do, sdO, BQ, warp * 16, lane);
    }
    const int stage = step % Tr::kStages, prev = (step + Tr::kStages - 1) % Tr::kStages;
    dq_sm90_step<Elem, D, BK>(acc_dq, a_ds, a_q, a_do, desc_k(stage), desc_v(step % Tr::kVStages), desc_k_mn(prev),
                              step > 0, lse2, delta, lut[step] * BK, p, t);
  }
  wgmma_rs_wait<Elem, D, BK>(acc_dq, a_ds, desc_k_mn((n - 1) % Tr::kStages));  // the last block's dQ += dS K
  cp_async_wait<0>();
  store_rows<D, Elem>(acc_dq, p.scale, p.dq, p.dq_add, b, h, wrow0, p.seqlen, lane);  // written once
#else
  __trap();  // built without sm_90a code: the launcher never selects this kernel then
#endif
}

// The dk/dv pass's epilogue with the linear branch's key side (SlaParams::lin_ds) for a warp's
// 16 keys, rows row0.. of the sw128 K and V tiles (panel rows `rows`): writes
//   dk = scale · acc_dk + φ'ᵀ(V dSᵀ + dz),  dv = acc_dv + φ(K) dS,  dS = lin_ds_scale · ds / L
// as the key-side pass (linear_kernels.cuh) computes them, in the same order of operations: dv
// where kDv (acc_dv), dk where kDk (acc_dk; the other accumulator is not read), so that two
// warpgroups holding the same keys can write one each. dV first and 16 of its columns at a time,
// so that no third 16 x D accumulator is live beside dK, dV.
template <class Elem, int D, bool kDv, bool kDk>
__device__ __forceinline__ void dkdv_linear_epilogue(const SlaParams& p, float (&acc_dk)[D / 8][4],
                                                     float (&acc_dv)[D / 8][4], const Elem* sK, const Elem* sV,
                                                     int rows, int row0, const Elem* sDS, const float* sDz,
                                                     int64_t ds_index, Elem* dk, Elem* dv, int rows_valid, int lane) {
  constexpr int kS = kSmemStride<D>;
  const int t = lane & 3;
  const float lin_scale = p.lin_ds_scale[ds_index] * p.lin_inv_len;
  uint32_t a_phi[D / 16][4];  // K, then φ(K) (16 x D) as A fragments
  load_a_frags_sw128<D>(a_phi, sK, rows, row0, lane);
  feature_map_rows_in_place<D, Elem>(a_phi, p.feature_map);
  if constexpr (kDv) {
#pragma unroll
    for (int jc = 0; jc < D / 16; ++jc) {
      float acc_l[2][4];  // φ(K) dS, columns 16 jc..
      zero(acc_l);
      mma_a_b<16, D>(acc_l, a_phi, sDS + 16 * jc, kS, lane);
#pragma unroll
      for (int jj = 0; jj < 2; ++jj)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc_dv[2 * jc + jj][i] += acc_l[jj][i] * lin_scale;
    }
    store_c_tile<D, Elem>(acc_dv, 1.f, dv, p.dv.row, nullptr, 0, rows_valid, lane);
  }
  if constexpr (kDk) {
    float acc[D / 8][4];  // V dSᵀ, then dL/dφ(K), then dL/dK
    zero(acc);
    {
      // One 16-column slice of V at a time (load_a_frags_sw128's addressing): fewer live registers.
      const int row = row0 + (lane & 7) + ((lane >> 3) & 1) * 8, col = (lane >> 4) * 8;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t a_v[1][4];
        ldmatrix_x4(a_v[0], sV + sw128_offset(row, kk * 16 + col, rows));
        mma_a_bt<D, 16>(acc, a_v, sDS + 16 * kk, kS, lane);
      }
    }
#pragma unroll
    for (int j = 0; j < D / 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[j][i] = acc[j][i] * lin_scale + sDz[8 * j + 2 * t + i % 2];
    feature_map_backward_rows<D, Elem>(acc, a_phi, p.feature_map);
#pragma unroll
    for (int j = 0; j < D / 8; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[j][i] += acc_dk[j][i] * p.scale;
    store_c_tile<D, Elem>(acc, 1.f, dk, p.dk.row, nullptr, 0, rows_valid, lane);
  }
}

// dk/dv pass, one 64-row half of a query block (q_half, do_half: its rows of the sw128 Q and dO
// tiles, q_rows rows per panel; lse_half in log2 units and delta_half of those rows): Sᵀ = K Qᵀ,
// dPᵀ = V dOᵀ from shared memory, Pᵀ = 2^(Sᵀ·scale·log2(e) − lse), dSᵀ = Pᵀ ∘ (dPᵀ − delta), then
// dV += Pᵀ dO and dK += dSᵀ Q with Pᵀ, dSᵀ from registers and dO, Q read MN-major. When it returns,
// the half's tiles are no longer read.
template <class Elem, int D>
__device__ __forceinline__ void dkdv_sm90_step(float (&acc_dk)[D / 8][4], float (&acc_dv)[D / 8][4], uint64_t desc_k,
                                               uint64_t desc_v, const Elem* q_half, const Elem* do_half, int q_rows,
                                               const float* lse_half, const float* delta_half, const SlaParams& p,
                                               int t) {
  constexpr int kHalf = 64, BK = 64;
  float acc_st[kHalf / 8][4];
  float acc_dpt[kHalf / 8][4];
  zero(acc_st);
  zero(acc_dpt);
  fence_operand(acc_st);
  fence_operand(acc_dpt);
  fence_operand(acc_dk);
  fence_operand(acc_dv);
  wgmma_fence();
  const uint64_t dq_half = sw128_desc(q_half, 0), ddo_half = sw128_desc(do_half, 0);
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    wgmma_m64n64k16_ss<Elem>(acc_st, desc_k + k16_step(kk, BK), dq_half + k16_step(kk, q_rows));
  }
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    wgmma_m64n64k16_ss<Elem>(acc_dpt, desc_v + k16_step(kk, BK), ddo_half + k16_step(kk, q_rows));
  }
  wgmma_commit();
  wgmma_wait<0>();
  fence_operand(acc_st);
  fence_operand(acc_dpt);
#pragma unroll
  for (int j = 0; j < kHalf / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int col = 8 * j + 2 * t + (e & 1);
      const float pr = fast_exp2(fmaf(acc_st[j][e], p.scale_log2, -lse_half[col]));
      acc_st[j][e] = pr;
      acc_dpt[j][e] = pr * (acc_dpt[j][e] - delta_half[col]);
    }
  }
  uint32_t a_p[kHalf / 16][4], a_ds[kHalf / 16][4];
  c_to_a<kHalf, Elem>(a_p, acc_st);
  c_to_a<kHalf, Elem>(a_ds, acc_dpt);
  fence_operand(a_p);
  fence_operand(a_ds);
  wgmma_fence();
  const uint64_t do_mn = sw128_desc(do_half, q_rows * 64 * 2), q_mn = sw128_desc(q_half, q_rows * 64 * 2);
#pragma unroll
  for (int kk = 0; kk < kHalf / 16; ++kk) wgmma_rs<D, Elem>(acc_dv, a_p[kk], do_mn + mn_k16_step(kk));
#pragma unroll
  for (int kk = 0; kk < kHalf / 16; ++kk) wgmma_rs<D, Elem>(acc_dk, a_ds[kk], q_mn + mn_k16_step(kk));
  wgmma_commit();
  wgmma_wait<0>();
  fence_operand(acc_dk);
  fence_operand(acc_dv);
}

// dk/dv pass, after the walk (every stage read): the linear branch's key side loaded into free
// stage memory when fused (SlaParams::lin_ds; dS at byte ds_offset of `stages`, after the
// partials), then dk, dv written once. With two warpgroups (the same keys, two halves of the
// query rows) the first writes dv and the second dk: each hands the other its partial of the one
// it does not write (32 KB each at D 128, at `stages`) and adds the other's to its own (float
// addition commutes, so each output is one fixed sum whichever warpgroup finishes first: the pass
// stays deterministic). Threads (tid 0..) share the loads; `sync()` is a barrier among them, the
// dk/dv tiles sK, sV stay in place.
template <class Elem, int D, int Warpgroups, int Threads, class Sync>
__device__ __forceinline__ void dkdv_sm90_epilogue(const SlaParams& p, float (&acc_dk)[D / 8][4],
                                                   float (&acc_dv)[D / 8][4], const Elem* sK, const Elem* sV,
                                                   unsigned char* stages, int ds_offset, int b, int h, int key0,
                                                   int warp, int tid, int lane, Sync&& sync) {
  constexpr int BK = 64;
  const int bh = b * p.heads + h;
  const int wg = warp / 4, wtid = tid % 128;
  const int wkey0 = key0 + (warp % 4) * 16;
  Elem* sDS = reinterpret_cast<Elem*>(stages + ds_offset);  // dS, padded [D][D + 8]
  float* sDz = reinterpret_cast<float*>(sDS + D * kSmemStride<D>);                   // [D]
  const bool lin = p.lin_ds != nullptr;
  // The key side's dS, dz: the head's, or this key block's (lin_per_k_block); recomputed where
  // used, so that nothing more stays live across the partials' exchange.
  const auto ds_index = [&] { return p.lin_per_k_block ? int64_t(bh) * p.num_k_blocks + key0 / p.blkk : int64_t(bh); };
  if (lin) {
    sync();  // every warp is done with the stages
    load_tile_async<D, D, Threads>(sDS, static_cast<const Elem*>(p.lin_ds) + ds_index() * D * D, D, D, tid);
    cp_async_commit();
    if (tid < D) sDz[tid] = p.lin_dz[ds_index() * D + tid];
    cp_async_wait<0>();
    sync();
  }
  Elem* dk = static_cast<Elem*>(p.dk.ptr) + b * p.dk.batch + h * p.dk.head + wkey0 * p.dk.row;
  Elem* dv = static_cast<Elem*>(p.dv.ptr) + b * p.dv.batch + h * p.dv.head + wkey0 * p.dv.row;
  if constexpr (Warpgroups == 2) {
    // Partials through shared memory ([register][thread]: conflict-free): dK's from the first
    // warpgroup at [0, D / 2), dV's from the second at [D / 2, D).
    float* sRed = reinterpret_cast<float*>(stages);  // [D][128]
    sync();
    // (each call names its array: a reference chosen at run time would put both in local memory)
    const auto put = [&](const float(&x)[D / 8][4], float* at) {
#pragma unroll
      for (int j = 0; j < D / 8; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) at[(4 * j + i) * 128 + wtid] = x[j][i];
    };
    const auto add = [&](float(&x)[D / 8][4], const float* at) {
#pragma unroll
      for (int j = 0; j < D / 8; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) x[j][i] += at[(4 * j + i) * 128 + wtid];
    };
    if (wg == 0) {
      put(acc_dk, sRed);
    } else {
      put(acc_dv, sRed + D / 2 * 128);
    }
    sync();
    if (wg == 0) {
      add(acc_dv, sRed + D / 2 * 128);
      if (lin) {
        dkdv_linear_epilogue<Elem, D, true, false>(p, acc_dk, acc_dv, sK, sV, BK, (warp % 4) * 16, sDS, sDz,
                                                   ds_index(), dk, dv, p.seqlen - wkey0, lane);
      } else {
        store_rows<D, Elem>(acc_dv, 1.f, p.dv, p.dv_add, b, h, wkey0, p.seqlen, lane);
      }
    } else {
      add(acc_dk, sRed);
      if (lin) {
        dkdv_linear_epilogue<Elem, D, false, true>(p, acc_dk, acc_dv, sK, sV, BK, (warp % 4) * 16, sDS, sDz,
                                                   ds_index(), dk, dv, p.seqlen - wkey0, lane);
      } else {
        store_rows<D, Elem>(acc_dk, p.scale, p.dk, p.dk_add, b, h, wkey0, p.seqlen, lane);
      }
    }
    return;
  }
  if (lin) {
    dkdv_linear_epilogue<Elem, D, true, true>(p, acc_dk, acc_dv, sK, sV, BK, (warp % 4) * 16, sDS, sDz, ds_index(),
                                              dk, dv, p.seqlen - wkey0, lane);
    return;
  }
  store_rows<D, Elem>(acc_dk, p.scale, p.dk, p.dk_add, b, h, wkey0, p.seqlen, lane);
  store_rows<D, Elem>(acc_dv, 1.f, p.dv, p.dv_add, b, h, wkey0, p.seqlen, lane);
}

// The dk/dv pass (sla_bwd_kernel.cuh, stage 3) on Hopper: one CTA per (key block of 64 rows,
// b, h) over the query blocks that selected it, in 64-row halves (dkdv_sm90_step): with 128-row
// query blocks two warpgroups take one half each and exchange their dK, dV partials at the end
// (dkdv_sm90_epilogue: the first writes dv, the second dk).
template <class Elem, int D, int BQ>
struct BwdDkdvSm90Traits {
  static constexpr int kBlockK = 64;
  static constexpr int kWarpgroups = BQ / 64;  // one per 64-row half of a query block
  static constexpr int kThreads = 128 * kWarpgroups;
  static constexpr int kStages = 2;                        // query blocks: the current one and the next
  static constexpr int kKVBytes = 2 * kBlockK * D * 2;     // K and V, each sw128 [D / 64][64][64]
  // Q, dO sw128 [D / 64][BQ][64]; lse, delta [BQ]; rounded up so every stage's panels stay
  // 1024-byte aligned.
  static constexpr int kStageBytes = (2 * BQ * D * 2 + 2 * BQ * 4 + 1023) / 1024 * 1024;
  static constexpr int kSmemBytes = 1024 + kKVBytes + kStages * kStageBytes;
  // The warpgroups' exchanged dK, dV partials (float32) go through the first stage at the end.
  static_assert(kWarpgroups == 1 || 2 * 128 * (D / 2) * 4 <= kStageBytes, "partials fit one stage");
  // At D 64 and 64-row blocks three CTAs share an SM (registers <= 168).
  static constexpr int kMinBlocks = D == 64 && BQ == 64 ? 3 : 1;
};

template <class Elem, int D, int BQ>
__global__ void __launch_bounds__(BwdDkdvSm90Traits<Elem, D, BQ>::kThreads, BwdDkdvSm90Traits<Elem, D, BQ>::kMinBlocks)
    sla_bwd_dkdv_sm90_kernel(const __grid_constant__ SlaParams p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Tr = BwdDkdvSm90Traits<Elem, D, BQ>;
  constexpr int BK = Tr::kBlockK;
  constexpr int kHalf = 64;  // query rows per warpgroup
  static_assert(D == 64 || D == 128, "wgmma widths 64 and 128 for dK, dV");
  static_assert(BQ == 64 || BQ == 128, "one or two warpgroups");
  static_assert(Tr::kSmemBytes <= 227 * 1024, "shared memory per CTA");
  static_assert(Tr::kKVBytes % 1024 == 0 && Tr::kStageBytes % 1024 == 0, "every panel 1024-byte aligned");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* smem = align_sw128(smem_raw);
  Elem* sK = reinterpret_cast<Elem*>(smem);  // sw128 [D / 64][BK][64]
  Elem* sV = sK + BK * D;                     // sw128 [D / 64][BK][64]
  unsigned char* stages = smem + Tr::kKVBytes;
  auto sQ = [&](int stage) { return reinterpret_cast<Elem*>(stages + stage * Tr::kStageBytes); };  // sw128 [D/64][BQ][64]
  auto sdO = [&](int stage) { return sQ(stage) + BQ * D; };                                         // sw128 [D/64][BQ][64]
  auto sLse = [&](int stage) { return reinterpret_cast<float*>(sdO(stage) + BQ * D); };             // [BQ], log2 units
  auto sDelta = [&](int stage) { return sLse(stage) + BQ; };                                        // [BQ]

  const int kb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int bh = b * p.heads + h;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wg = warp / 4, t = lane & 3;
  const int key0 = kb * BK;
  const int count = p.kv_count[int64_t(bh) * p.num_k_blocks + kb];
  const int32_t* qblocks = p.kv_list + (int64_t(bh) * p.num_k_blocks + kb) * p.num_q_blocks;  // [count]

  const Elem* q = row_ptr<Elem>(p.q, b, h, 0);      // (L, D)
  const Elem* k = row_ptr<Elem>(p.k, b, h, 0);      // (L, D)
  const Elem* v = row_ptr<Elem>(p.v, b, h, 0);      // (L, D)
  const Elem* d_o = row_ptr<Elem>(p.d_o, b, h, 0);  // (L, D)
  const float* lse = p.lse + int64_t(bh) * p.seqlen;
  const float* delta_g = p.delta + int64_t(bh) * p.seqlen;

  // Q, dO of a query block (one cp.async group), lse and delta read synchronously (rows past the
  // end: P = 0); an empty group past the list's end.
  auto issue_q = [&](int step) {
    if (step < count) {
      const int row0 = qblocks[step] * BQ;
      const int stage = step % Tr::kStages;
      load_tile_sw128_async<BQ, D, Tr::kThreads>(sQ(stage), q + row0 * p.q.row, p.q.row, p.seqlen - row0, tid);
      load_tile_sw128_async<BQ, D, Tr::kThreads>(sdO(stage), d_o + row0 * p.d_o.row, p.d_o.row, p.seqlen - row0,
                                                 tid);
      for (int i = tid; i < BQ; i += Tr::kThreads) {
        const bool valid = row0 + i < p.seqlen;
        sLse(stage)[i] = valid ? lse[row0 + i] * 1.4426950408889634f : INFINITY;
        sDelta(stage)[i] = valid ? delta_g[row0 + i] : 0.f;
      }
    }
    cp_async_commit();
  };
  const uint64_t desc_k = sw128_desc(sK, 0), desc_v = sw128_desc(sV, 0);

  load_tile_sw128_async<BK, D, Tr::kThreads>(sK, k + key0 * p.k.row, p.k.row, p.seqlen - key0, tid);
  load_tile_sw128_async<BK, D, Tr::kThreads>(sV, v + key0 * p.v.row, p.v.row, p.seqlen - key0, tid);
  issue_q(0);  // commits K and V too

  float acc_dk[D / 8][4];  // dK / scale (this warp's 16 keys x D), over this warpgroup's halves
  float acc_dv[D / 8][4];  // dV
  zero(acc_dk);
  zero(acc_dv);

  for (int step = 0; step < count; ++step) {
    issue_q(step + 1);  // into the stage the previous step finished with
    cp_async_wait<1>();
    fence_proxy_async();
    __syncthreads();
    const int stage = step % Tr::kStages;
    const Elem* q_half = sQ(stage) + wg * kHalf * 64;    // this warpgroup's 64 rows of every panel
    const Elem* do_half = sdO(stage) + wg * kHalf * 64;
    const float* lse_half = sLse(stage) + wg * kHalf;
    const float* delta_half = sDelta(stage) + wg * kHalf;
    dkdv_sm90_step<Elem, D>(acc_dk, acc_dv, desc_k, desc_v, q_half, do_half, BQ, lse_half, delta_half, p, t);
    __syncthreads();  // the next step refills this stage
  }
  cp_async_wait<0>();

  static_assert((Tr::kWarpgroups == 2 ? Tr::kStageBytes : 0) + D * kSmemStride<D> * 2 + D * 4 <=
                    Tr::kStages * Tr::kStageBytes,
                "dS and dz fit the free stages");
  dkdv_sm90_epilogue<Elem, D, Tr::kWarpgroups, Tr::kThreads>(p, acc_dk, acc_dv, sK, sV, stages,
                                                             Tr::kWarpgroups == 2 ? Tr::kStageBytes : 0, b, h, key0,
                                                             warp, tid, lane, [] { __syncthreads(); });
#else
  __trap();  // built without sm_90a code: the launcher never selects this kernel then
#endif
}

}  // namespace sla::kernels
