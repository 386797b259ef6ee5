// Hopper (sm_90a) producer/consumer building blocks: shared-memory mbarriers, TMA tile loads into
// sw128 panels (wgmma.cuh's layout; the tensor map's 128-byte swizzle is the same pattern), and the
// warpgroup register reallocation. Include only from sources compiled for sm_90a.
//
// A tensor map (CUtensorMap, encoded on the host by tma_host.h) describes one (B, H, L, D) input
// as a 4-D tensor {D, L, H, B} (innermost first) with boxes of 64 columns: one box fills one
// 128-byte-wide panel, and rows past L arrive as zeros.
#pragma once

#include "warp_mma.cuh"

#include <cuda.h>

#include <cstdint>

namespace sla::kernels {

// The tensor maps of the backward's warp-specialised passes (dq and dk/dv): q and d_o in boxes of
// 64 columns x a query block's rows, k and v in boxes of 64 x 64 (a key block).
struct BwdTensorMaps {
  CUtensorMap q, d_o, k, v;
};

__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}

// Makes the barriers' initialisation visible to the other threads and to the TMA unit; the CTA
// barrier that follows it publishes them.
__device__ __forceinline__ void mbar_init_fence() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// The barriers of a ring of `stages` stages: full[s] completes with `producers` arrivals and the
// stage's bytes, empty[s] with `readers` arrivals (one per consumer warp that reads the stage);
// `once` (what is loaded a single time) with one arrival and its bytes. Initialised by thread 0;
// every thread of the CTA calls this (it ends in __syncthreads).
__device__ __forceinline__ void init_ring_barriers(uint64_t* full, uint64_t* empty, int stages, int producers,
                                                   int readers, uint64_t* once) {
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) {
      mbar_init(&full[s], producers);
      mbar_init(&empty[s], readers);
    }
    mbar_init(once, 1);
    mbar_init_fence();
  }
  __syncthreads();
}

// One arrival that also announces `bytes` of TMA traffic the phase waits for.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}

// Waits until the phase of parity `parity` has completed. A fresh barrier is in phase 0, so a
// wait on parity 1 returns at once: the producer's first pass over its empty ring waits for nothing.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(smem_addr(bar)), "r"(parity)
        : "memory");
  } while (!done);
}

// Box (c0: column, c1: row, c2: head, c3: batch) of `map` into shared memory at `dst`, completing
// its bytes on `bar`. `map` must be a __grid_constant__ kernel parameter (or global memory).
__device__ __forceinline__ void tma_load_4d(void* dst, const CUtensorMap* map, int c0, int c1, int c2, int c3,
                                            uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
      "[%6];\n" ::"r"(smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_addr(bar))
      : "memory");
}

// `bytes` (a multiple of 16) of global memory at `src` into shared memory at `dst` (both 16-byte
// aligned), completing on `bar`.
__device__ __forceinline__ void bulk_load(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                   smem_addr(dst)),
               "l"(src), "r"(bytes), "r"(smem_addr(bar))
               : "memory");
}

// Box (c0: column, c1: row, c2: head, c3: batch) of `map` from shared memory at `src` into global
// memory (elements past the tensor's end are not written), in the calling thread's bulk group.
__device__ __forceinline__ void tma_store_4d(const CUtensorMap* map, const void* src, int c0, int c1, int c2, int c3) {
  asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(smem_addr(src)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
               : "memory");
}

// Closes the calling thread's bulk group of stores.
__device__ __forceinline__ void tma_store_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }

// Waits until at most N of the calling thread's bulk groups are pending: with Read, until they have
// read their shared memory (which may then be overwritten); without, until their writes are done.
template <int N, bool Read>
__device__ __forceinline__ void tma_store_wait() {
  if constexpr (Read) {
    asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
  } else {
    asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
  }
}

__device__ __forceinline__ void tma_prefetch_map(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// The producer of a ring of row tiles (the linear passes): the tiles first, first + step, ...
// (count of them, Rows rows each) of two (B, H, L, D) tensors (maps x, y, boxes of 64 columns x
// Rows rows) into x_stages, y_stages ([Stages] x sw128 [D / 64][Rows][64]), each stage's full
// barrier expecting both tiles' bytes, each refill waiting for the stage's empty barrier. One
// thread calls it.
template <int Rows, int D, int Stages, class Elem>
__device__ __forceinline__ void produce_row_tiles(Elem* x_stages, Elem* y_stages, const CUtensorMap* x,
                                                  const CUtensorMap* y, int first, int step, int count, int h, int b,
                                                  uint64_t* full, uint64_t* empty) {
  tma_prefetch_map(x);
  tma_prefetch_map(y);
  for (int i = 0; i < count; ++i) {
    const int stage = i % Stages, row0 = (first + i * step) * Rows;
    mbar_wait(&empty[stage], ((i / Stages) & 1) ^ 1);
    mbar_arrive_expect_tx(&full[stage], 2 * Rows * D * sizeof(Elem));
#pragma unroll
    for (int c = 0; c < D / 64; ++c) {
      tma_load_4d(x_stages + stage * Rows * D + c * Rows * 64, x, c * 64, row0, h, b, &full[stage]);
      tma_load_4d(y_stages + stage * Rows * D + c * Rows * 64, y, c * 64, row0, h, b, &full[stage]);
    }
  }
}

// One step of a sparse pass's producer (the forward's, the dq pass's): for each of the CTA's kQB
// LUT rows j, the K and V blocks (BK rows each) at its entries step·NB, ..., step·NB + NB − 1 (past
// its n entries: its last block again, masked by the consumers) into tile j of the stage, k_stage
// and v_stage each [kQB] x sw128 [D / 64][NB·BK][64], all announced on `full`. One thread calls it.
template <int kQB, int NB, int BK, int D, class Elem>
__device__ __forceinline__ void load_lut_step(Elem* k_stage, Elem* v_stage, const int32_t* const (&luts)[kQB],
                                              int step, int n, const CUtensorMap* k, const CUtensorMap* v, int h,
                                              int b, uint64_t* full) {
#pragma unroll
  for (int j = 0; j < kQB; ++j) {
#pragma unroll
    for (int bi = 0; bi < NB; ++bi) {
      const int key0 = luts[j][min(step * NB + bi, n - 1)] * BK;
#pragma unroll
      for (int c = 0; c < D / 64; ++c) {
        const int at = (j * D + c * 64) * NB * BK + bi * BK * 64;  // tile j, panel c, rows bi·BK..
        tma_load_4d(k_stage + at, k, c * 64, key0, h, b, full);
        tma_load_4d(v_stage + at, v, c * 64, key0, h, b, full);
      }
    }
  }
}

// Registers per thread of the calling warpgroup, given back to (dec) or taken from (inc) the SM's
// pool; every warp of the warpgroup executes it.
template <int kRegs>
__device__ __forceinline__ void warpgroup_reg_dealloc() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void warpgroup_reg_alloc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

// Barrier among `threads` threads (a multiple of 32) on hardware barrier `id` (1..15; 0 is
// __syncthreads'): the consumer warpgroups synchronise without the producer.
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

}  // namespace sla::kernels
