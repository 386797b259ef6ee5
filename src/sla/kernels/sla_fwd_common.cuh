// Pieces of the forward shared by the mma.sync kernel (sla_fwd_kernel.cuh) and the Hopper wgmma
// kernel (sla_fwd_sm90_kernel.cuh). Both keep a warp's 16 query rows in the m16n8 accumulator
// layout (wgmma's m64 accumulators are four such warp tiles), so the online softmax and the
// epilogue are the same code.
#pragma once

#include "feature_map.cuh"
#include "sla_params.h"
#include "warp_mma.cuh"

#include <cmath>

namespace sla::kernels {

// 2^x on the special-function unit (flush-to-zero: the probabilities that would be denormal are 0).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Scores of keys at or past the sequence end set to -inf: the BK columns from 8 j0 of a warp's
// score tile hold the keys key0.. of one key block (a tile may hold several blocks).
template <int BK, int N>
__device__ __forceinline__ void mask_keys_past_end(float (&acc_s)[N][4], int j0, int key0, const SlaParams& p,
                                                   int t) {
  if (key0 + BK <= p.seqlen) return;
#pragma unroll
  for (int j = 0; j < BK / 8; ++j)
#pragma unroll
    for (int i = 0; i < 4; ++i)
      if (key0 + 8 * j + 2 * t + (i & 1) >= p.seqlen) acc_s[j0 + j][i] = -INFINITY;
}

// How far (log2 units) a row's scores may exceed its running max before the max moves: below
// that, P = 2^(S·scale·log2(e) − max) stays at most 2^8 and O and the row sums keep their scale
// (FlashAttention-4's conditional rescaling). Exact either way: O, the sums and lse all refer to
// the same max; what changes is how often O is rescaled (rarely at all once a row has a max).
constexpr float kMaxSlackLog2 = 8.f;

// Online softmax over the BN columns of a (masked) score tile: turns the raw scores S (16 x BN)
// into P = 2^(S·scale·log2(e) − max) in place, with the running max in log2 units, and returns
// alpha = 2^(old max − new max) per half, the factor by which the running O and row sums are
// rescaled (row_sum here, O by the caller: on Hopper the previous block's O += P V may still be in
// flight; 1 where the max stays, see kMaxSlackLog2). Rows g and g + 8 of the warp tile are the two
// halves.
template <int BN>
__device__ __forceinline__ void online_softmax_rows(float (&acc_s)[BN / 8][4], float (&row_max)[2],
                                                    float (&row_sum)[2], float (&alpha)[2], const SlaParams& p) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) mx = fmaxf(mx, fmaxf(acc_s[j][2 * half], acc_s[j][2 * half + 1]));
    mx = quad_max(mx) * p.scale_log2;  // the first tile of a row holds a valid key: finite
    const bool moves = mx > row_max[half] + kMaxSlackLog2;  // always at the first tile (-inf)
    alpha[half] = moves ? fast_exp2(row_max[half] - mx) : 1.f;
    if (moves) row_max[half] = mx;
    mx = row_max[half];
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float pr = fast_exp2(fmaf(acc_s[j][2 * half + e], p.scale_log2, -mx));
        acc_s[j][2 * half + e] = pr;
        sum += pr;
      }
    }
    row_sum[half] = row_sum[half] * alpha[half] + sum;
  }
}

// Online softmax over one key block of BK keys from key0 (masked past the sequence end).
template <int BK>
__device__ __forceinline__ void online_softmax_step(float (&acc_s)[BK / 8][4], float (&row_max)[2],
                                                    float (&row_sum)[2], float (&alpha)[2], int key0,
                                                    const SlaParams& p, int t) {
  mask_keys_past_end<BK>(acc_s, 0, key0, p, t);
  online_softmax_rows<BK>(acc_s, row_max, row_sum, alpha, p);
}

// O (16 x D) *= alpha per half; skipped when the warp's maxima did not move (most blocks after
// the first few).
template <int D>
__device__ __forceinline__ void rescale_rows(float (&acc_o)[D / 8][4], const float (&alpha)[2]) {
  if (__all_sync(0xffffffff, alpha[0] == 1.f && alpha[1] == 1.f)) return;
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
    acc_o[j][0] *= alpha[0];
    acc_o[j][1] *= alpha[0];
    acc_o[j][2] *= alpha[1];
    acc_o[j][3] *= alpha[1];
  }
}

// Epilogue, first part, of a warp's 16 rows wrow0..: lse = ln(l) + max written, O /= l.
template <int D>
__device__ __forceinline__ void fwd_normalise(const SlaParams& p, float (&acc_o)[D / 8][4], const float (&row_max)[2],
                                              const float (&row_sum)[2], int bh, int wrow0, int lane) {
  const int g = lane >> 2, t = lane & 3;
  const int rows_valid = p.seqlen - wrow0;  // of this warp's 16 rows
  float inv_l[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const float l = quad_sum(row_sum[half]);
    inv_l[half] = 1.f / l;
    const int r = g + 8 * half;
    if (t == 0 && r < rows_valid) {
      p.lse[int64_t(bh) * p.seqlen + wrow0 + r] = (row_max[half] + log2f(l)) * 0.69314718055994531f;
    }
  }
  rescale_rows<D>(acc_o, inv_l);
}

