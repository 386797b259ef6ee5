// Block-map kernels:
//   pool:       per-block sums of the q rows and of the k rows (blockIdx.z picks q or k), read
//               straight from the strided inputs, float32 accumulation.
//   smooth k:   the k block sums become smooth-k block means in place: block mean − mean of all
//               k rows (the total summed in a fixed order).
//   scores:     pooled q against every smooth-k block mean, 64 x 64 or 32 x 32 (query block, key
//               block) pairs per CTA, into a float32 (heads, Nq, Nk) buffer.
//   select:     per query block (one warp per row of scores): the top n by a radix select over the
//               float bits (ties: lowest index), written as the ascending LUT.
//   transpose:  LUT (B*H, Nq, n) -> per key block the ascending list of query blocks that selected
//               it (kv_count, kv_list), the index the dk/dv pass walks. One CTA per (bh, chunk of
//               key blocks) reads the bh's whole LUT into a shared bitmask (which query block
//               selected which key block of the chunk); then one warp per key block collects the
//               set bits in ascending query-block order with a ballot, so the lists come out sorted
//               and deterministic. When the bitmask of one 32-block chunk does not fit, a fallback
//               runs one thread per (bh, key block) that binary-searches every LUT row.
#pragma once

#include "sla_params.h"
#include "warp_mma.cuh"

namespace sla::kernels {

inline constexpr int kPoolThreads = 128;

// sums: (2, B*H, max(Nq, Nk), D) float32; [0] = q block sums, [1] = k block sums. A thread adds
// one 16-byte chunk (8 dims) of every kRowGroups-th row; the row groups are then summed in order.
template <class Elem, int D>
__global__ void __launch_bounds__(kPoolThreads) sla_pool_kernel(const __grid_constant__ SlaParams p, float* sums,
                                                                int max_blocks) {
  constexpr int kChunks = D / 8;
  constexpr int kRowGroups = kPoolThreads / kChunks;
  static_assert(kPoolThreads % kChunks == 0, "whole rows per pass");
  __shared__ float partial[kRowGroups][D];
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
  const int chunk = threadIdx.x % kChunks, rg = threadIdx.x / kChunks;
  const Elem* src = static_cast<const Elem*>(x.ptr) + b * x.batch + h * x.head + row0 * x.row + chunk * 8;
  float acc[8] = {};
  for (int r = rg; r < rows; r += kRowGroups) {
    const uint4 raw = *reinterpret_cast<const uint4*>(src + r * x.row);
    const Elem* e = reinterpret_cast<const Elem*>(&raw);
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i] += to_float(e[i]);
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) partial[rg][chunk * 8 + i] = acc[i];
  __syncthreads();
  for (int d = threadIdx.x; d < D; d += kPoolThreads) {
    float sum = 0.f;
#pragma unroll
    for (int g = 0; g < kRowGroups; ++g) sum += partial[g][d];
    sums[((int64_t(blockIdx.z) * p.batch * p.heads + bh) * max_blocks + block) * D + d] = sum;
  }
}

inline constexpr int kSmoothThreads = 512;
inline constexpr int kSmoothDims = 32;  // dims per CTA: one per lane
inline constexpr int kSmoothGroups = kSmoothThreads / kSmoothDims;

// grid (B*H, D / kSmoothDims). sums as sla_pool_kernel; sums[1] rows become the smooth-k block
// means: k_sums[j] / rows_j − (Σ_j k_sums[j]) / L.
template <int D>
__global__ void __launch_bounds__(kSmoothThreads) sla_smooth_k_kernel(const __grid_constant__ SlaParams p, float* sums,
                                                                      int max_blocks) {
  static_assert(D % kSmoothDims == 0, "whole lanes of dims");
  __shared__ float partial[kSmoothGroups][kSmoothDims];
  const int bh = blockIdx.x, lane = threadIdx.x % kSmoothDims, group = threadIdx.x / kSmoothDims;
  const int d = blockIdx.y * kSmoothDims + lane, nk = p.num_k_blocks;
  float* k_sums = sums + (int64_t(p.batch) * p.heads + bh) * max_blocks * D + d;  // [j * D]
  float acc = 0.f;
  for (int j = group; j < nk; j += kSmoothGroups) acc += k_sums[int64_t(j) * D];
  partial[group][lane] = acc;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int g = 0; g < kSmoothGroups; ++g) total += partial[g][lane];
  const float mean = total * (1.f / float(p.seqlen));
  for (int j = group; j < nk; j += kSmoothGroups) {
    const float rows = float(min(p.blkk, p.seqlen - j * p.blkk));
    k_sums[int64_t(j) * D] = k_sums[int64_t(j) * D] / rows - mean;
  }
}

