// Block-map kernels. The scoring GEMM and the top-k between them run through ATen (sla_api.cpp);
// these two cover what ATen would need many launches or a copy for:
//   pool:       per-block sums of the q rows and of the k rows (blockIdx.z picks q or k), read
//               straight from the strided inputs, float32 accumulation.
//   transpose:  LUT (B*H, Nq, n) -> per key block the ascending list of query blocks that selected
//               it (kv_count, kv_list), the index the dk/dv pass walks. One thread per (bh, key
//               block) scans the LUT rows in order, so the lists come out sorted and deterministic.
#pragma once

#include "sla_params.h"
#include "warp_mma.cuh"

namespace sla::kernels {

// sums: (2, B*H, max(Nq, Nk), D) float32; [0] = q block sums, [1] = k block sums.
template <class Elem, int D>
__global__ void __launch_bounds__(D) sla_pool_kernel(const __grid_constant__ SlaParams p, float* sums,
                                                     int max_blocks) {
  const bool is_k = blockIdx.z == 1;
  const int blk = is_k ? p.blkk : p.blkq;
  const int num_blocks = is_k ? p.num_k_blocks : p.num_q_blocks;
  const int block = blockIdx.x;
  if (block >= num_blocks) return;
  const int bh = blockIdx.y;
  const int b = bh / p.heads, h = bh % p.heads;
  const TensorRef& x = is_k ? p.k : p.q;
  const int row0 = block * blk;
  const int rows = min(blk, p.seqlen - row0);
  const Elem* src = static_cast<const Elem*>(x.ptr) + b * x.batch + h * x.head + row0 * x.row + threadIdx.x;
  float sum = 0.f;
  for (int r = 0; r < rows; ++r) sum += to_float(src[r * x.row]);
  sums[((int64_t(blockIdx.z) * p.batch * p.heads + bh) * max_blocks + block) * D + threadIdx.x] = sum;
}

__global__ void sla_lut_transpose_kernel(const __grid_constant__ SlaParams p, int32_t* kv_count,
                                         int32_t* kv_list) {
  const int64_t id = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // over B*H*Nk
  if (id >= int64_t(p.batch) * p.heads * p.num_k_blocks) return;
  const int kb = int(id % p.num_k_blocks);
  const int64_t bh = id / p.num_k_blocks;
  const int n = p.blocks_per_row;
  const int32_t* lut = p.lut + bh * p.num_q_blocks * n;
  int32_t* list = kv_list + id * p.num_q_blocks;
  int count = 0;
  for (int qb = 0; qb < p.num_q_blocks; ++qb) {
    // LUT rows are ascending: binary search for kb.
    const int32_t* row = lut + int64_t(qb) * n;
    int lo = 0, hi = n;
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (row[mid] < kb) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    if (lo < n && row[lo] == kb) list[count++] = qb;
  }
  kv_count[id] = count;
}

}  // namespace sla::kernels