// Which linear state (M and z) a query block reads: one per (b, h), or one per query block
// (SlaParams::lin_per_q_block).
__device__ __forceinline__ int64_t linear_state_index(const SlaParams& p, int bh, int qb) {
  return p.lin_per_q_block ? int64_t(bh) * p.num_q_blocks + qb : bh;
}

// φ(Q) of a warp's 16 rows (from their Q fragments a_q) and 1 / (φ(Q)·z + ε) per half, z the
// state's D floats (global or shared memory); the denominator is 0 only where z is (complement,
// every key block selected): M is 0 too, and the branch adds 0 there.
template <class Elem, int D>
__device__ __forceinline__ void linear_query_side(const SlaParams& p, const float* z, const uint32_t (&a_q)[D / 16][4],
                                                  uint32_t (&a_phi)[D / 16][4], float (&inv_den)[2], int lane) {
  float den[2];
  feature_map_rows<D, Elem>(a_phi, den, a_q, p.feature_map, z, p.lin_eps, lane);
#pragma unroll
  for (int half = 0; half < 2; ++half) inv_den[half] = den[half] > 0.f ? 1.f / den[half] : 0.f;
}

// O += (φ(Q) M)[:, columns 8 j0 ..] / den + bias, for the N columns of acc_l.
template <int D, int N>
__device__ __forceinline__ void add_linear_columns(float (&acc_o)[D / 8][4], const float (&acc_l)[N / 8][4], int j0,
                                                   const float (&inv_den)[2], const SlaParams& p, int lane) {
  const int t = lane & 3;
#pragma unroll
  for (int jj = 0; jj < N / 8; ++jj) {
    const int j = j0 + jj;
    const float2 bias = *reinterpret_cast<const float2*>(p.lin_bias + 8 * j + 2 * t);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      acc_o[j][2 * half] += acc_l[jj][2 * half] * inv_den[half] + bias.x;
      acc_o[j][2 * half + 1] += acc_l[jj][2 * half + 1] * inv_den[half] + bias.y;
    }
  }
}

// Epilogue of a warp's 16 rows wrow0..: lse = ln(l) + max, o_s = O / l, then
// o = o_s + linear branch, written once. The fused linear branch computes
// φ(Q) M / (φ(Q)·z + ε) + bias from the warp's Q fragments a_q, with M = S Wᵀ (of the (b, h), or of
// the query block qb: SlaParams::lin_per_q_block) loaded into sM (padded [D][D + 8], shared memory
// no longer used by the main loop). The load of M is shared by Threads threads (tid 0..Threads - 1)
// and ends in `sync()`, a barrier among all of them: every one of them must call this.
template <class Elem, int D, int Threads, class Sync>
__device__ __forceinline__ void fwd_epilogue(const SlaParams& p, float (&acc_o)[D / 8][4], const float (&row_max)[2],
                                             const float (&row_sum)[2], const uint32_t (&a_q)[D / 16][4], Elem* sM,
                                             int b, int h, int qb, int wrow0, int tid, int lane, Sync&& sync) {
  constexpr int kS = kSmemStride<D>;
  const int bh = b * p.heads + h;
  fwd_normalise<D>(p, acc_o, row_max, row_sum, bh, wrow0, lane);
  if (p.lin_state != nullptr) {
    const int64_t state = linear_state_index(p, bh, qb);
    load_tile_async<D, D, Threads>(sM, static_cast<const Elem*>(p.lin_state) + state * D * D, D, D, tid);
    cp_async_commit();
    cp_async_wait<0>();
    sync();
    uint32_t a_phi[D / 16][4];  // φ(Q) (16 x D) as A fragments
    float inv_den[2];
    linear_query_side<Elem, D>(p, p.lin_z + state * D, a_q, a_phi, inv_den, lane);
    // φ(Q) M sixteen columns at a time, so that no second 16 x D accumulator is live beside O: the
    // epilogue then needs no more registers than the main loop.
#pragma unroll
    for (int jc = 0; jc < D / 16; ++jc) {
      float acc_l[2][4];
      zero(acc_l);
      mma_a_b<16, D>(acc_l, a_phi, sM + 16 * jc, kS, lane);
      add_linear_columns<D, 16>(acc_o, acc_l, 2 * jc, inv_den, p, lane);
    }
  }
  store_rows<D, Elem>(acc_o, 1.f, p.o, TensorRef{}, b, h, wrow0, p.seqlen, lane);  // o, written once
}

}  // namespace sla::kernels