// Orders floats as unsigned integers (larger float, larger key).
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// One warp: the n largest of scores[0, count) as ascending indices into out (1 <= n <= count).
// kPerLane > 0: the row fits in registers (count <= 32 kPerLane) and every pass of the radix
// select reads them; 0: every pass reads the row from memory again. hist: the warp's 256 words of
// shared memory, 16-byte aligned.
template <int kPerLane>
__device__ __forceinline__ void select_top_n(const float* scores, int count, int n, int32_t* out, int lane,
                                             uint32_t* hist) {
  const int per_lane = kPerLane > 0 ? kPerLane : (count + 31) / 32;
  uint32_t regs[kPerLane > 0 ? kPerLane : 1];
  if constexpr (kPerLane > 0) {
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int j = lane + 32 * i;
      regs[i] = j < count ? order_key(scores[j]) : 0u;
    }
  }
  // Key of element lane + 32 i; 0 (below every candidate) past the end.
  auto key = [&](int i) -> uint32_t {
    if constexpr (kPerLane > 0) {
      return regs[i];
    } else {
      const int j = lane + 32 * i;
      return j < count ? order_key(scores[j]) : 0u;
    }
  };
  // The n-th largest key, one 8-bit digit per pass, the most significant first: a histogram of the
  // digit over the keys that carry the digits found so far, and the digit at which the count from
  // the top reaches `need` (the rank still wanted among those keys). Lane l owns bins 8 l .. 8 l + 7.
  // The leading digits that every key of the row shares (scores of one sign and magnitude share
  // their sign and exponent) take no pass: the histogram of such a digit is one bin of every key.
  uint32_t all_and = ~0u, all_or = 0u;
#pragma unroll
  for (int i = 0; i < per_lane; ++i) {
    if (lane + 32 * i < count) {
      all_and &= key(i);
      all_or |= key(i);
    }
  }
  all_and = __reduce_and_sync(0xffffffffu, all_and);
  const uint32_t differ = all_and ^ __reduce_or_sync(0xffffffffu, all_or);  // bits in which keys differ
  int shift = 24;
  while (shift > 0 && (differ >> shift) == 0u) shift -= 8;
  uint32_t threshold = shift == 24 ? 0u : all_and & (~0u << (shift + 8));
  int need = n;
  for (; shift >= 0; shift -= 8) {
    const uint32_t high = shift == 24 ? 0u : ~0u << (shift + 8);  // the digits found so far
    uint4* own_bins = reinterpret_cast<uint4*>(hist + 8 * lane);  // two 16-byte words: no bank conflicts
    own_bins[0] = own_bins[1] = make_uint4(0u, 0u, 0u, 0u);
    __syncwarp();
#pragma unroll
    for (int i = 0; i < per_lane; ++i) {
      const uint32_t k = key(i);
      if (lane + 32 * i < count && (k & high) == threshold) atomicAdd(&hist[(k >> shift) & 255u], 1u);
    }
    __syncwarp();
    const uint4 lo = own_bins[0], hi = own_bins[1];
    const uint32_t bins[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
    int own = 0;
#pragma unroll
    for (int b = 0; b < 8; ++b) own += int(bins[b]);
    int from_here = own;  // keys in this lane's bins and every higher lane's
#pragma unroll
    for (int offset = 1; offset < 32; offset *= 2) {
      const int above = __shfl_down_sync(0xffffffffu, from_here, offset);
      if (lane + offset < 32) from_here += above;
    }
    int above = from_here - own;  // keys in higher lanes' bins
    const bool crossing = above < need && from_here >= need;
    const int owner = __ffs(__ballot_sync(0xffffffffu, crossing)) - 1;
    int digit = 0;
    if (crossing) {
#pragma unroll
      for (int b = 7; b >= 0; --b) {
        if (above + int(bins[b]) >= need) {
          digit = 8 * lane + b;
          break;
        }
        above += int(bins[b]);
      }
      need -= above;
    }
    digit = __shfl_sync(0xffffffffu, digit, owner);
    need = __shfl_sync(0xffffffffu, need, owner);
    threshold |= uint32_t(digit) << shift;
    __syncwarp();  // every lane has read its bins before the next pass clears them
  }
  // The last pass left in `need` the rank of the threshold among the keys equal to it: the ties to take.
  int ties_left = need;
  const uint32_t lanes_below = (1u << lane) - 1u;
  int written = 0;
#pragma unroll
  for (int i = 0; i < per_lane; ++i) {
    const int j = 32 * i + lane;
    const uint32_t k = key(i);
    const bool tie = j < count && k == threshold;
    const uint32_t tie_mask = __ballot_sync(0xffffffffu, tie);
    const bool take = (j < count && k > threshold) || (tie && __popc(tie_mask & lanes_below) < ties_left);
    const uint32_t take_mask = __ballot_sync(0xffffffffu, take);
    if (take) out[written + __popc(take_mask & lanes_below)] = j;
    written += __popc(take_mask);
    ties_left -= min(__popc(tie_mask), max(ties_left, 0));
  }
}

