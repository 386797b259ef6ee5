// Forward on Hopper, warp-specialised (FlashAttention-3's structure): tiles of 128 query rows, one
// producer warpgroup and two consumer warpgroups of 64 rows each. The producer's first thread
// issues TMA loads of Q and of the K/V blocks the LUT names into a ring of kStages stages, each
// guarded by two mbarriers (full: the stage's bytes have landed; empty: every consumer warp is done
// with it); the producer keeps few registers, the consumers take the rest (setmaxnreg). Each
// consumer warpgroup runs sla_fwd_sm90_kernel.cuh's loop (S = Q Kᵀ of block j issued ahead of
// O += P V of block j - 1, the softmax of j overlapping the latter) without a CTA-wide barrier per
// block: the warpgroups drift apart, so one's softmax overlaps the other's products. Query blocks
// of 128 rows: both warpgroups walk one LUT row and share each stage, which holds two of its K/V
// blocks side by side (a step's score tile is 64 x 128; an odd LUT row's last step repeats its
// last block, masked). Query blocks of 64: each warpgroup is one query block with its own LUT
// row, and a stage holds one K/V block for each. Epilogue as sla_fwd_sm90_kernel.cuh's, except
// that the linear state M comes through the ring as a tile's last entry (the producer loads it
// while the consumers finish their last blocks; with two query blocks of variant complement, two
// states, the second in the stage's V tiles), z with it (into a buffer of its own), and φ(Q) M
// runs on wgmma; with one state, o leaves through that stage's V tiles by TMA stores (a
// warpgroup's 64 rows each), else from registers.
// The kernel is persistent: one CTA per SM walks tiles, the ring and Q's barriers run on across
// them, and the producer loads the next tile's Q and blocks while the consumers run the epilogue.
#pragma once

#include "fwd_trace.cuh"
#include "sla_fwd_common.cuh"
#include "sla_params.h"
#include "sla_sm90_steps.cuh"
#include "tma.cuh"
#include "wgmma.cuh"

#include <cmath>

namespace sla::kernels {

// The tensor maps of q, k, v, o (sla_fwd_sm90.cu): boxes of 64 columns x 128 rows (q) or 64 rows
// (k, v, o: o is stored a warpgroup's 64 rows at a time); m: the linear states, boxes of 64 columns
// x D rows (encoded only where the linear branch is on).
struct FwdTensorMaps {
  CUtensorMap q, k, v, m, o;
};

template <class Elem, int D, int BQ>
struct FwdWsSm90Traits {
  static constexpr int kBlockK = 64;
  static constexpr int kRows = 128;                          // query rows per CTA
  static constexpr int kQBlocks = kRows / BQ;                // query blocks per CTA (LUT rows)
  static constexpr int kConsumers = 2;                       // warpgroups of 64 query rows
  static constexpr int kThreads = 128 * (kConsumers + 1);    // + the producer warpgroup
  // Key blocks per step and stage (of each query block): two while the stages still hold three.
  static constexpr int kStepBlocks = kQBlocks == 1 ? 2 : 1;
  static constexpr int kStepKeys = kStepBlocks * kBlockK;
  static constexpr int kQBytes = kRows * D * 2;              // sw128 [D / 64][kRows][64]
  static constexpr int kKBytes = kStepKeys * D * 2;          // sw128 [D / 64][kStepKeys][64]
  static constexpr int kStageBytes = kQBlocks * 2 * kKBytes; // K and V of each query block
  static constexpr int kZBytes = kConsumers * D * 4;  // z of each consumer warpgroup's query block
  // As many stages as fit beside the alignment slack, z and the barriers: 3 at D 128.
  static constexpr int kStages = (227 * 1024 - 1024 - 256 - kQBytes - kZBytes) / kStageBytes;
  static constexpr int kBarrierBytes = 8 * (2 * kStages + 2);  // full, empty; Q's full and empty
  static constexpr int kSmemBytes = 1024 + kQBytes + kStages * kStageBytes + kZBytes + kBarrierBytes;
  // Registers per thread after the reallocation (multiples of 8; the sum over the CTA stays within
  // the 64K the launch took: 168 per thread at 384 threads).
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = 240;
};

template <class Elem, int D, int BQ>
__global__ void __launch_bounds__(FwdWsSm90Traits<Elem, D, BQ>::kThreads, 1)
    sla_fwd_ws_sm90_kernel(const __grid_constant__ SlaParams p, const __grid_constant__ FwdTensorMaps maps) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Tr = FwdWsSm90Traits<Elem, D, BQ>;
  constexpr int BK = Tr::kBlockK, NB = Tr::kStepBlocks, BN = Tr::kStepKeys;
  constexpr int kS = Tr::kStages;
  static_assert(D == 64 || D == 128, "wgmma widths 64 and 128 for O");
  static_assert(BQ == 64 || BQ == 128, "one or two query blocks per CTA");
  static_assert(kS >= 3, "a stage in use, the previous one's V, one in flight");
  static_assert(Tr::kSmemBytes <= 227 * 1024, "shared memory per CTA");
  static_assert(Tr::kQBytes % 1024 == 0 && Tr::kKBytes % 1024 == 0, "every panel 1024-byte aligned");
  static_assert(Tr::kQBlocks * BN >= D, "M (D x D) fits a stage's K tiles (and a second one its V tiles)");

