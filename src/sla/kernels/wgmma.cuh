// Hopper (sm_90a) warpgroup MMA building blocks: the 128-byte-swizzled shared-memory tile layout
// that wgmma reads through descriptors, its cp.async loader, and the three wgmma shapes the
// forward uses. Include only from sources compiled for sm_90a.
//
// Tile layout ("sw128"): a Rows x Cols tile (Cols a multiple of 64) is stored as Cols / 64 panels
// of Rows x 64 elements, panel after panel; a panel row is 128 bytes, and its 16-byte chunk c sits
// at chunk position c ^ (row % 8) (the hardware's 128-byte swizzle, applied to address bits 4-6
// from bits 7-9, so every panel must start 1024-byte aligned). The same tile serves as
//   - a K-major operand (rows = M or N, columns = the reduction dim K): Q and K in S = Q Kᵀ;
//   - an MN-major operand (rows = K, columns = N): V in O += P V.
// Accumulators (m64nN, fp32): warp w of the warpgroup holds rows 16w..16w+15 in the m16n8 C
// layout of warp_mma.cuh, n8 block j in d[j][0..3]: the same per-warp tiles as mma.sync.
#pragma once

#include "warp_mma.cuh"

#include <cstdint>

namespace sla::kernels {

// Element offset of (row, col) in a sw128 tile of `rows` rows.
__device__ __forceinline__ int sw128_offset(int row, int col, int rows) {
  return (col / 64) * rows * 64 + row * 64 + ((((col % 64) / 8) ^ (row % 8)) * 8) + col % 8;
}

// Rows x Cols of a row-strided global matrix -> sw128 tile; rows >= rows_valid are zero. Each
// thread copies one 16-byte column chunk of rows r0, r0 + kRowStep, ...: a step of a multiple of
// 8 rows keeps the chunk's swizzled position, so the addresses advance by constants.
template <int Rows, int Cols, int Threads, class Elem>
__device__ __forceinline__ void load_tile_sw128_async(Elem* smem, const Elem* gmem, int64_t row_stride,
                                                      int rows_valid, int tid) {
  constexpr int kChunksPerRow = Cols / 8;
  constexpr int kRowStep = Threads / kChunksPerRow;
  static_assert(Cols % 64 == 0, "whole 128-byte panels");
  static_assert(Threads % kChunksPerRow == 0 && kRowStep % 8 == 0 && Rows % kRowStep == 0,
                "every thread keeps one chunk column and swizzle position");
  const int r0 = tid / kChunksPerRow, chunk = tid % kChunksPerRow;
  Elem* dst = smem + sw128_offset(r0, chunk * 8, Rows);
  const Elem* src = gmem + r0 * row_stride + chunk * 8;
#pragma unroll
  for (int i = 0; i < Rows / kRowStep; ++i) {
    const bool valid = r0 + i * kRowStep < rows_valid;
    cp_async_16(dst + i * kRowStep * 64, valid ? src + i * kRowStep * row_stride : gmem, valid);
  }
}

// A fragments (m16n8k16 layout) of a warp's 16 rows row0.. of a sw128 tile, all K columns.
template <int K, class Elem>
__device__ __forceinline__ void load_a_frags_sw128(uint32_t (&a)[K / 16][4], const Elem* tile, int rows, int row0,
                                                   int lane) {
  const int row = row0 + (lane & 7) + ((lane >> 3) & 1) * 8;
  const int col = (lane >> 4) * 8;
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) ldmatrix_x4(a[kk], tile + sw128_offset(row, kk * 16 + col, rows));
}

// The inverse of load_a_frags_sw128: a warp's A fragments (rows row0.., all K columns) stored into
// a sw128 tile (the swizzle spreads each store's 8 rows over all 32 banks).
template <int K, class Elem>
__device__ __forceinline__ void store_a_frags_sw128(Elem* tile, int rows, int row0, const uint32_t (&a)[K / 16][4],
                                                    int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk)
#pragma unroll
    for (int r = 0; r < 4; ++r)
      *reinterpret_cast<uint32_t*>(tile + sw128_offset(row0 + g + 8 * (r & 1), 16 * kk + 8 * (r >> 1) + 2 * t, rows)) =
          a[kk][r];
}

