// The SLA definition (sla-algorithm.md sections 2 and 3) evaluated with explicit loops in double:
// an oracle independent of the LibTorch reference (no tensor ops beyond element access).
#pragma once

#include "sla/sla_config.h"

#include <ATen/ATen.h>

#include <vector>

namespace sla::brute {

// Selected key blocks per (b, h, query block), ascending; same layout as BlockMap::lut.
std::vector<std::vector<std::vector<std::vector<int64_t>>>> block_lut(const at::Tensor& q, const at::Tensor& k,
                                                                      const SlaConfig& cfg);

// o = o_s + proj_l(o_l) as a float64 (B, H, L, D) tensor. scale <= 0 means D^-1/2.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& proj_w,
                     const at::Tensor& proj_b, const SlaConfig& cfg, double scale = 0.0);

}  // namespace sla::brute