inline constexpr int kScoreThreads = 256;
// Row stride (floats) of the pooled rows in shared memory: 16-byte rows for float4 loads, 4 banks apart.
template <int D>
inline constexpr int kScoreStride = D + 4;
// Dynamic shared memory of the scores kernel with T x T tiles: the tile's pooled q and smooth-k rows.
template <int D, int T>
constexpr int block_scores_smem_bytes() {
  return 2 * T * kScoreStride<D> * 4;
}

// grid (ceil(Nk / T), ceil(Nq / T), bh_count), T 64 or 32 query blocks x key blocks per CTA:
// scores (bh_count, Nq, Nk) of heads bh0.. = pooled q · smooth-k mean, float32, the dims summed in
// order, four at a time. Each lane: query rows ty + 16 i, key rows tx + 16 j (i, j < T / 16) of the
// tile, tx = tid % 16: per float4 of dims T / 16 query loads (two rows per warp, one wavefront
// each) and T / 16 key loads (16 rows per warp, two wavefronts each) feed (T / 16)² · 4 FMAs.
// (ncu, H100, (1,12,32760,128) 128/64: 21.6 us for the scores and 14.8 for the select, against
// 47.5 for one kernel holding eight rows of scores in shared memory per CTA, bound by its
// shared-memory loads: one key per lane against two rows.)
template <int D, int T>
__global__ void __launch_bounds__(kScoreThreads) sla_block_scores_kernel(const __grid_constant__ SlaParams p,
                                                                         const float* sums, int max_blocks, int bh0,
                                                                         float* scores) {
  constexpr int S = kScoreStride<D>, kPerLane = T / 16;
  static_assert(T % 16 == 0 && kScoreThreads == 16 * 16, "16 x 16 lanes over the tile");
  extern __shared__ __align__(16) float score_smem[];
  float* sQ = score_smem;  // [T][S]: pooled q of the tile's query blocks, 0 past Nq
  float* sK = sQ + T * S;  // [T][S]: smooth-k means of its key blocks, 0 past Nk
  const int kb0 = blockIdx.x * T, qb0 = blockIdx.y * T, bh = bh0 + blockIdx.z;
  const int tid = threadIdx.x, nk = p.num_k_blocks, nq = p.num_q_blocks;
  const int64_t bhs = int64_t(p.batch) * p.heads;
  const float* q_sums = sums + int64_t(bh) * max_blocks * D;
  const float* k_means = sums + (bhs + bh) * max_blocks * D;
  for (int i = tid; i < T * D / 4; i += kScoreThreads) {
    const int r = i / (D / 4), d4 = i % (D / 4), qb = qb0 + r, kb = kb0 + r;
    float4 qv = make_float4(0.f, 0.f, 0.f, 0.f), kv = qv;
    if (qb < nq) {
      const float rows = float(min(p.blkq, p.seqlen - qb * p.blkq));
      qv = reinterpret_cast<const float4*>(q_sums + int64_t(qb) * D)[d4];
      qv = make_float4(qv.x / rows, qv.y / rows, qv.z / rows, qv.w / rows);
    }
    if (kb < nk) kv = reinterpret_cast<const float4*>(k_means + int64_t(kb) * D)[d4];
    reinterpret_cast<float4*>(sQ + r * S)[d4] = qv;
    reinterpret_cast<float4*>(sK + r * S)[d4] = kv;
  }
  __syncthreads();
  const int tx = tid % 16, ty = tid / 16;
  float dot[kPerLane][kPerLane] = {};
#pragma unroll 2
  for (int d4 = 0; d4 < D / 4; ++d4) {
    float4 qv[kPerLane], kv[kPerLane];
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) qv[i] = reinterpret_cast<const float4*>(sQ + (ty + 16 * i) * S)[d4];
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) kv[j] = reinterpret_cast<const float4*>(sK + (tx + 16 * j) * S)[d4];
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        dot[i][j] = fmaf(qv[i].x, kv[j].x, dot[i][j]);
        dot[i][j] = fmaf(qv[i].y, kv[j].y, dot[i][j]);
        dot[i][j] = fmaf(qv[i].z, kv[j].z, dot[i][j]);
        dot[i][j] = fmaf(qv[i].w, kv[j].w, dot[i][j]);
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int qb = qb0 + ty + 16 * i;
    if (qb >= nq) continue;
    float* row = scores + (int64_t(blockIdx.z) * nq + qb) * nk;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int kb = kb0 + tx + 16 * j;
      if (kb < nk) row[kb] = dot[i][j];
    }
  }
}