// The first 1024-byte-aligned address at or after `smem` (dynamic shared memory, which the launch
// sizes with 1024 bytes of slack): panels of sw128 tiles must start there, since the swizzle reads
// address bits 7-9.
__device__ __forceinline__ unsigned char* align_sw128(unsigned char* smem) {
  return smem + ((1024 - smem_addr(smem) % 1024) % 1024);
}

// Shared-memory matrix descriptor of a sw128 operand starting at `start` (16-byte units in the
// fields): leading byte offset = stride between 64-column panels (used by MN-major operands),
// stride byte offset = 1024 (between 8-row swizzle atoms), layout type 1 = 128-byte swizzle.
__device__ __forceinline__ uint64_t sw128_desc(const void* start, uint32_t panel_bytes) {
  const uint64_t addr = smem_addr(start);
  return ((addr & 0x3FFFF) >> 4) | (uint64_t((panel_bytes & 0x3FFFF) >> 4) << 16) | (uint64_t(1024 >> 4) << 32) |
         (uint64_t(1) << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Generic-proxy writes (cp.async, st.shared) made visible to wgmma's async-proxy reads.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Keeps the compiler from moving register reads and writes of an accumulator across wgmma.
template <int N>
__device__ __forceinline__ void fence_operand(float (&c)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) asm volatile("" : "+f"(c[j][i])::"memory");
}

template <int N>
__device__ __forceinline__ void fence_operand(uint32_t (&a)[N][4]) {
#pragma unroll
  for (int j = 0; j < N; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(a[j][i])::"memory");
}

#define SLA_ACC8(d, j) "+f"(d[j][0]), "+f"(d[j][1]), "+f"(d[j][2]), "+f"(d[j][3]), \
  "+f"(d[j + 1][0]), "+f"(d[j + 1][1]), "+f"(d[j + 1][2]), "+f"(d[j + 1][3])
#define SLA_ACC32(d) SLA_ACC8(d, 0), SLA_ACC8(d, 2), SLA_ACC8(d, 4), SLA_ACC8(d, 6)
#define SLA_ACC64(d) SLA_ACC32(d), SLA_ACC8(d, 8), SLA_ACC8(d, 10), SLA_ACC8(d, 12), SLA_ACC8(d, 14)
#define SLA_REGS32                                                                                          \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, " \
  "%23, %24, %25, %26, %27, %28, %29, %30, %31"
#define SLA_REGS64                                                                                             \
  SLA_REGS32 ", %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, " \
             "%51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

// D (64 x 64) += A (64 x 16) Bᵀ, A and B (64 x 16) K-major in shared memory.
template <class Elem>
__device__ __forceinline__ void wgmma_m64n64k16_ss(float (&d)[8][4], uint64_t desc_a, uint64_t desc_b);
// D (64 x 128) += A (64 x 16) Bᵀ, A and B (128 x 16) K-major in shared memory.
template <class Elem>
__device__ __forceinline__ void wgmma_m64n128k16_ss(float (&d)[16][4], uint64_t desc_a, uint64_t desc_b);
// D (64 x 128) += A B, A (64 x 16) and B (16 x 128) MN-major in shared memory (each stored as rows
// of its reduction dimension: A as Aᵀ).
template <class Elem>
__device__ __forceinline__ void wgmma_m64n128k16_ss_mn(float (&d)[16][4], uint64_t desc_a, uint64_t desc_b);
// D (64 x N) += A (64 x 16, registers: the A fragments of each warp's 16 rows) B, B (16 x N)
// MN-major in shared memory.
template <class Elem>
__device__ __forceinline__ void wgmma_m64n64k16_rs(float (&d)[8][4], const uint32_t (&a)[4], uint64_t desc_b);
template <class Elem>
__device__ __forceinline__ void wgmma_m64n128k16_rs(float (&d)[16][4], const uint32_t (&a)[4], uint64_t desc_b);
// D (64 x N) += A (64 x 16, registers) Bᵀ, B (N x 16) K-major in shared memory.
template <class Elem>
__device__ __forceinline__ void wgmma_m64n64k16_rs_kmajor(float (&d)[8][4], const uint32_t (&a)[4], uint64_t desc_b);
template <class Elem>
__device__ __forceinline__ void wgmma_m64n128k16_rs_kmajor(float (&d)[16][4], const uint32_t (&a)[4], uint64_t desc_b);

#define SLA_DEFINE_WGMMA(ELEM, TY)                                                                           \
  template <>                                                                                                \
  __device__ __forceinline__ void wgmma_m64n64k16_ss<ELEM>(float (&d)[8][4], uint64_t desc_a, uint64_t desc_b) { \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                            \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {" SLA_REGS32                     \
                 "}, %32, %33, p, 1, 1, 0, 0;\n}\n"                                                         \
                 : SLA_ACC32(d)                                                                              \
                 : "l"(desc_a), "l"(desc_b), "r"(1));                                                                \
  }                                                                                                          \
  template <>                                                                                                \
  __device__ __forceinline__ void wgmma_m64n128k16_ss<ELEM>(float (&d)[16][4], uint64_t desc_a,               \
                                                            uint64_t desc_b) {                                \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                            \
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " {" SLA_REGS64                    \
                 "}, %64, %65, p, 1, 1, 0, 0;\n}\n"                                                        \
                 : SLA_ACC64(d)                                                                              \
                 : "l"(desc_a), "l"(desc_b), "r"(1));                                                        \
  }                                                                                                          \
  template <>                                                                                                \
  __device__ __forceinline__ void wgmma_m64n128k16_ss_mn<ELEM>(float (&d)[16][4], uint64_t desc_a,            \
                                                               uint64_t desc_b) {                             \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                            \
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " {" SLA_REGS64                    \
                 "}, %64, %65, p, 1, 1, 1, 1;\n}\n"                                                        \
                 : SLA_ACC64(d)                                                                              \
                 : "l"(desc_a), "l"(desc_b), "r"(1));                                                        \
  }                                                                                                          \
  template <>                                                                                                \
  __device__ __forceinline__ void wgmma_m64n64k16_rs<ELEM>(float (&d)[8][4], const uint32_t (&a)[4],          \
                                                           uint64_t desc_b) {                                 \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                            \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {" SLA_REGS32                     \
                 "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"                                           \
                 : SLA_ACC32(d)                                                                              \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));                                 \
  }                                                                                                          \
  template <>                                                                                                \
  __device__ __forceinline__ void wgmma_m64n64k16_rs_kmajor<ELEM>(float (&d)[8][4], const uint32_t (&a)[4],   \
                                                                  uint64_t desc_b) {                          \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                            \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {" SLA_REGS32                     \
                 "}, {%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"                                           \
                 : SLA_ACC32(d)                                                                              \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));                         \
  }                                                                                                          \
  template <>                                                                                                \
  __device__ __forceinline__ void wgmma_m64n128k16_rs_kmajor<ELEM>(float (&d)[16][4], const uint32_t (&a)[4],  \
                                                                   uint64_t desc_b) {                         \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                            \
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " {" SLA_REGS64                    \
                 "}, {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"                                           \
                 : SLA_ACC64(d)                                                                              \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));                         \
  }                                                                                                          \
  template <>                                                                                                \
  __device__ __forceinline__ void wgmma_m64n128k16_rs<ELEM>(float (&d)[16][4], const uint32_t (&a)[4],        \
                                                            uint64_t desc_b) {                                \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                            \
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " {" SLA_REGS64                    \
                 "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"                                           \
                 : SLA_ACC64(d)                                                                              \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));                                 \
  }

SLA_DEFINE_WGMMA(__nv_bfloat16, "bf16")
SLA_DEFINE_WGMMA(__half, "f16")

#undef SLA_DEFINE_WGMMA
#undef SLA_REGS64
#undef SLA_REGS32
#undef SLA_ACC64
#undef SLA_ACC32
#undef SLA_ACC8

// S (64 x N) += A Bᵀ, A and B K-major in shared memory, the width picked by N (keys per step).
template <int N, class Elem>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 8][4], uint64_t desc_a, uint64_t desc_b) {
  if constexpr (N == 64) {
    wgmma_m64n64k16_ss<Elem>(d, desc_a, desc_b);
  } else {
    static_assert(N == 128, "wgmma widths 64 and 128");
    wgmma_m64n128k16_ss<Elem>(d, desc_a, desc_b);
  }
}

// O (64 x N) += A B with B in shared memory, the width picked by N (D of the forward).
template <int N, class Elem>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 8][4], const uint32_t (&a)[4], uint64_t desc_b) {
  if constexpr (N == 64) {
    wgmma_m64n64k16_rs<Elem>(d, a, desc_b);
  } else {
    static_assert(N == 128, "wgmma widths 64 and 128");
    wgmma_m64n128k16_rs<Elem>(d, a, desc_b);
  }
}

}  // namespace sla::kernels
