// Warp-level building blocks shared by the SLA kernels: cp.async tile loads, ldmatrix, and
// mma.sync m16n8k16 (fp32 accumulate) over 16-row warp tiles.
//
// Fragment layouts (PTX ISA, m16n8k16, lane = 4 * g + t):
//   A (16 x 16, row-major)   a[0]: (g, 2t..2t+1)  a[1]: (g+8, 2t..)  a[2]: (g, 2t+8..)  a[3]: (g+8, 2t+8..)
//   B (16 x 8)               b[0]: (2t..2t+1, g)   b[1]: (2t+8.., g)
//   C (16 x 8, fp32)         c[0..1]: (g, 2t..2t+1)  c[2..3]: (g+8, 2t..2t+1)
// A C tile therefore becomes an A fragment without data movement (c_to_a), which is how P and dS
// feed the next product straight from registers.
#pragma once

#include "sla_params.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace sla::kernels {

// Row `row` of head (b, h) of a (B, H, L, D)-strided input.
template <class Elem>
__device__ __forceinline__ const Elem* row_ptr(const TensorRef& x, int b, int h, int64_t row) {
  return static_cast<const Elem*>(x.ptr) + b * x.batch + h * x.head + row * x.row;
}

// Shared-memory tiles are row-major with 8 elements (16 bytes) of padding per row: consecutive rows
// then start in different bank groups, so ldmatrix reads are conflict-free.
template <int Cols>
inline constexpr int kSmemStride = Cols + 8;

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy global -> shared; zero-fills when !valid (rows past the sequence end).
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(gmem),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Tile (Rows x Cols) of a row-strided global matrix -> padded shared tile; rows >= rows_valid are zero.
template <int Rows, int Cols, int Threads, class Elem>
__device__ __forceinline__ void load_tile_async(Elem* smem, const Elem* gmem, int64_t row_stride, int rows_valid,
                                                int tid) {
  static_assert(Cols % 8 == 0, "16-byte chunks of 8 elements");
  constexpr int kChunksPerRow = Cols / 8;
  constexpr int kChunks = Rows * kChunksPerRow;
#pragma unroll
  for (int c = tid; c < kChunks; c += Threads) {
    const int r = c / kChunksPerRow;
    const int col = (c % kChunksPerRow) * 8;
    const bool valid = r < rows_valid;
    cp_async_16(smem + r * kSmemStride<Cols> + col, valid ? gmem + r * row_stride + col : gmem, valid);
  }
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

template <class Elem>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats -> one 32-bit register of two 16-bit values, lo in the low half.
template <class Elem>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

template <class Elem>
__device__ __forceinline__ float to_float(Elem x);
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <>
__device__ __forceinline__ float to_float<__half>(__half x) { return __half2float(x); }

// A fragments of a 16 x K warp tile stored row-major in shared memory: a[K/16][4].
template <int K, class Elem>
__device__ __forceinline__ void load_a_frags(uint32_t (&a)[K / 16][4], const Elem* tile, int stride, int lane) {
  const int row = (lane & 7) + ((lane >> 3) & 1) * 8;
  const int col = (lane >> 4) * 8;
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) ldmatrix_x4(a[kk], tile + row * stride + kk * 16 + col);
}

// A fragments of Xᵀ (16 x K): X stored row-major in shared memory as K rows, of which the 16
// columns m0.. are used; a[kk] covers X rows 16kk... For sums over rows such as φ(K)ᵀ V.
template <int K, class Elem>
__device__ __forceinline__ void load_a_frags_t(uint32_t (&a)[K / 16][4], const Elem* x, int stride, int m0,
                                               int lane) {
  const int matrix = lane >> 3;  // a[.][matrix]: rows of X 8 (matrix / 2).., columns m0 + 8 (matrix % 2)..
  const int row = (lane & 7) + (matrix >> 1) * 8;
  const int col = m0 + (matrix & 1) * 8;
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) ldmatrix_x4_trans(a[kk], x + (16 * kk + row) * stride + col);
}

// C (16 x N) += A (16 x K) * Tᵀ, T stored row-major as N rows x K cols ("S = Q Kᵀ").
template <int N, int K, class Elem>
__device__ __forceinline__ void mma_a_bt(float (&c)[N / 8][4], const uint32_t (&a)[K / 16][4], const Elem* t,
                                         int stride, int lane) {
  static_assert(N % 16 == 0 && K % 16 == 0, "whole 16 x 16 fragments");
  const int n_off = (lane >> 4) * 8 + (lane & 7);
  const int k_off = ((lane >> 3) & 1) * 8;
#pragma unroll
  for (int j = 0; j < N / 16; ++j) {
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) {
      uint32_t b[4];
      ldmatrix_x4(b, t + (16 * j + n_off) * stride + 16 * kk + k_off);
      mma_16816<Elem>(c[2 * j], a[kk], b[0], b[1]);
      mma_16816<Elem>(c[2 * j + 1], a[kk], b[2], b[3]);
    }
  }
}

// C (16 x N) += A (16 x K) * T, T stored row-major as K rows x N cols ("O += P V").
template <int N, int K, class Elem>
__device__ __forceinline__ void mma_a_b(float (&c)[N / 8][4], const uint32_t (&a)[K / 16][4], const Elem* t,
                                        int stride, int lane) {
  static_assert(N % 16 == 0 && K % 16 == 0, "whole 16 x 16 fragments");
  const int k_off = ((lane >> 3) & 1) * 8 + (lane & 7);
  const int n_off = (lane >> 4) * 8;
#pragma unroll
  for (int j = 0; j < N / 16; ++j) {
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, t + (16 * kk + k_off) * stride + 16 * j + n_off);
      mma_16816<Elem>(c[2 * j], a[kk], b[0], b[1]);
      mma_16816<Elem>(c[2 * j + 1], a[kk], b[2], b[3]);
    }
  }
}