inline constexpr int kSelectThreads = 256;

// grid ceil(bh_count Nq / 8) x 256 threads: one warp per row of scores (sla_block_scores_kernel's,
// heads bh0..), its top blocks_per_row as the ascending LUT row.
template <int kPerLane>
__global__ void __launch_bounds__(kSelectThreads) sla_select_rows_kernel(const __grid_constant__ SlaParams p,
                                                                         const float* scores, int bh0, int rows) {
  __shared__ __align__(16) uint32_t hist[kSelectThreads / 32][256];  // each warp's digit histogram
  const int warp = threadIdx.x / 32, row = blockIdx.x * (kSelectThreads / 32) + warp;
  if (row >= rows) return;
  const int nk = p.num_k_blocks;
  int32_t* out = const_cast<int32_t*>(p.lut) + (int64_t(bh0) * p.num_q_blocks + row) * p.blocks_per_row;
  select_top_n<kPerLane>(scores + int64_t(row) * nk, nk, p.blocks_per_row, out, threadIdx.x % 32, hist[warp]);
}

inline constexpr int kTransposeThreads = 256;
inline constexpr int kTransposeMaxWords = 4;            // ≤ 128 key blocks per CTA
inline constexpr int kTransposeSmemBudget = 48 * 1024;  // bytes of bitmask: no opt-in needed

// grid (B*H, ceil(Nk / (32 words))); dynamic smem words * Nq * 4 bytes (lut_transpose_words).
__global__ void __launch_bounds__(kTransposeThreads) sla_lut_transpose_bitmask_kernel(
    const __grid_constant__ SlaParams p, int32_t* kv_count, int32_t* kv_list, int words) {
  static_assert(kTransposeThreads % 32 == 0, "whole warps");
  extern __shared__ uint32_t selected[];  // [words][Nq]: bit kb % 32 of word kb / 32 = (qb, kb0 + kb) selected
  const int nq = p.num_q_blocks, nk = p.num_k_blocks, n = p.blocks_per_row;
  const int64_t bh = blockIdx.x;
  const int kb0 = blockIdx.y * words * 32, chunk = min(words * 32, nk - kb0);
  const int tid = threadIdx.x;

  for (int i = tid; i < words * nq; i += kTransposeThreads) selected[i] = 0u;
  __syncthreads();
  const int32_t* lut = p.lut + bh * nq * n;  // [Nq][n]
  for (int i = tid; i < nq * n; i += kTransposeThreads) {
    const int kb = lut[i] - kb0;
    if (kb >= 0 && kb < chunk) atomicOr(&selected[(kb / 32) * nq + i / n], 1u << (kb % 32));
  }
  __syncthreads();

  // One warp per key block: 32 query blocks per ballot, ascending, so list order = qb order.
  const int warp = tid / 32, lane = tid % 32;
  const uint32_t lanes_below = (1u << lane) - 1u;
  for (int kb = warp; kb < chunk; kb += kTransposeThreads / 32) {
    const uint32_t* bits = selected + (kb / 32) * nq;  // [Nq]
    const int64_t row = bh * nk + kb0 + kb;
    int32_t* list = kv_list + row * nq;  // [Nq]
    int count = 0;
    for (int qb0 = 0; qb0 < nq; qb0 += 32) {
      const int qb = qb0 + lane;
      const bool hit = qb < nq && ((bits[qb] >> (kb % 32)) & 1u);
      const uint32_t hits = __ballot_sync(0xffffffffu, hit);
      if (hit) list[count + __popc(hits & lanes_below)] = qb;
      count += __popc(hits);
    }
    if (lane == 0) kv_count[row] = count;
  }
}

// Fallback: one thread per (bh, key block), binary search in every LUT row (rows ascending).
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
