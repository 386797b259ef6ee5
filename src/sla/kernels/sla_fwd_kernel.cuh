// Forward: one CTA per (query block, b, h) walks the query block's LUT with an online softmax on
// tensor cores (FlashAttention-2 style, restricted to the selected key blocks). The epilogue adds
// the linear branch after proj_l, either fused (variant all: O += φ(Q)·(S Wᵀ) / (φ(Q)·z + ε) + b,
// one D x D product per tile) or as a precomputed float32 addend, and writes o once, plus o_s
// (optional, for the backward) and lse.
#pragma once

#include "feature_map.cuh"
#include "sla_params.h"
#include "tile_config.h"
#include "warp_mma.cuh"

#include <cmath>

namespace sla::kernels {

template <class Elem, int D, int BQ, int BK>
struct FwdTraits {
  static constexpr int kWarps = BQ / 16;  // each warp owns 16 query rows
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kStages = fwd_stages(BQ, BK, D);
  static constexpr int kSmemBytes = fwd_smem_bytes(BQ, BK, D, kStages);
  static constexpr int kStride = kSmemStride<D>;
};

template <class Elem, int D, int BQ, int BK>
__global__ void __launch_bounds__(FwdTraits<Elem, D, BQ, BK>::kThreads)
    sla_fwd_kernel(const __grid_constant__ SlaParams p) {
  using Tr = FwdTraits<Elem, D, BQ, BK>;
  static_assert(D % 16 == 0 && BQ % 16 == 0 && BK % 16 == 0, "tiles are whole mma fragments");
  static_assert(Tr::kSmemBytes <= kSmemBudgetBytes, "shared-memory budget");
  static_assert(Tr::kStages * 2 * BK >= D, "the K, V stages hold M after the loop");
  constexpr int kS = Tr::kStride;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  Elem* sQ = reinterpret_cast<Elem*>(smem_raw);  // [BQ][kS]
  Elem* sK = sQ + BQ * kS;                       // [kStages][BK][kS]
  Elem* sM = sK;                                 // [D][kS] after the main loop: M = S Wᵀ of the linear branch
  Elem* sV = sK + Tr::kStages * BK * kS;         // [kStages][BK][kS]

  const int qb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int bh = b * p.heads + h;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane >> 2, t = lane & 3;
  const int row0 = qb * BQ;
  const int n = p.blocks_per_row;
  const int32_t* lut = p.lut + (int64_t(bh) * p.num_q_blocks + qb) * n;  // [n]

  const Elem* q = static_cast<const Elem*>(p.q.ptr) + b * p.q.batch + h * p.q.head;  // (L, D)
  const Elem* k = static_cast<const Elem*>(p.k.ptr) + b * p.k.batch + h * p.k.head;  // (L, D)
  const Elem* v = static_cast<const Elem*>(p.v.ptr) + b * p.v.batch + h * p.v.head;  // (L, D)

  auto issue_kv = [&](int step) {
    const int key0 = lut[step] * BK;
    const int stage = step % Tr::kStages;
    load_tile_async<BK, D, Tr::kThreads>(sK + stage * BK * kS, k + key0 * p.k.row, p.k.row, p.seqlen - key0, tid);
    load_tile_async<BK, D, Tr::kThreads>(sV + stage * BK * kS, v + key0 * p.v.row, p.v.row, p.seqlen - key0, tid);
    cp_async_commit();
  };

  load_tile_async<BQ, D, Tr::kThreads>(sQ, q + row0 * p.q.row, p.q.row, p.seqlen - row0, tid);
  const bool fused_linear = p.lin_state != nullptr;
  issue_kv(0);  // commits Q with the first K, V

  uint32_t a_q[D / 16][4];  // Q rows of this warp (16 x D) as A fragments
  float acc_o[D / 8][4];    // O (16 x D), unnormalised
  zero(acc_o);
  float row_max[2] = {-INFINITY, -INFINITY};  // rows g and g + 8, in log2 units
  float row_sum[2] = {0.f, 0.f};              // this lane's share of the softmax denominators

  for (int step = 0; step < n; ++step) {
    const bool prefetch = Tr::kStages == 2 && step + 1 < n;
    if (prefetch) issue_kv(step + 1);
    if (prefetch) {
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (step == 0) load_a_frags<D>(a_q, sQ + warp * 16 * kS, kS, lane);

    const int stage = step % Tr::kStages;
    const int key0 = lut[step] * BK;
    float acc_s[BK / 8][4];  // S = Q Kᵀ (16 x BK)
    zero(acc_s);
    mma_a_bt<BK, D>(acc_s, a_q, sK + stage * BK * kS, kS, lane);

    // Online softmax: mask keys past the end, rescale the running O and denominators.
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float mx = row_max[half];
#pragma unroll
      for (int j = 0; j < BK / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int key = key0 + 8 * j + 2 * t + e;
          float s = acc_s[j][2 * half + e] * p.scale_log2;
          s = key < p.seqlen ? s : -INFINITY;
          acc_s[j][2 * half + e] = s;
          mx = fmaxf(mx, s);
        }
      }
      mx = quad_max(mx);
      const float alpha = exp2f(row_max[half] - mx);
      row_max[half] = mx;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < BK / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float pr = exp2f(acc_s[j][2 * half + e] - mx);
          acc_s[j][2 * half + e] = pr;
          sum += pr;
        }
      }
      row_sum[half] = row_sum[half] * alpha + sum;
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        acc_o[j][2 * half] *= alpha;
        acc_o[j][2 * half + 1] *= alpha;
      }
    }

    // O += P V
    uint32_t a_p[BK / 16][4];
    c_to_a<BK, Elem>(a_p, acc_s);
    mma_a_b<D, BK>(acc_o, a_p, sV + stage * BK * kS, kS, lane);

    __syncthreads();  // this stage is refilled by a later issue_kv
    if (Tr::kStages == 1 && step + 1 < n) issue_kv(step + 1);
  }

  // Epilogue: o_s = O / l, lse = ln(l) + max.
  const int wrow0 = row0 + warp * 16;
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
#pragma unroll
  for (int j = 0; j < D / 8; ++j) {
    acc_o[j][0] *= inv_l[0];
    acc_o[j][1] *= inv_l[0];
    acc_o[j][2] *= inv_l[1];
    acc_o[j][3] *= inv_l[1];
  }
  if (p.o_s.ptr != nullptr) {
    Elem* os = static_cast<Elem*>(p.o_s.ptr) + b * p.o_s.batch + h * p.o_s.head + wrow0 * p.o_s.row;
    store_c_tile<D, Elem>(acc_o, 1.f, os, p.o_s.row, nullptr, 0, rows_valid, lane);
  }
  if (fused_linear) {
    // M goes where K and V were (the loop ended with a barrier and no copy in flight), so that the
    // main loop's shared memory holds only Q and the K, V stages.
    load_tile_async<D, D, Tr::kThreads>(sM, static_cast<const Elem*>(p.lin_state) + int64_t(bh) * D * D, D, D, tid);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    // O += φ(Q) M / (φ(Q)·z + ε) + bias, φ row-wise over D on the Q fragments still in registers.
    float den[2];
    uint32_t a_phi[D / 16][4];  // φ(Q) (16 x D) as A fragments
    feature_map_rows<D, Elem>(a_phi, den, a_q, p.feature_map, p.lin_z + int64_t(bh) * D, p.lin_eps, lane);
    // φ(Q) M sixteen columns at a time, so that no second 16 x D accumulator is live beside O: the
    // epilogue then needs no more registers than the main loop.
#pragma unroll
    for (int jc = 0; jc < D / 16; ++jc) {
      float acc_l[2][4];
      zero(acc_l);
      mma_a_b<16, D>(acc_l, a_phi, sM + 16 * jc, kS, lane);
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
        const int j = 2 * jc + jj;
        const float2 bias = *reinterpret_cast<const float2*>(p.lin_bias + 8 * j + 2 * t);
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          acc_o[j][2 * half] += acc_l[jj][2 * half] / den[half] + bias.x;
          acc_o[j][2 * half + 1] += acc_l[jj][2 * half + 1] / den[half] + bias.y;
        }
      }
    }
  }
  Elem* o = static_cast<Elem*>(p.o.ptr) + b * p.o.batch + h * p.o.head + wrow0 * p.o.row;
  const float* add = p.o_add.ptr == nullptr ? nullptr
                                            : static_cast<const float*>(p.o_add.ptr) + b * p.o_add.batch +
                                                  h * p.o_add.head + wrow0 * p.o_add.row;
  store_c_tile<D, Elem>(acc_o, 1.f, o, p.o.row, add, p.o_add.row, rows_valid, lane);
}

}  // namespace sla::kernels
