// The linear branch of variant all on tensor cores, in three passes over rows (see LinearParams);
// the query-side pass also serves variant complement, per query block (kPerBlock).
// A CTA has D / 16 warps and works on tiles of D rows: for the row-wise math each warp owns 16
// rows of the tile; for the sums over rows (Xᵀ Y, a D x D result) each warp owns 16 rows of the
// result and reads the whole tile back from shared memory, transposed by ldmatrix. A CTA walks
// the tiles split, split + splits, ... of its (b, h) and double-buffers them: the next tile's
// cp.async is in flight while the current one is computed (pipelined_tiles).
#pragma once

#include "feature_map.cuh"
#include "sla_params.h"
#include "warp_mma.cuh"

#include <type_traits>

namespace sla::kernels {

template <int D>
struct LinearTraits {
  static constexpr int kWarps = D / 16;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRows = D;  // rows per tile (linear_tile_rows)
  static constexpr int kStride = kSmemStride<D>;
  static constexpr int kTileBytes = kRows * kStride * 2;
  static constexpr int kStages = 2;  // row tiles in shared memory at once: one computed, one loading
  // Per stage 2 tiles (state: K, V; bwd q: q, dO; bwd k: K, V); once: bwd q M', bwd k dS; float rows.
  // D = 128: state 140 KB, bwd q 179 KB, bwd k 170.5 KB (one CTA per SM); D = 64: 37, 47.5, 45.5 KB.
  static constexpr int kStageElems = 2 * kRows * kStride;
  static constexpr int kStateSmem = kStages * 2 * kTileBytes + kWarps * D * 4;
  static constexpr int kBwdQSmem = (kStages * 2 + 1) * kTileBytes + (2 * kWarps + 2) * D * 4;
  static constexpr int kBwdKSmem = (kStages * 2 + 1) * kTileBytes + D * 4;
  // Per query block (complement): M' and z' of each stage's tile beside it. D = 128: 213.5 KB.
  static constexpr int kBwdQPerBlockSmem = kStages * 3 * kTileBytes + (2 * kWarps + kStages + 1) * D * 4;
  // Two query blocks per tile (complement, blkq = D / 2): one M', z' pair, loaded while the
  // previous tile's sums run. D = 128: 213.5 KB.
  static constexpr int kBwdQTwoBlockSmem = (kStages * 2 + 2) * kTileBytes + (2 * kWarps + 2 + 1) * D * 4;
  static_assert(kStages >= 2, "a tile loads while another one is computed");
  static_assert(kTileBytes % 16 == 0, "cp.async destinations stay 16-byte aligned from tile to tile");
  static_assert(kStateSmem <= 227 * 1024 && kBwdQSmem <= 227 * 1024 && kBwdKSmem <= 227 * 1024 &&
                    kBwdQPerBlockSmem <= 227 * 1024 && kBwdQTwoBlockSmem <= 227 * 1024,
                "sm_90: at most 227 KB of shared memory per CTA");
};

// This CTA's row tiles first, first + step, ... < tiles through Stages shared buffers:
// load(tile, stage) issues the tile's cp.async copies, compute(tile, stage) runs once they landed.
// Loads run Stages - 1 tiles ahead; a tile's stage is the one computed an iteration earlier, freed
// by that iteration's closing barrier, which also frees whatever else compute shares (float rows).
template <int Stages, class Load, class Compute>
__device__ __forceinline__ void pipelined_tiles(int first, int step, int tiles, Load&& load, Compute&& compute) {
  const int count = first < tiles ? (tiles - first + step - 1) / step : 0;
#pragma unroll
  for (int i = 0; i < Stages - 1; ++i) {
    if (i < count) load(first + i * step, i);
    cp_async_commit();
  }
  for (int i = 0; i < count; ++i) {
    const int ahead = i + Stages - 1;
    if (ahead < count) load(first + ahead * step, ahead % Stages);
    cp_async_commit();            // possibly empty: one group per iteration keeps the count below exact
    cp_async_wait<Stages - 1>();  // this thread's copies of tile i (group i) landed
    __syncthreads();              // and everyone's
    compute(first + i * step, i % Stages);
    __syncthreads();
  }
}

// Column sums of a warp's 16 x D C-layout tile (rows ≥ rows_valid left out) into out[D] (lanes
// with g = 0 write).
template <int D>
__device__ __forceinline__ void warp_column_sums(const float (&c)[D / 8][4], int rows_valid, float* out, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float s = (g < rows_valid ? c[j][e] : 0.f) + (g + 8 < rows_valid ? c[j][2 + e] : 0.f);
      s += __shfl_xor_sync(0xffffffff, s, 4);
      s += __shfl_xor_sync(0xffffffff, s, 8);
      s += __shfl_xor_sync(0xffffffff, s, 16);
      if (g == 0) out[8 * j + 2 * t + e] = s;
    }
  }
}

