// Compile-time tile configuration shared by the kernels and their launchers (pure functions).
#pragma once

namespace sla::kernels {

// Shared memory we plan against: the sm_80 opt-in limit (163 KB) minus headroom, so one build runs
// on A100 and H100 alike. Kernels whose double-buffered tiles exceed it fall back to one stage
// (loads then no longer overlap the math: slower, still correct).
inline constexpr int kSmemBudgetBytes = 160 * 1024;

// Bytes of a padded shared tile (see kSmemStride in warp_mma.cuh).
constexpr int smem_tile_bytes(int rows, int cols) { return rows * (cols + 8) * 2; }

// Forward: Q tile + K and V tiles per stage (the D x D linear-branch state reuses the stages
// after the main loop). 64-row query tiles then fit twice per SM.
constexpr int fwd_smem_bytes(int blkq, int blkk, int d, int stages) {
  return smem_tile_bytes(blkq, d) + stages * 2 * smem_tile_bytes(blkk, d);
}
constexpr int fwd_stages(int blkq, int blkk, int d) {
  return fwd_smem_bytes(blkq, blkk, d, 2) <= kSmemBudgetBytes ? 2 : 1;
}

// dq pass: Q and dO tiles (resident) + K and V tiles per stage.
constexpr int bwd_dq_smem_bytes(int blkq, int blkk, int d, int stages) {
  return 2 * smem_tile_bytes(blkq, d) + stages * 2 * smem_tile_bytes(blkk, d);
}
constexpr int bwd_dq_stages(int blkq, int blkk, int d) {
  return bwd_dq_smem_bytes(blkq, blkk, d, 2) <= kSmemBudgetBytes ? 2 : 1;
}

// dk/dv pass: K and V tiles (resident) + Q, dO tiles and lse, delta rows per stage.
constexpr int bwd_dkdv_smem_bytes(int blkq, int blkk, int d, int stages) {
  return 2 * smem_tile_bytes(blkk, d) + stages * (2 * smem_tile_bytes(blkq, d) + 2 * blkq * 4);
}
constexpr int bwd_dkdv_stages(int blkq, int blkk, int d) {
  return bwd_dkdv_smem_bytes(blkq, blkk, d, 2) <= kSmemBudgetBytes ? 2 : 1;
}

// Sub-tile width of the backward inner products: the register budget (dQ or dK+dV accumulators
// plus two score tiles per warp) allows 64 columns at D = 64 but only 32 at D = 128 without spills.
constexpr int bwd_sub_tile(int blk, int d) {
  const int cap = d == 128 ? 32 : 64;
  return blk < cap ? blk : cap;
}

}  // namespace sla::kernels