  extern __shared__ __align__(16) unsigned char smem_raw[];
  unsigned char* smem = align_sw128(smem_raw);
  constexpr int kRows = Tr::kRows, kQB = Tr::kQBlocks;
  Elem* sQ = reinterpret_cast<Elem*>(smem);  // sw128 [D / 64][kRows][64]
  Elem* sK = sQ + kRows * D;                  // [kS][kQB] x sw128 [D / 64][BN][64]
  Elem* sV = sK + kS * kQB * BN * D;          // [kS][kQB] x sw128 [D / 64][BN][64]
  float* sZ = reinterpret_cast<float*>(sV + kS * kQB * BN * D);  // [kConsumers][D]: z of each state
  uint64_t* full = reinterpret_cast<uint64_t*>(sZ + Tr::kConsumers * D);  // [kS]
  uint64_t* empty = full + kS;                                      // [kS]
  uint64_t* q_full = empty + kS;
  uint64_t* q_empty = q_full + 1;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int n = p.blocks_per_row;
  const int steps = (n + NB - 1) / NB;
  const bool linear = p.lin_state != nullptr;
  const int entries = steps + (linear ? 1 : 0);  // ring entries per tile: the blocks' steps, then M
  // Tiles (kRows query rows of one (b, h)) in the order of a (x, h, b) grid; this CTA takes
  // blockIdx.x, + gridDim.x, ... (the launcher's grid is persistent: at most one CTA per SM).
  const int nx = (p.num_q_blocks + kQB - 1) / kQB;
  const int tiles = nx * p.heads * p.batch;
  struct Tile {
    int x, h, b, bh, row0;
  };
  auto tile_at = [&](int tile) {
    Tile tl;
    tl.x = tile % nx;
    tl.h = (tile / nx) % p.heads;
    tl.b = tile / (nx * p.heads);
    tl.bh = tl.b * p.heads + tl.h;
    tl.row0 = tl.x * kRows;
    return tl;
  };
  // Query block j of a tile (its LUT row and linear state); past the last one (an odd count of
  // 64-row blocks) it repeats the last block's work, and its rows, past L, are never written.
  auto q_block = [&](const Tile& tl, int j) { return min(tl.x * kQB + j, p.num_q_blocks - 1); };
  auto lut_row = [&](const Tile& tl, int j) {
    return p.lut + (int64_t(tl.bh) * p.num_q_blocks + q_block(tl, j)) * n;  // [n]
  };
  auto k_tile = [&](int stage, int j) { return sK + (stage * kQB + j) * BN * D; };
  auto v_tile = [&](int stage, int j) { return sV + (stage * kQB + j) * BN * D; };
  // M of the tile's query block j after its walk (sw128 [D / 64][D][64]): the stage's K tiles, the
  // second one's in its V tiles. States per tile: one, or one per query block (complement).
  auto m_tile = [&](int stage, int j) { return j == 0 ? k_tile(stage, 0) : v_tile(stage, 0); };
  const int states = kQB == 2 && p.lin_per_q_block ? 2 : 1;

  if (tid == 0) mbar_init(q_empty, Tr::kConsumers * 4);  // fenced and awaited by init_ring_barriers
  init_ring_barriers(full, empty, kS, 1, Tr::kConsumers * 4, q_full);  // one producer thread; all consumer warps