// C-layout tile (16 x D) of a warp's rows as A fragments packed back into shared memory.
template <int D, class Elem>
__device__ __forceinline__ void store_a_frags(Elem* tile, int stride, const uint32_t (&a)[D / 16][4], int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
    for (int r = 0; r < 4; ++r)
      *reinterpret_cast<uint32_t*>(tile + (g + 8 * (r & 1)) * stride + 16 * kk + 8 * (r >> 1) + 2 * t) = a[kk][r];
}

// delta_lin = rowsum(dO ∘ proj_l(o_l)) of a warp's rows (out: its first row's entry; rows ≥
// rows_valid left alone), from dO (C layout) and proj_l's bias: proj_l(o_l) = t / den' + bias, so
// the sum is dO·t / den' + dO·bias, with dO·t / den' = −dden' den'. With o (the warp's first row of
// the forward's output, rows o_row apart) out gets rowsum(dO ∘ o) − delta_lin instead: the sparse
// backward's delta.
template <int D, class Elem>
__device__ __forceinline__ void write_delta_lin(const float (&g_c)[D / 8][4], const float* bias, const float (&dden)[2],
                                                const float (&den)[2], const Elem* o, int64_t o_row, float* out,
                                                int rows_valid, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = g + 8 * half;
    float dot_b = 0.f;  // dO·bias
    float dot_o = 0.f;  // dO·o
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      dot_b += g_c[j][2 * half] * bias[8 * j + 2 * t] + g_c[j][2 * half + 1] * bias[8 * j + 2 * t + 1];
      if (o != nullptr && r < rows_valid) {
        const Elem* pair = o + r * o_row + 8 * j + 2 * t;
        dot_o += g_c[j][2 * half] * to_float(pair[0]) + g_c[j][2 * half + 1] * to_float(pair[1]);
      }
    }
    dot_b = quad_sum(dot_b);
    dot_o = quad_sum(dot_o);
    const float lin = dot_b - dden[half] * den[half];
    if (t == 0 && r < rows_valid) out[r] = o != nullptr ? dot_o - lin : lin;
  }
}

// The forward's output at a warp's first row wrow0 for write_delta_lin (nullptr where p.o is unset).
template <class Elem>
__device__ __forceinline__ const Elem* o_rows(const LinearParams& p, int b, int h, int wrow0) {
  return p.o.ptr == nullptr ? nullptr
                            : static_cast<const Elem*>(p.o.ptr) + b * p.o.batch + h * p.o.head + int64_t(wrow0) * p.o.row;
}

