// The SLA reference in LibTorch ops: the definition every kernel is tested against
// (../shared/docs/sla-algorithm.md). Works in any float dtype, float64 included, on any device,
// and is differentiable by autograd. q, k, v: (B, H, L, D), any strides.
#pragma once

#include "sla_config.h"

#include <ATen/ATen.h>

namespace sla::reference {

struct BlockMap {
  at::Tensor lut;   // int64 (B, H, Nq, n): selected key blocks per query block, ascending
  at::Tensor mask;  // bool  (B, H, Nq, Nk): 1 = selected
};

// φ applied row-wise over D (the last dimension).
at::Tensor feature_map(const at::Tensor& x, FeatureMap f);

// n = max(1, min(Nk, floor(topk * Nk))) blocks per query block (at least one, see the doc).
int64_t blocks_per_row(double topk, int64_t num_key_blocks);

BlockMap block_map(const at::Tensor& q, const at::Tensor& k, const SlaConfig& cfg);

// o = o_s + proj_l(o_l), cast to q's dtype. proj_w (D, D) and proj_b (D) are float32.
// scale <= 0 means D^-1/2.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& proj_w,
                     const at::Tensor& proj_b, const SlaConfig& cfg, double scale = 0.0);

}  // namespace sla::reference
