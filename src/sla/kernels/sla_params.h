// The only interface between the LibTorch glue (src/sla/cuda/) and the CUDA kernels: raw pointers,
// element strides, sizes and precomputed scales. No torch types, so the .cu files stay torch-free.
// Reset to {} and fill field by field; the kernels receive it as a __grid_constant__ parameter.
#pragma once

#include <cstdint>

namespace sla::kernels {

enum class ElemType { kBf16, kFp16 };

// A (B, H, L, D) tensor with unit stride over D: element (b, h, r, d) is at
// ptr[b * batch + h * head + r * row + d]. Covers (B, L, H, D) memory viewed as (B, H, L, D).
struct TensorRef {
  void* ptr = nullptr;
  int64_t batch = 0, head = 0, row = 0;
};

struct SlaParams {
  ElemType elem = ElemType::kBf16;
  int head_dim = 0;                 // D: 64 | 128
  int blkq = 0, blkk = 0;           // 32 | 64 | 128
  int batch = 0, heads = 0, seqlen = 0;
  int num_q_blocks = 0, num_k_blocks = 0;
  int blocks_per_row = 0;           // n: LUT entries per query block
  float scale = 0.f;                // softmax scale (D^-1/2 by default)
  float scale_log2 = 0.f;           // scale * log2(e): the kernels use exp2

  // Block map. lut: (B*H, Nq, n) ascending key-block indices. kv_count: (B*H, Nk) how many query
  // blocks selected each key block; kv_list: (B*H, Nk, Nq) those query blocks, ascending.
  const int32_t* lut = nullptr;
  const int32_t* kv_count = nullptr;
  const int32_t* kv_list = nullptr;

  // Inputs, q dtype.
  TensorRef q, k, v;
  // Forward outputs: o = o_s + the linear branch after proj_l (lin_state below), o_s the sparse
  // branch; lse float32 (B*H, L), natural log.
  TensorRef o;
  float* lse = nullptr;

  // Linear branch fused into the forward epilogue (lin_state == nullptr: off):
  //   o += φ(q) M / (φ(q)·z + ε) + bias,  M = S W_projᵀ, ε = kLinearEps (support.h);
  // a zero denominator (nothing left to attend linearly) adds the bias alone.
  // Variant all: lin_state (B*H, D, D) q dtype, row-major, M / c; lin_z (B*H, D) float32, z / c;
  // lin_eps = ε / c, with c = L so that M and z stay O(1) in 16-bit (the quotient does not depend on c).
  // lin_per_q_block (variant complement): one state per query block, lin_state (B*H, Nq, D, D),
  // lin_z (B*H, Nq, D), S and z summed over the key blocks not selected for it; lin_eps = 0.
  int feature_map = 0;              // 0 softmax, 1 elu + 1, 2 relu (sla::FeatureMap order)
  const void* lin_state = nullptr;
  const float* lin_z = nullptr;
  const float* lin_bias = nullptr;  // (D) float32
  float lin_eps = 0.f;
  bool lin_per_q_block = false;

  // Backward: d_o input; o the forward's output; delta float32 (B*H, L) = rowsum(dO ∘ o_s), written
  // by the preprocess as rowsum(dO ∘ o) − delta_lin, so that o_s is never stored: delta_lin float32
  // (B*H, L) = rowsum(dO ∘ proj_l(o_l)) from the linear branch's backward (nullptr: no linear
  // branch). dq/dk/dv outputs (q dtype) with optional float32 addends (the linear-branch
  // gradients) folded in before the single write.
  TensorRef d_o, dq, dk, dv, dq_add, dk_add, dv_add;
  const float* delta_lin = nullptr;
  float* delta = nullptr;
  bool delta_ready = false;  // delta already written (by the linear query-side pass): no preprocess