// Accumulator tile (16 x N, fp32) -> A fragments (16 x N, Elem) for the next product.
template <int N, class Elem>
__device__ __forceinline__ void c_to_a(uint32_t (&a)[N / 16][4], const float (&c)[N / 8][4]) {
#pragma unroll
  for (int kk = 0; kk < N / 16; ++kk) {
    a[kk][0] = pack2<Elem>(c[2 * kk][0], c[2 * kk][1]);
    a[kk][1] = pack2<Elem>(c[2 * kk][2], c[2 * kk][3]);
    a[kk][2] = pack2<Elem>(c[2 * kk + 1][0], c[2 * kk + 1][1]);
    a[kk][3] = pack2<Elem>(c[2 * kk + 1][2], c[2 * kk + 1][3]);
  }
}

template <int N>
__device__ __forceinline__ void zero(float (&c)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; ++j) c[j][0] = c[j][1] = c[j][2] = c[j][3] = 0.f;
}

// Reductions over the 4 lanes (t = 0..3) that share one accumulator row.
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffff, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffff, x, 1);
  return x + __shfl_xor_sync(0xffffffff, x, 2);
}

// Two adjacent output elements: packed 16-bit pair, or a float2 for float32 outputs.
template <class Out>
__device__ __forceinline__ void store2(Out* out, float x0, float x1) {
  *reinterpret_cast<uint32_t*>(out) = pack2<Out>(x0, x1);
}
template <>
__device__ __forceinline__ void store2<float>(float* out, float x0, float x1) {
  *reinterpret_cast<float2*>(out) = make_float2(x0, x1);
}

// Writes a warp's 16 x N accumulator tile to a (B, H, L, D)-strided output at rows row0.., adding
// an optional float32 addend of the same shape first: out = scale * c + add. Rows >= rows_valid
// (past the sequence end) are skipped. Elem: the 16-bit input type, or float. kAddChunk addends are
// loaded before their stores: for all the compiler knows `out` may alias `add`, so a load placed
// after a store waits for it, and with kAddChunk 1 every addend is a round trip to L2 of its own
// (ncu, the Hopper dq pass at the Flux row: about 30 % of its warp samples); larger chunks cost
// registers, which the dk/dv epilogues lack.
template <int N, class Elem, int kAddChunk = 1>
__device__ __forceinline__ void store_c_tile(const float (&c)[N / 8][4], float scale, Elem* out, int64_t out_row,
                                             const float* add, int64_t add_row, int rows_valid, int lane) {
  static_assert((N / 8) % kAddChunk == 0, "whole chunks of addends");
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = g + 8 * half;
    if (r >= rows_valid) continue;
#pragma unroll
    for (int j0 = 0; j0 < N / 8; j0 += kAddChunk) {
      float2 a[kAddChunk];
#pragma unroll
      for (int j = 0; j < kAddChunk; ++j) {
        a[j] = add != nullptr ? *reinterpret_cast<const float2*>(add + r * add_row + 8 * (j0 + j) + 2 * t) : float2{};
      }
#pragma unroll
      for (int j = 0; j < kAddChunk; ++j) {
        const int col = 8 * (j0 + j) + 2 * t;
        float x0 = c[j0 + j][2 * half] * scale, x1 = c[j0 + j][2 * half + 1] * scale;
        if (add != nullptr) {
          x0 += a[j].x;
          x1 += a[j].y;
        }
        store2<Elem>(out + r * out_row + col, x0, x1);
      }
    }
  }
}

// A warp's 16 x N tile into rows row0.. of head (b, h) of `out` (Elem, (B, H, L, D)-strided):
// out = scale * c + add, `add` a float32 addend of the same layout (none where add.ptr is null);
// rows past `seqlen` are skipped.
template <int N, class Elem, int kAddChunk = 1>
__device__ __forceinline__ void store_rows(const float (&c)[N / 8][4], float scale, const TensorRef& out,
                                           const TensorRef& add, int b, int h, int row0, int seqlen, int lane) {
  Elem* o = static_cast<Elem*>(out.ptr) + b * out.batch + h * out.head + row0 * out.row;
  const float* a = add.ptr == nullptr
                       ? nullptr
                       : static_cast<const float*>(add.ptr) + b * add.batch + h * add.head + row0 * add.row;
  store_c_tile<N, Elem, kAddChunk>(c, scale, o, out.row, a, add.row, seqlen - row0, lane);
}

// A warp's 16 x D result rows m0.. of a D x D float32 matrix (row-major).
template <int D>
__device__ __forceinline__ void store_square_rows(const float (&c)[D / 8][4], float* out, int m0, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      *reinterpret_cast<float2*>(out + (m0 + g + 8 * half) * D + 8 * j + 2 * t) =
          make_float2(c[j][2 * half], c[j][2 * half + 1]);
    }
  }
}

// The transpose of store_square_rows: out[c][r] = C[r][c] for the warp's rows m0.. (each store
// instruction fills 32-byte runs of eight rows).
template <int D>
__device__ __forceinline__ void store_square_cols(const float (&c)[D / 8][4], float* out, int m0, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) out[(8 * j + 2 * t + e) * D + m0 + g + 8 * half] = c[j][2 * half + e];
    }
  }
}

}  // namespace sla::kernels