// Pass 1 (forward): S and z of one (b, h), partial over this CTA's tiles; or with Out (variant
// complement's block sums, LinearParams::block_rows) S and z of each group of block_rows rows,
// written in Out.
template <class Elem, int D, class Out = void>
__global__ void __launch_bounds__(LinearTraits<D>::kThreads) sla_linear_state_kernel(const __grid_constant__ LinearParams p) {
  constexpr bool kBlockSums = !std::is_void_v<Out>;
  using Tr = LinearTraits<D>;
  constexpr int R = Tr::kRows, kS = Tr::kStride;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Elem* sStages = reinterpret_cast<Elem*>(smem_raw);  // [kStages]: [R][kS] K rows, then φ(K) (invalid rows 0);
                                                      //            [R][kS] V rows
  float* sRed = reinterpret_cast<float*>(sStages + Tr::kStages * Tr::kStageElems);  // [kWarps][D]

  const int split = blockIdx.x, bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int tiles = (p.seqlen + R - 1) / R;

  float acc[D / 8][4];  // S rows 16 warp..
  zero(acc);
  float z = 0.f;        // z[tid] for tid < D
  auto load = [&](int tile, int stage) {
    const int row0 = tile * R;
    Elem* sX = sStages + stage * Tr::kStageElems;
    load_tile_async<R, D, Tr::kThreads>(sX, row_ptr<Elem>(p.k, b, h, row0), p.k.row, p.seqlen - row0, tid);
    load_tile_async<R, D, Tr::kThreads>(sX + R * kS, row_ptr<Elem>(p.v, b, h, row0), p.v.row, p.seqlen - row0, tid);
  };
  auto compute = [&](int tile, int stage) {
    const int row0 = tile * R;
    Elem* sX = sStages + stage * Tr::kStageElems;
    const Elem* sV = sX + R * kS;
    {
      const int rows_valid = p.seqlen - row0 - warp * 16;
      uint32_t a_x[D / 16][4], a_phi[D / 16][4];
      float den[2];
      load_a_frags<D>(a_x, sX + warp * 16 * kS, kS, lane);
      feature_map_rows<D, Elem>(a_phi, den, a_x, p.feature_map, nullptr, 0.f, lane);
      const int g = lane >> 2;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
        for (int r = 0; r < 4; ++r)
          if (g + 8 * (r & 1) >= rows_valid) a_phi[kk][r] = 0u;  // φ(0) ≠ 0: padding must not count
      __syncwarp();
      store_a_frags<D, Elem>(sX + warp * 16 * kS, kS, a_phi, lane);
      float phi[D / 8][4];
#pragma unroll
      for (int j = 0; j < D / 8; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) phi[j][i] = a_frag_elem<D, Elem>(a_phi, j, i / 2, i % 2);
      warp_column_sums<D>(phi, rows_valid, sRed + warp * D, lane);
    }
    __syncthreads();
    if constexpr (kBlockSums) {
      // Per group of G rows (G / 16 warps' column sums; 16 rows of the product at a time).
      const int G = p.block_rows, groups_per_tile = R / G;
      const int64_t group0 = int64_t(bh) * tiles * groups_per_tile + int64_t(tile) * groups_per_tile;
      if (tid < D) {
        for (int gi = 0; gi < groups_per_tile; ++gi) {
          float zs = 0.f;
          for (int w = gi * G / 16; w < (gi + 1) * G / 16; ++w) zs += sRed[w * D + tid];
          p.block_z[(group0 + gi) * D + tid] = zs;
        }
      }
#pragma unroll
      for (int kk = 0; kk < R / 16; ++kk) {
        uint32_t a_t[1][4];  // φ(K)ᵀ rows 16 warp.., 16 tile rows at a time
        load_a_frags_t<16>(a_t, sX + 16 * kk * kS, kS, 16 * warp, lane);
        mma_a_b<D, 16>(acc, a_t, sV + 16 * kk * kS, kS, lane);
        if ((16 * (kk + 1)) % G == 0) {  // the group's last rows
          Out* out = static_cast<Out*>(p.block_sums) + ((group0 + 16 * kk / G) * D + 16 * warp) * D;
          store_c_tile<D, Out>(acc, 1.f, out, D, nullptr, 0, 16, lane);
          zero(acc);
        }
      }
    } else {
      if (tid < D) {
#pragma unroll
        for (int w = 0; w < Tr::kWarps; ++w) z += sRed[w * D + tid];
      }
      uint32_t a_t[R / 16][4];  // φ(K)ᵀ rows 16 warp.. of this tile
      load_a_frags_t<R>(a_t, sX, kS, 16 * warp, lane);
      mma_a_b<D, R>(acc, a_t, sV, kS, lane);  // S += φ(K)ᵀ V
    }
  };
  pipelined_tiles<Tr::kStages>(split, p.splits, tiles, load, compute);
  if constexpr (kBlockSums) return;
  const int64_t part = int64_t(bh) * p.splits + split;
#pragma unroll
  for (int j = 0; j < D / 8; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) acc[j][i] *= p.inv_len;
  store_square_rows<D>(acc, p.state_part + part * D * D, 16 * warp, lane);
  if (tid < D) p.z_part[part * D + tid] = z * p.inv_len;
}