  if (warp < 4) {  // the producer warpgroup
    warpgroup_reg_dealloc<Tr::kProducerRegs>();
    if (tid == 0) {
      tma_prefetch_map(&maps.k);
      tma_prefetch_map(&maps.v);
      int i = 0;  // this CTA's tiles so far
      for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x, ++i) {
        const Tile tl = tile_at(tile);
        const int e0 = i * entries;  // ring entries of the earlier tiles
        SLA_TRACE(0, i, kTileStart);
        mbar_wait(q_empty, (i & 1) ^ 1);  // the previous tile's Q is read
        SLA_TRACE(0, i, kQReady);
        mbar_arrive_expect_tx(q_full, Tr::kQBytes);
#pragma unroll
        for (int c = 0; c < D / 64; ++c) {
          tma_load_4d(sQ + c * kRows * 64, &maps.q, c * 64, tl.row0, tl.h, tl.b, q_full);
        }
        const int32_t* luts[kQB];
#pragma unroll
        for (int j = 0; j < kQB; ++j) luts[j] = lut_row(tl, j);
        for (int step = 0; step < steps; ++step) {
          const int e = e0 + step, stage = e % kS;
          mbar_wait(&empty[stage], ((e / kS) & 1) ^ 1);  // its previous blocks are consumed
          if (step == 0) SLA_TRACE(0, i, kStage0);
          mbar_arrive_expect_tx(&full[stage], Tr::kStageBytes);
          load_lut_step<kQB, NB, BK, D>(k_tile(stage, 0), v_tile(stage, 0), luts, step, n, &maps.k, &maps.v, tl.h,
                                        tl.b, &full[stage]);
        }
        SLA_TRACE(0, i, kProducerStepsIssued);
        if (entries > steps) {  // the last entry: M (panels of D rows) and z of each distinct state
          const int e = e0 + steps, stage = e % kS;
          mbar_wait(&empty[stage], ((e / kS) & 1) ^ 1);
          if (i > 0 && steps < kS - 1) {
            // z's buffer holds one tile's: the consumers are done with the previous tile's once
            // they release its M, a release not yet awaited at so few steps per tile
            mbar_wait(&empty[(e0 - 1) % kS], ((e0 - 1) / kS) & 1);
          }
          mbar_arrive_expect_tx(&full[stage], states * (D * D * 2 + D * 4));
          for (int j = 0; j < states; ++j) {
            const int state = int(linear_state_index(p, tl.bh, q_block(tl, j)));
#pragma unroll
            for (int c = 0; c < D / 64; ++c) {
              tma_load_4d(m_tile(stage, j) + c * D * 64, &maps.m, c * 64, 0, state, 0, &full[stage]);
            }
            bulk_load(sZ + j * D, p.lin_z + int64_t(state) * D, D * 4, &full[stage]);
          }
          SLA_TRACE(0, i, kProducerMIssued);
        }
      }
    }
    return;
  }

  warpgroup_reg_alloc<Tr::kConsumerRegs>();
  const int cwarp = warp - 4, wg = cwarp / 4, t = lane & 3;  // cwarp: 0.. in the consumers
  const int own = kQB == 1 ? 0 : wg;  // this warpgroup's query block in the tile
  const uint64_t desc_q = sw128_desc(sQ + wg * 64 * 64, 0);
  auto desc_k = [&](int stage) { return sw128_desc(k_tile(stage, own), 0); };
  auto desc_v = [&](int stage) { return sw128_desc(v_tile(stage, own), BN * 64 * 2); };
  const bool o_store_thread = cwarp % 4 == 0 && lane == 0;  // issues its warpgroup's TMA stores of o
  const int trace_role = o_store_thread ? 1 + wg : -1;     // SLA_FWD_TRACE builds only

  // Tile `tile`, this CTA's i-th: the walk, then the epilogue.
  auto consume = [&](int tile, int i) {
    const int e0 = i * entries;
    const int32_t* lut = lut_row(tile_at(tile), own);
    float acc_o[D / 8][4];  // O (this warp's 16 rows x D), unnormalised
    zero(acc_o);
    float row_max[2] = {-INFINITY, -INFINITY};  // rows g and g + 8, in log2 units
    float row_sum[2] = {0.f, 0.f};              // this lane's share of the softmax denominators
    uint32_t a_p[BN / 16][4];                   // P of the previous step: A of its O += P V

    if (trace_role >= 0) SLA_TRACE(trace_role, i, kTileStart);
    mbar_wait(q_full, i & 1);
    if (trace_role >= 0) SLA_TRACE(trace_role, i, kQReady);
    for (int step = 0; step < steps; ++step) {
      const int e = e0 + step, stage = e % kS, prev = (e + kS - 1) % kS;
      int key0[NB];  // past the row: seqlen, a padding block masked whole
#pragma unroll
      for (int bi = 0; bi < NB; ++bi) key0[bi] = step * NB + bi < n ? lut[step * NB + bi] * BK : p.seqlen;
      mbar_wait(&full[stage], (e / kS) & 1);
      if ((step == 0 || step == 2) && trace_role >= 0) SLA_TRACE(trace_role, i, step == 0 ? kStage0 : kStage2);
      fwd_sm90_step<Elem, D, BK, NB>(acc_o, row_max, row_sum, a_p, desc_q, kRows, desc_k(stage), desc_v(prev),
                                     step > 0, key0, p, t);
      if (step > 0 && lane == 0) mbar_arrive(&empty[prev]);  // this warp is done with the previous step's blocks
      if (step < 3 && trace_role >= 0) {
        SLA_TRACE(trace_role, i, step == 0 ? kStep0Done : step == 1 ? kStep1Done : kStep2Done);
      }
    }
    if (trace_role >= 0) SLA_TRACE(trace_role, i, kStepsDone);
    const int last = (e0 + steps - 1) % kS;
    wgmma_rs_wait<Elem, D, BN>(acc_o, a_p, desc_v(last));  // the last step's O += P V
    if (trace_role >= 0) SLA_TRACE(trace_role, i, kLastPvDone);
    uint32_t a_q[D / 16][4];  // this warp's Q rows as A fragments, for φ(Q) of the linear branch
    if (linear) load_a_frags_sw128<D>(a_q, sQ, kRows, cwarp * 16, lane);
    if (lane == 0) mbar_arrive(q_empty);  // this warp is done with Q (its products have completed)
    const Tile tl = tile_at(tile);  // recomputed: not kept live through the loop
    const int wrow0 = tl.row0 + cwarp * 16;
    if (lane == 0) mbar_arrive(&empty[last]);  // and with the last step's blocks
    fwd_normalise<D>(p, acc_o, row_max, row_sum, tl.bh, wrow0, lane);
    if (trace_role >= 0) SLA_TRACE(trace_role, i, kNormalised);
    if (linear) {
      uint32_t a_phi[D / 16][4];  // φ(Q) (16 x D) as A fragments
      float inv_den[2];
      const int e = e0 + steps, stage = e % kS;
      mbar_wait(&full[stage], (e / kS) & 1);  // M and z have landed
      if (trace_role >= 0) SLA_TRACE(trace_role, i, kMReady);
      linear_query_side<Elem, D>(p, sZ + (states == 2 ? own : 0) * D, a_q, a_phi, inv_den, lane);
      if (trace_role >= 0) SLA_TRACE(trace_role, i, kPhiDone);
      const Elem* m = m_tile(stage, states == 2 ? own : 0);  // MN-major, as V: panels of 64 columns
      // φ(Q) M one 64-column panel at a time: a 16 x 64 accumulator beside O, not a second 16 x D.
#pragma unroll
      for (int c = 0; c < D / 64; ++c) {
        float acc_l[8][4];
        zero(acc_l);
        wgmma_rs_wait<Elem, 64, D>(acc_l, a_phi, sw128_desc(m + c * D * 64, D * 64 * 2));
        add_linear_columns<D, 64>(acc_o, acc_l, 8 * c, inv_den, p, lane);
        if (trace_role >= 0) SLA_TRACE(trace_role, i, c == 0 ? kPanel0Done : kPanelsDone);
      }
      if (states == 1) {
        // o, written once: through the stage's V tiles (M fills only its K tiles) and one TMA store
        // of the warpgroup's 64 rows (rows past L are not written); the stage is released once
        // the store has read them.
        Elem* so = v_tile(stage, 0);  // sw128 [D / 64][kRows][64]
        uint32_t a_o[D / 16][4];
        c_to_a<D, Elem>(a_o, acc_o);
        store_a_frags_sw128<D>(so, kRows, cwarp * 16, a_o, lane);
        fence_proxy_async();
        named_barrier_sync(1 + wg, 128);
        if (o_store_thread) {
#pragma unroll
          for (int c = 0; c < D / 64; ++c) {
            tma_store_4d(&maps.o, so + c * kRows * 64 + wg * 64 * 64, c * 64, tl.row0 + wg * 64, tl.h, tl.b);
          }
          tma_store_commit();
          tma_store_wait<0, true>();
        }
        __syncwarp();
        if (lane == 0) mbar_arrive(&empty[stage]);  // this warp is done with M and the stage's V tiles
        if (trace_role >= 0) SLA_TRACE(trace_role, i, kStored);
        return;
      }
      if (lane == 0) mbar_arrive(&empty[stage]);  // this warp is done with M
    }
    store_rows<D, Elem>(acc_o, 1.f, p.o, TensorRef{}, tl.b, tl.h, wrow0, p.seqlen, lane);  // o, written once
    if (trace_role >= 0) SLA_TRACE(trace_role, i, kStored);
  };
  if (trace_role == 1) SLA_TRACE_CTA(false);
  if (o_store_thread) tma_prefetch_map(&maps.o);
  int i = 0;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x, ++i) consume(tile, i);
  if (o_store_thread) tma_store_wait<0, false>();  // o's stores are complete before the CTA exits
  if (trace_role == 1) SLA_TRACE_CTA(true);
#else
  __trap();  // built without sm_90a code: the launcher never selects this kernel then
#endif
}

}  // namespace sla::kernels