  // Variant all's key side of the linear branch fused into the dk/dv pass's epilogue instead of
  // dk_add, dv_add (lin_ds == nullptr: off; only where dkdv_fuses_linear(p), sla_launch.h):
  //   dk += φ'ᵀ(V dSᵀ + dz), dv += φ(K) dS, dS = lin_ds_scale · lin_ds · lin_inv_len,
  // lin_ds (B*H, D, D) q dtype, lin_ds_scale (B*H), lin_dz (B*H, D) float32 as LinearParams's ds,
  // ds_scale, dz; feature_map as above. lin_per_k_block (variant complement): one of each per key
  // block instead, (B*H, Nk, D, D), (B*H, Nk), (B*H, Nk, D).
  const void* lin_ds = nullptr;
  const float* lin_ds_scale = nullptr;
  const float* lin_dz = nullptr;
  float lin_inv_len = 0.f;  // 1 / L
  bool lin_per_k_block = false;
};

// The linear branch of variant all, in three passes over rows (linear_kernels.cuh). Each pass
// walks tiles of D rows, every CTA the tiles split, split + splits, ... of one (b, h); the two
// reducing passes write one float32 partial per CTA, summed afterwards in a fixed order.
//   state:  S / L and z / L, with S = φ(K)ᵀ V and z = Σ φ(K)
//           → state_part (B*H, splits, D, D), z_part (B*H, splits, D)
//   bwd q:  with t = φ(q) M', den' = φ(q)·z' + eps', dden' = −(dO·t) / den'²:
//           dq_add = φ'ᵀ(dO M'ᵀ / den' + dden' z')                           (B, H, L, D) float32
//           a_part = Σ dOᵀ φ(q) / den', dz_part = Σ dden' φ(q) / L, db_part = Σ dO
//           delta_lin = (dO·t) / den' + dO·bias = rowsum(dO ∘ proj_l(o_l))   (B*H, L) float32
//           (with o set: rowsum(dO ∘ o) − that, the sparse backward's delta, so that the
//           preprocess pass is not needed)
//   bwd k:  dk_add = φ'ᵀ(V dSᵀ + dz), dv_add = φ(K) dS                      (B, H, L, D) float32
// where M' = S W_projᵀ / L, z' = z / L, eps' = ε / L as in the forward, and dS = ds_scale · ds / L.
struct LinearParams {
  ElemType elem = ElemType::kBf16;
  int head_dim = 0, batch = 0, heads = 0, seqlen = 0;
  int feature_map = 0;  // as SlaParams
  int splits = 1;       // CTAs per (b, h) (linear_splits)
  float inv_len = 0.f;  // 1 / L

  TensorRef q, k, v, d_o;  // q dtype
  TensorRef o;             // the forward's output (bwd q, optional: see delta_lin)

  float* state_part = nullptr;
  float* z_part = nullptr;
  // Variant complement's block sums (the state pass with block_rows > 0): per group of block_rows
  // rows (a key block, or a row tile where blocks are longer), S_g = φ(K_g)ᵀ V_g in q's dtype or
  // float32 (block_sums_f32) into block_sums (B*H, groups, D, D) and z_g = Σ φ(K_g) into block_z
  // (B*H, groups, D) float32, groups = row tiles · D / block_rows; nothing divided by L.
  int block_rows = 0;
  bool block_sums_f32 = false;
  void* block_sums = nullptr;
  float* block_z = nullptr;

  const void* m_scaled = nullptr;  // M' (B*H, D, D) q dtype; per query block (B*H, Nq, D, D)
  const float* z_scaled = nullptr; // z' (B*H, D); per query block (B*H, Nq, D)
  // Variant complement's query-side pass: row tiles per query block (blkq / D, at least 1; 0 for
  // variant all) and Nq. Then the state is the tile's query block's, and a_part, dz_part, db_part
  // hold one partial per tile, (B*H, Nq * q_block_tiles, ...) (tiles past the last one left
  // alone), instead of one per split, a_part transposed (Σ φ(q)ᵀ dO / den': the key side's
  // A_jᵀ then comes out of one GEMM). tile_q_blocks 2 (blkq = D / 2, q_block_tiles 1): two query
  // blocks per tile, each warp's rows reading their block's state, one partial per block (B*H, Nq, ...).
  int q_block_tiles = 0;
  int tile_q_blocks = 1;
  int num_q_blocks = 0;
  float eps_scaled = 0.f;
  float* a_part = nullptr;
  float* dz_part = nullptr;
  float* db_part = nullptr;
  const float* bias = nullptr;  // proj_l's bias (D) float32
  float* delta_lin = nullptr;
  TensorRef dq_add;

  const void* ds = nullptr;          // dS L / ds_scale (B*H, D, D) q dtype
  const float* ds_scale = nullptr;   // (B*H)
  const float* dz = nullptr;         // (B*H, D)
  TensorRef dk_add, dv_add;
};

// The D x D algebra between the linear-branch passes (linear_algebra.cuh), per (b, h), float32
// unless noted; partials as LinearParams writes them.
//   forward:  state_part, z_part → s = S / L, m = s W_projᵀ (q dtype), z = z / L
//   backward: a_part, dz_part, db_part, s → dw = d proj_w, db = d proj_b, ds (q dtype) and
//             ds_scale with dS = ds_scale · ds (the key-side pass applies 1 / L), dz;
//             scratch dw_part, ds_raw (B*H, D, D), tile_max (B*H, D / 16).
struct LinearAlgebraParams {
  ElemType elem = ElemType::kBf16;
  int head_dim = 0;
  int bh = 0;      // B*H
  int splits = 1;  // partials per (b, h)
  const float* w = nullptr;  // W_proj (D, D), row-major

  const float* state_part = nullptr;
  const float* z_part = nullptr;
  float* s = nullptr;
  void* m = nullptr;
  float* z = nullptr;

  const float* a_part = nullptr;
  const float* dz_part = nullptr;
  const float* db_part = nullptr;
  const float* s_in = nullptr;
  float* dw_part = nullptr;
  float* ds_raw = nullptr;
  float* tile_max = nullptr;
  float* dw = nullptr;
  float* db = nullptr;
  void* ds = nullptr;
  float* ds_scale = nullptr;
  float* dz = nullptr;
};

}  // namespace sla::kernels
