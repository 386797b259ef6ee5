// The D x D algebra of the linear branch (variant all) between its row passes, per (b, h), on CUDA
// cores in float32 (LinearAlgebraParams): two or three launches instead of a dozen small ATen ops.
//   forward:   s = Σ state_part (S / L), m = s W_projᵀ (the epilogue's M / L), z = Σ z_part
//   backward:  A = Σ a_part; d proj_w = Σ_bh A s; dS = Aᵀ W_proj, handed to the key-side pass
//              normalised per (b, h) (ds = dS / ds_scale, ds_scale = max |dS|); dz = Σ dz_part;
//              d proj_b = Σ db_part.
// Every CTA owns 16 rows of a (b, h)'s D x D result; all sums run in a fixed order.
#pragma once

#include "sla_params.h"
#include "warp_mma.cuh"

namespace sla::kernels {

inline constexpr int kAlgebraThreads = 256;
inline constexpr int kAlgebraRows = 16;  // result rows per CTA
inline constexpr int kAlgebraChunk = 32;  // values of the contracted index staged at a time

// A thread's share of a CTA's 16 x D result: kRows consecutive rows x 2 adjacent columns.
template <int D>
struct AlgebraTile {
  static constexpr int kColPairs = D / 2;
  static constexpr int kRowGroups = kAlgebraThreads / kColPairs;
  static constexpr int kRows = kAlgebraRows / kRowGroups;  // 4 at D = 128, 2 at D = 64
  static_assert(kAlgebraThreads % kColPairs == 0 && kAlgebraRows % kRowGroups == 0, "whole tiles per thread");
  static_assert(kRows == 2 || kRows == 4, "one vector load of the left operand per step");
  __device__ static int row0(int tid) { return (tid / kColPairs) * kRows; }
  __device__ static int col0(int tid) { return (tid % kColPairs) * 2; }
};

// The left operand, transposed: left_t[c][r] = left[r][c] for the CTA's 16 rows, so that a thread
// reads its kRows rows at one column with one vector load.
template <int D>
using LeftT = float[D][kAlgebraRows];

// acc[i][e] = Σ_c left[row0 + i][c] · right(c, col0 + e), right(c, j) = right[c D + j], or
// right[j D + c] when kTransposed; right is staged through `stage` kAlgebraChunk values of c at
// a time, read coalesced either way. Every thread of the CTA calls this (it has barriers).
template <int D, bool kTransposed>
__device__ __forceinline__ void rows_times(const LeftT<D>& left_t, const float* right, float (*stage)[D + 2],
                                           float (&acc)[AlgebraTile<D>::kRows][2], int tid) {
  using Tile = AlgebraTile<D>;
  const int r0 = Tile::row0(tid), j0 = Tile::col0(tid);
#pragma unroll
  for (int i = 0; i < Tile::kRows; ++i) acc[i][0] = acc[i][1] = 0.f;
  for (int c0 = 0; c0 < D; c0 += kAlgebraChunk) {
    // The chunk's loads are all issued before the stores, which the compiler would otherwise
    // keep in order (it cannot tell `stage` from `right`).
    constexpr int kPerThread = kAlgebraChunk * D / kAlgebraThreads;
    float v[kPerThread];
#pragma unroll
    for (int e = 0; e < kPerThread; ++e) {
      const int i = tid + kAlgebraThreads * e;
      v[e] = kTransposed ? right[(i / kAlgebraChunk) * D + c0 + i % kAlgebraChunk] : right[(c0 + i / D) * D + i % D];
    }
    __syncthreads();  // the previous chunk is read
#pragma unroll
    for (int e = 0; e < kPerThread; ++e) {
      const int i = tid + kAlgebraThreads * e;
      if (kTransposed) {
        stage[i % kAlgebraChunk][i / kAlgebraChunk] = v[e];
      } else {
        stage[i / D][i % D] = v[e];
      }
    }
    __syncthreads();
#pragma unroll 8
    for (int cc = 0; cc < kAlgebraChunk; ++cc) {
      const float2 r = *reinterpret_cast<const float2*>(&stage[cc][j0]);
      float l[Tile::kRows];
      if constexpr (Tile::kRows == 4) {
        const float4 v = *reinterpret_cast<const float4*>(&left_t[c0 + cc][r0]);
        l[0] = v.x, l[1] = v.y, l[2] = v.z, l[3] = v.w;
      } else {
        const float2 v = *reinterpret_cast<const float2*>(&left_t[c0 + cc][r0]);
        l[0] = v.x, l[1] = v.y;
      }
#pragma unroll
      for (int i = 0; i < Tile::kRows; ++i) {
        acc[i][0] = fmaf(l[i], r.x, acc[i][0]);
        acc[i][1] = fmaf(l[i], r.y, acc[i][1]);
      }
    }
  }
}

// Σ over `count` partials of stride `stride` floats, in a fixed order: four running sums, so
// that four loads are in flight (the partials come from L2, and a chain of dependent loads would
// wait for each in turn).
__device__ __forceinline__ float sum_parts(const float* first, int count, int64_t stride) {
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  int s = 0;
  for (; s + 4 <= count; s += 4) {
#pragma unroll
    for (int u = 0; u < 4; ++u) acc[u] += first[(s + u) * stride];
  }
  for (; s < count; ++s) acc[0] += first[s * stride];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

// sum[e] = Σ_s first[s part_stride + e elem_stride] for e < kE, the kE loads of a partial in
// flight together.
template <int kE>
__device__ __forceinline__ void sum_parts_rows(float (&sum)[kE], const float* first, int64_t elem_stride, int count,
                                               int64_t part_stride) {
#pragma unroll
  for (int e = 0; e < kE; ++e) sum[e] = 0.f;
  for (int s = 0; s < count; ++s) {
#pragma unroll
    for (int e = 0; e < kE; ++e) sum[e] += first[s * part_stride + e * elem_stride];
  }
}

// A CTA's 16 x D elements, kElemsPerThread per thread: element tid + kAlgebraThreads e.
template <int D>
inline constexpr int kElemsPerThread = kAlgebraRows * D / kAlgebraThreads;

// Forward, grid (B*H, D / 16): rows of s, m; z by the CTAs of row tile 0.
template <class Elem, int D>
__global__ void __launch_bounds__(kAlgebraThreads) sla_linear_state_algebra_kernel(
    const __grid_constant__ LinearAlgebraParams p) {
  using Tile = AlgebraTile<D>;
  __shared__ __align__(16) LeftT<D> sRowsT;  // rows row0.. of s, transposed
  __shared__ __align__(16) float sStage[kAlgebraChunk][D + 2];
  const int bh = blockIdx.x, row0 = blockIdx.y * kAlgebraRows, tid = threadIdx.x;
  const int64_t dd = int64_t(D) * D;
  {  // rows row0.. are contiguous: element i of the CTA is at row0 D + i
    float v[kElemsPerThread<D>];
    sum_parts_rows(v, p.state_part + int64_t(bh) * p.splits * dd + row0 * D + tid, kAlgebraThreads, p.splits, dd);
#pragma unroll
    for (int e = 0; e < kElemsPerThread<D>; ++e) {
      const int i = tid + kAlgebraThreads * e;
      sRowsT[i % D][i / D] = v[e];
      p.s[bh * dd + row0 * D + i] = v[e];
    }
  }
  if (blockIdx.y == 0 && tid < D) {
    p.z[int64_t(bh) * D + tid] = sum_parts(p.z_part + int64_t(bh) * p.splits * D + tid, p.splits, D);
  }
  float acc[Tile::kRows][2];
  rows_times<D, true>(sRowsT, p.w, sStage, acc, tid);  // m = s Wᵀ: right(c, j) = W[j][c]
  const int r0 = Tile::row0(tid), j0 = Tile::col0(tid);
  Elem* m = static_cast<Elem*>(p.m) + bh * dd + (row0 + r0) * D + j0;
#pragma unroll
  for (int i = 0; i < Tile::kRows; ++i) {
    *reinterpret_cast<uint32_t*>(m + i * D) = pack2<Elem>(acc[i][0], acc[i][1]);
  }
}

// Backward, step 1, grid (B*H, D / 16): rows of A s (into dw_part) and of dS = Aᵀ W (into
// ds_raw), the largest |dS| of the CTA's rows (tile_max (B*H, D / 16)); dz by row tile 0.
template <int D>
__global__ void __launch_bounds__(kAlgebraThreads) sla_linear_grad_algebra_kernel(
    const __grid_constant__ LinearAlgebraParams p) {
  using Tile = AlgebraTile<D>;
  __shared__ __align__(16) LeftT<D> sAT;  // rows row0.. of A, then of Aᵀ, transposed
  __shared__ __align__(16) float sStage[kAlgebraChunk][D + 2];
  __shared__ float sMax[kAlgebraThreads / 32];
  const int bh = blockIdx.x, row0 = blockIdx.y * kAlgebraRows, tid = threadIdx.x;
  const int64_t dd = int64_t(D) * D;
  const float* a_part = p.a_part + int64_t(bh) * p.splits * dd;
  const int r0 = Tile::row0(tid), j0 = Tile::col0(tid);
  float acc[Tile::kRows][2];

  {
    float v[kElemsPerThread<D>];  // A[row0 + i / D][i % D], i = tid + kAlgebraThreads e
    sum_parts_rows(v, a_part + row0 * D + tid, kAlgebraThreads, p.splits, dd);
#pragma unroll
    for (int e = 0; e < kElemsPerThread<D>; ++e) {
      const int i = tid + kAlgebraThreads * e;
      sAT[i % D][i / D] = v[e];
    }
  }
  if (blockIdx.y == 0 && tid < D) {
    p.dz[int64_t(bh) * D + tid] = sum_parts(p.dz_part + int64_t(bh) * p.splits * D + tid, p.splits, D);
  }
  rows_times<D, false>(sAT, p.s_in + bh * dd, sStage, acc, tid);  // A s
#pragma unroll
  for (int i = 0; i < Tile::kRows; ++i) {
    *reinterpret_cast<float2*>(p.dw_part + bh * dd + (row0 + r0 + i) * D + j0) = make_float2(acc[i][0], acc[i][1]);
  }

  __syncthreads();  // sAT read
  {
    // Aᵀ[row0 + r][k] = A[k][row0 + r] with r = i % 16, k = i / 16, i = tid + kAlgebraThreads e.
    constexpr int kKStep = kAlgebraThreads / kAlgebraRows;
    float v[kElemsPerThread<D>];
    sum_parts_rows(v, a_part + (tid / kAlgebraRows) * D + row0 + tid % kAlgebraRows, int64_t(kKStep) * D, p.splits,
                   dd);
#pragma unroll
    for (int e = 0; e < kElemsPerThread<D>; ++e) sAT[tid / kAlgebraRows + kKStep * e][tid % kAlgebraRows] = v[e];
  }
  rows_times<D, false>(sAT, p.w, sStage, acc, tid);  // dS = Aᵀ W
  float mx = 0.f;
#pragma unroll
  for (int i = 0; i < Tile::kRows; ++i) {
    *reinterpret_cast<float2*>(p.ds_raw + bh * dd + (row0 + r0 + i) * D + j0) = make_float2(acc[i][0], acc[i][1]);
    mx = fmaxf(mx, fmaxf(fabsf(acc[i][0]), fabsf(acc[i][1])));
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  if (tid % 32 == 0) sMax[tid / 32] = mx;
  __syncthreads();
  if (tid == 0) {
    for (int w = 1; w < kAlgebraThreads / 32; ++w) mx = fmaxf(mx, sMax[w]);
    p.tile_max[bh * (D / kAlgebraRows) + blockIdx.y] = mx;
  }
}

// Backward, step 2, grid (B*H, D / 16): ds = dS / ds_scale in q's dtype and ds_scale; over the
// whole grid, one thread per element, d proj_w = Σ_bh dw_part and d proj_b = Σ db_part.
template <class Elem, int D>
__global__ void __launch_bounds__(kAlgebraThreads) sla_linear_grad_normalise_kernel(
    const __grid_constant__ LinearAlgebraParams p) {
  const int bh = blockIdx.x, row0 = blockIdx.y * kAlgebraRows, tid = threadIdx.x;
  const int64_t dd = int64_t(D) * D;
  float scale = 1e-30f;  // an all-zero dS stays zero
  for (int t = 0; t < D / kAlgebraRows; ++t) scale = fmaxf(scale, p.tile_max[bh * (D / kAlgebraRows) + t]);
  if (blockIdx.y == 0 && tid == 0) p.ds_scale[bh] = scale;
  const float inv = 1.f / scale;
  const float* raw = p.ds_raw + bh * dd + row0 * D;
  Elem* ds = static_cast<Elem*>(p.ds) + bh * dd + row0 * D;
  for (int i = 2 * tid; i < kAlgebraRows * D; i += 2 * kAlgebraThreads) {
    const float2 v = *reinterpret_cast<const float2*>(raw + i);
    *reinterpret_cast<uint32_t*>(ds + i) = pack2<Elem>(v.x * inv, v.y * inv);
  }
  const int64_t flat = (int64_t(blockIdx.x) * gridDim.y + blockIdx.y) * kAlgebraThreads + tid;
  const int64_t threads = int64_t(gridDim.x) * gridDim.y * kAlgebraThreads;
  for (int64_t e = flat; e < dd; e += threads) p.dw[e] = sum_parts(p.dw_part + e, p.bh, dd);
  if (flat < D) p.db[flat] = sum_parts(p.db_part + flat, p.bh * p.splits, D);
}

}  // namespace sla::kernels