// Pass 2 (backward, query side): dq_add, delta_lin = rowsum(dO ∘ proj_l(o_l)) (what the sparse
// preprocess subtracts from rowsum(dO ∘ o)), and partial sums of dOᵀ φ(q) / den', dden' φ(q), dO:
// per CTA over its tiles (variant all), or per query block (kPerBlock, variant complement: each
// tile lies in one query block, whose M' and z' it reads, LinearParams::q_block_tiles, one partial
// per tile; or kTileBlocks = 2 query blocks of D / 2 rows per tile, LinearParams::tile_q_blocks,
// one partial per block; den' is 0 where every key block is selected, and the row's linear branch
// is 0 there).
template <class Elem, int D, bool kPerBlock, int kTileBlocks = 1>
__global__ void __launch_bounds__(LinearTraits<D>::kThreads) sla_linear_bwd_q_kernel(const __grid_constant__ LinearParams p) {
  using Tr = LinearTraits<D>;
  constexpr int R = Tr::kRows, kS = Tr::kStride;
  static_assert(kTileBlocks == 1 || (kPerBlock && kTileBlocks == 2), "two query blocks per tile: complement");
  // M' and z': once (variant all), per stage (one query block per tile), or per block of the tile.
  constexpr int kSlots = !kPerBlock ? 1 : kTileBlocks > 1 ? kTileBlocks : Tr::kStages;
  constexpr int kBlockWarps = Tr::kWarps / kTileBlocks;  // warps per query block of a tile
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Elem* sStages = reinterpret_cast<Elem*>(smem_raw);     // [kStages]: [R][kS] q rows, then φ(q) / den';
                                                         //            [R][kS] dO rows (0 past the end)
  Elem* sM = sStages + Tr::kStages * Tr::kStageElems;    // [kSlots][D][kS]: M'
  float* sRed = reinterpret_cast<float*>(sM + kSlots * D * kS);  // [2][kWarps][D]: dz, db column sums
  float* sZ = sRed + 2 * Tr::kWarps * D;                 // [kSlots][D]: z'
  float* sB = sZ + kSlots * D;                           // [D]: proj_l's bias

  const int split = blockIdx.x, bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;
  const int tiles = (p.seqlen + R - 1) / R;

  if constexpr (!kPerBlock) {
    load_tile_async<D, D, Tr::kThreads>(sM, static_cast<const Elem*>(p.m_scaled) + int64_t(bh) * D * D, D, D, tid);
    if (tid < D) sZ[tid] = p.z_scaled[int64_t(bh) * D + tid];
  }
  if (tid < D) sB[tid] = p.bias[tid];

  float acc_a[D / 8][4];  // Σ dOᵀ φ(q) / den', rows 16 warp..
  zero(acc_a);
  float dz = 0.f, db = 0.f;  // column tid < D
  // The M', z' pairs of a tile's two query blocks (kTileBlocks = 2; blocks past the last left out).
  auto load_pair = [&](int tile) {
#pragma unroll
    for (int blk = 0; blk < kTileBlocks; ++blk) {
      if (tile * kTileBlocks + blk >= p.num_q_blocks) break;
      const int64_t block = int64_t(bh) * p.num_q_blocks + tile * kTileBlocks + blk;
      load_tile_async<D, D, Tr::kThreads>(sM + blk * D * kS, static_cast<const Elem*>(p.m_scaled) + block * D * D, D,
                                          D, tid);
      if (tid < D / 4) cp_async_16(sZ + blk * D + 4 * tid, p.z_scaled + block * D + 4 * tid, true);
    }
  };
  // M' joins the first tile's group (or each tile's, one query block per tile; or with two, the
  // first tile's pair, then each next pair in its own group issued by the tile before).
  auto load = [&](int tile, int stage) {
    const int row0 = tile * R;
    Elem* sQ = sStages + stage * Tr::kStageElems;
    load_tile_async<R, D, Tr::kThreads>(sQ, row_ptr<Elem>(p.q, b, h, row0), p.q.row, p.seqlen - row0, tid);
    load_tile_async<R, D, Tr::kThreads>(sQ + R * kS, row_ptr<Elem>(p.d_o, b, h, row0), p.d_o.row, p.seqlen - row0,
                                        tid);
    if constexpr (kTileBlocks > 1) {
      if (tile == split) load_pair(tile);
    } else if constexpr (kPerBlock) {
      const int64_t block = int64_t(bh) * p.num_q_blocks + tile / p.q_block_tiles;
      load_tile_async<D, D, Tr::kThreads>(sM + stage * D * kS, static_cast<const Elem*>(p.m_scaled) + block * D * D,
                                          D, D, tid);
      if (tid < D / 4) cp_async_16(sZ + stage * D + 4 * tid, p.z_scaled + block * D + 4 * tid, true);
    }
  };
  auto compute = [&](int tile, int stage) {
    const int row0 = tile * R;
    const int wrow0 = row0 + warp * 16;
    const int rows_valid = p.seqlen - wrow0;
    Elem* sQ = sStages + stage * Tr::kStageElems;
    const int slot = !kPerBlock ? 0 : kTileBlocks > 1 ? warp / kBlockWarps : stage;  // this warp's M', z'
    const Elem* sMt = sM + slot * D * kS;
    const float* sZt = sZ + slot * D;
    const Elem* sG = sQ + R * kS;
    const Elem* gw = sG + warp * 16 * kS;
    Elem* qw = sQ + warp * 16 * kS;  // this warp's rows: q, then φ(q), then φ(q) / den'
    {
      // φ(q) waits in the warp's rows of sQ between its uses: reloading it (exactly) costs a few
      // ldmatrix, keeping it live across the dq math cost register spills.
      float den[2];
      {
        uint32_t a_x[D / 16][4], a_phi[D / 16][4];
        load_a_frags<D>(a_x, qw, kS, lane);
        feature_map_rows<D, Elem>(a_phi, den, a_x, p.feature_map, sZt, p.eps_scaled, lane);
        __syncwarp();
        store_a_frags<D, Elem>(qw, kS, a_phi, lane);
        __syncwarp();
      }
      float dden[2];
      {
        uint32_t a_phi[D / 16][4];
        load_a_frags<D>(a_phi, qw, kS, lane);
        float acc_t[D / 8][4];  // t = φ(q) M'
        zero(acc_t);
        mma_a_b<D, D>(acc_t, a_phi, sMt, kS, lane);
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          float dot = 0.f;
#pragma unroll
          for (int j = 0; j < D / 8; ++j) {
            const Elem* pair = gw + (g + 8 * half) * kS + 8 * j + 2 * t;  // dO, C layout
            dot += to_float(pair[0]) * acc_t[j][2 * half] + to_float(pair[1]) * acc_t[j][2 * half + 1];
          }
          const float dot_all = quad_sum(dot);
          dden[half] = den[half] > 0.f ? -dot_all / (den[half] * den[half]) : 0.f;
        }
      }
      {
        const float inv_den[2] = {den[0] > 0.f ? 1.f / den[0] : 0.f, den[1] > 0.f ? 1.f / den[1] : 0.f};
        float acc_d[D / 8][4];  // dO M'ᵀ, then dL/dφ(q), then dL/dq
        zero(acc_d);
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {  // one 16-column slice of dO at a time: fewer live registers
          uint32_t a_g[1][4];
          load_a_frags<16>(a_g, gw + 16 * kk, kS, lane);
          mma_a_bt<D, 16>(acc_d, a_g, sMt + 16 * kk, kS, lane);
        }
#pragma unroll
        for (int j = 0; j < D / 8; ++j)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc_d[j][i] = acc_d[j][i] * inv_den[i / 2] + dden[i / 2] * sZt[8 * j + 2 * t + i % 2];
        uint32_t a_phi[D / 16][4];
        load_a_frags<D>(a_phi, qw, kS, lane);
        feature_map_backward_rows<D, Elem>(acc_d, a_phi, p.feature_map);
        float* dq = static_cast<float*>(p.dq_add.ptr) + b * p.dq_add.batch + h * p.dq_add.head + wrow0 * p.dq_add.row;
        store_c_tile<D, float>(acc_d, 1.f, dq, p.dq_add.row, nullptr, 0, rows_valid, lane);
      }
      // Operands of the sums: column sums of dO and dden' φ; φ(q) / den' over this warp's rows of sQ.
      {
        float g_c[D / 8][4];  // dO, C layout
#pragma unroll
        for (int j = 0; j < D / 8; ++j)
#pragma unroll
          for (int i = 0; i < 4; ++i) g_c[j][i] = to_float(gw[(g + 8 * (i / 2)) * kS + 8 * j + 2 * t + i % 2]);
        write_delta_lin<D, Elem>(g_c, sB, dden, den, o_rows<Elem>(p, b, h, wrow0), p.o.row,
                                 p.delta_lin + int64_t(bh) * p.seqlen + wrow0, rows_valid, lane);
        warp_column_sums<D>(g_c, rows_valid, sRed + (Tr::kWarps + warp) * D, lane);
      }
      uint32_t a_phi[D / 16][4];
      load_a_frags<D>(a_phi, qw, kS, lane);
      __syncwarp();
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const Elem* pair = reinterpret_cast<const Elem*>(&a_phi[kk][r]);
          const float inv = den[r & 1] > 0.f ? 1.f / den[r & 1] : 0.f;
          *reinterpret_cast<uint32_t*>(qw + (g + 8 * (r & 1)) * kS + 16 * kk + 8 * (r >> 1) + 2 * t) =
              pack2<Elem>(to_float(pair[0]) * inv, to_float(pair[1]) * inv);
        }
      float phi_dden[D / 8][4];
#pragma unroll
      for (int j = 0; j < D / 8; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) phi_dden[j][i] = a_frag_elem<D, Elem>(a_phi, j, i / 2, i % 2) * dden[i / 2];
      warp_column_sums<D>(phi_dden, rows_valid, sRed + warp * D, lane);
    }
    __syncthreads();  // M', z' are no longer read: the next tile's pair may load (kTileBlocks = 2)
    if constexpr (kTileBlocks > 1) {
      if (tile + p.splits < tiles) load_pair(tile + p.splits);
      cp_async_commit();
    }
    // Sums over the rows of each query block of the tile (all of them: one block, kTileBlocks = 1).
#pragma unroll
    for (int blk = 0; blk < kTileBlocks; ++blk) {
      if (tid < D) {
#pragma unroll
        for (int w = blk * kBlockWarps; w < (blk + 1) * kBlockWarps; ++w) {
          dz += sRed[w * D + tid];
          db += sRed[(Tr::kWarps + w) * D + tid];
        }
      }
#pragma unroll
      for (int kk = blk * R / 16 / kTileBlocks; kk < (blk + 1) * R / 16 / kTileBlocks; ++kk) {
        uint32_t a_t[1][4];  // dOᵀ rows 16 warp.., 16 tile rows at a time
        load_a_frags_t<16>(a_t, sG + 16 * kk * kS, kS, 16 * warp, lane);
        mma_a_b<D, 16>(acc_a, a_t, sQ + 16 * kk * kS, kS, lane);
      }
      if constexpr (kPerBlock) {  // this tile's (or block's) partials
        const int index = tile * kTileBlocks + blk;
        if (kTileBlocks == 1 || index < p.num_q_blocks) {
          const int64_t part = int64_t(bh) * p.num_q_blocks * p.q_block_tiles + index;
          store_square_cols<D>(acc_a, p.a_part + part * D * D, 16 * warp, lane);  // aᵀ: LinearParams
          if (tid < D) {
            p.dz_part[part * D + tid] = dz * p.inv_len;
            p.db_part[part * D + tid] = db;
          }
        }
        zero(acc_a);
        dz = db = 0.f;
      }
    }
  };
  pipelined_tiles<Tr::kStages>(split, p.splits, tiles, load, compute);
  if constexpr (!kPerBlock) {
    const int64_t part = int64_t(bh) * p.splits + split;
    store_square_rows<D>(acc_a, p.a_part + part * D * D, 16 * warp, lane);
    if (tid < D) {
      p.dz_part[part * D + tid] = dz * p.inv_len;
      p.db_part[part * D + tid] = db;
    }
  }
}

// Pass 3 (backward, key side): dk_add and dv_add of the CTA's tiles.
template <class Elem, int D>
__global__ void __launch_bounds__(LinearTraits<D>::kThreads) sla_linear_bwd_k_kernel(const __grid_constant__ LinearParams p) {
  using Tr = LinearTraits<D>;
  constexpr int R = Tr::kRows, kS = Tr::kStride;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Elem* sStages = reinterpret_cast<Elem*>(smem_raw);        // [kStages]: [R][kS] K rows; [R][kS] V rows
  Elem* sDS = sStages + Tr::kStages * Tr::kStageElems;      // [D][kS]: dS / ds_scale
  float* sDz = reinterpret_cast<float*>(sDS + D * kS);      // [D]

  const int split = blockIdx.x, bh = blockIdx.y, b = bh / p.heads, h = bh % p.heads;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int t = lane & 3;
  const int tiles = (p.seqlen + R - 1) / R;

  load_tile_async<D, D, Tr::kThreads>(sDS, static_cast<const Elem*>(p.ds) + int64_t(bh) * D * D, D, D, tid);
  if (tid < D) sDz[tid] = p.dz[int64_t(bh) * D + tid];
  const float scale = p.ds_scale[bh] * p.inv_len;
  auto load = [&](int tile, int stage) {  // dS joins the first tile's group
    const int row0 = tile * R;
    Elem* sK = sStages + stage * Tr::kStageElems;
    load_tile_async<R, D, Tr::kThreads>(sK, row_ptr<Elem>(p.k, b, h, row0), p.k.row, p.seqlen - row0, tid);
    load_tile_async<R, D, Tr::kThreads>(sK + R * kS, row_ptr<Elem>(p.v, b, h, row0), p.v.row, p.seqlen - row0, tid);
  };
  auto compute = [&](int tile, int stage) {
    const int wrow0 = tile * R + warp * 16, rows_valid = p.seqlen - wrow0;
    if (rows_valid <= 0) return;
    const Elem* sK = sStages + stage * Tr::kStageElems;
    const Elem* sV = sK + R * kS;
    uint32_t a_phi[D / 16][4];
    {
      uint32_t a_x[D / 16][4];
      float den[2];
      load_a_frags<D>(a_x, sK + warp * 16 * kS, kS, lane);
      feature_map_rows<D, Elem>(a_phi, den, a_x, p.feature_map, nullptr, 0.f, lane);
    }
    {
      float acc[D / 8][4];  // V dSᵀ, then dL/dφ(K), then dL/dK
      zero(acc);
      uint32_t a_v[D / 16][4];
      load_a_frags<D>(a_v, sV + warp * 16 * kS, kS, lane);
      mma_a_bt<D, D>(acc, a_v, sDS, kS, lane);
#pragma unroll
      for (int j = 0; j < D / 8; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[j][i] = acc[j][i] * scale + sDz[8 * j + 2 * t + i % 2];
      feature_map_backward_rows<D, Elem>(acc, a_phi, p.feature_map);
      float* dk = static_cast<float*>(p.dk_add.ptr) + b * p.dk_add.batch + h * p.dk_add.head + wrow0 * p.dk_add.row;
      store_c_tile<D, float>(acc, 1.f, dk, p.dk_add.row, nullptr, 0, rows_valid, lane);
    }
    float acc[D / 8][4];  // φ(K) dS
    zero(acc);
    mma_a_b<D, D>(acc, a_phi, sDS, kS, lane);
    float* dv = static_cast<float*>(p.dv_add.ptr) + b * p.dv_add.batch + h * p.dv_add.head + wrow0 * p.dv_add.row;
    store_c_tile<D, float>(acc, scale, dv, p.dv_add.row, nullptr, 0, rows_valid, lane);
  };
  pipelined_tiles<Tr::kStages>(split, p.splits, tiles, load, compute);
}

}  // namespace sla::kernels
