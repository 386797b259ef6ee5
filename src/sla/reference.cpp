// The SLA reference (sla-algorithm.md sections 2 and 3), written for clarity rather than speed:
// the sparse branch materialises the (Lq, Lk) scores, the complement variant the per-block
// linear states. Everything runs in the input dtype, except the proj_l projection, which runs in
// promote(q dtype, proj dtype, float32): float32 for bf16/fp16/fp32 inputs as in the kernels and
// SimpleTuner, float64 for a float64 run so the float64 oracle stays exact.
#include "reference.h"

#include "sla/kernels/support.h"  // kLinearEps

#include <ATen/core/grad_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace sla::reference {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  auto fail = [](const std::string& what) { throw std::invalid_argument("sla::reference: " + what); };
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) fail("expected q, k, v of shape (B, H, L, D)");
  if (!at::isFloatingType(q.scalar_type())) fail("expected floating-point inputs");
  if (k.scalar_type() != q.scalar_type() || v.scalar_type() != q.scalar_type()) fail("q, k, v must share one dtype");
  if (k.size(0) != q.size(0) || k.size(1) != q.size(1) || k.size(3) != q.size(3))
    fail("k must match q in B, H and D");
  if (v.sizes() != k.sizes()) fail("v must have k's shape");
  if (q.size(2) == 0 || k.size(2) == 0) fail("empty sequence");
}

// (B, H, L, D) -> (B, H, ceil(L/blk), blk, D), the last block padded with `fill` rows.
at::Tensor split_blocks(const at::Tensor& x, int64_t blk, double fill = 0.0) {
  const int64_t len = x.size(2);
  const int64_t pad = ceil_div(len, blk) * blk - len;
  at::Tensor padded = pad == 0 ? x : at::constant_pad_nd(x, {0, 0, 0, pad}, fill);
  return padded.reshape({x.size(0), x.size(1), ceil_div(len, blk), blk, x.size(3)});
}

// Mean of each block's real rows: (B, H, L, D) -> (B, H, N, D).
at::Tensor block_means(const at::Tensor& x, int64_t blk) {
  const int64_t len = x.size(2);
  const int64_t blocks = ceil_div(len, blk);
  at::Tensor rows = at::full({blocks}, static_cast<double>(blk), x.options());
  rows[blocks - 1] = static_cast<double>(len - (blocks - 1) * blk);  // partial last block
  return split_blocks(x, blk).sum(3) / rows.view({blocks, 1});
}

// Token-level mask (B, H, Lq, Lk) from the block mask (B, H, Nq, Nk).
at::Tensor token_mask(const at::Tensor& mask, int64_t blkq, int64_t blkk, int64_t lq, int64_t lk) {
  return mask.repeat_interleave(blkq, 2).repeat_interleave(blkk, 3).narrow(2, 0, lq).narrow(3, 0, lk);
}

// Sparse branch: exact softmax attention over the selected keys only.
at::Tensor sparse_branch(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& keep,
                         double scale) {
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1)) * scale;  // (B, H, Lq, Lk)
  scores = scores.masked_fill(keep.logical_not(), -std::numeric_limits<double>::infinity());
  return at::matmul(at::softmax(scores, -1), v);  // every row keeps >= 1 key, so no 0/0
}

// Linear branch, variant all: o_l = φ(q) S / (φ(q)·z + ε), S = φ(K)ᵀV, z = Σ_rows φ(K), ε = kLinearEps
// (kernels/support.h: the one definition the kernels and their glue use too).
at::Tensor linear_all(const at::Tensor& phi_q, const at::Tensor& phi_k, const at::Tensor& v) {
  const at::Tensor state = at::matmul(phi_k.transpose(-2, -1), v);  // (B, H, D, D)
  const at::Tensor z = phi_k.sum(2, /*keepdim=*/true);              // (B, H, 1, D)
  const at::Tensor denominator = (phi_q * z).sum(-1, /*keepdim=*/true) + kernels::kLinearEps;
  return at::matmul(phi_q, state) / denominator;
}

// Linear branch, variant complement: per query block i, S_i and z_i summed over the keys of the
// key blocks NOT selected for i; no epsilon; o_l = 0 where nothing is left (0/0 guarded so the
// gradient stays finite).
at::Tensor linear_complement(const at::Tensor& phi_q, const at::Tensor& phi_k, const at::Tensor& v,
                             const at::Tensor& mask, int64_t blkq, int64_t blkk) {
  // Padded rows of the last key block must contribute nothing: φ(0) is not 0 for softmax/elu.
  const at::Tensor k_blocks = split_blocks(phi_k, blkk);                    // (B, H, Nk, blkk, D)
  const at::Tensor v_blocks = split_blocks(v, blkk);                        // (B, H, Nk, blkk, D)
  const at::Tensor block_states = at::matmul(k_blocks.transpose(-2, -1), v_blocks);  // (B, H, Nk, D, D)
  const at::Tensor block_z = k_blocks.sum(3);                               // (B, H, Nk, D)
  const at::Tensor unselected = mask.logical_not().to(phi_q.scalar_type());  // (B, H, Nq, Nk)
  const at::Tensor states = at::einsum("bhij,bhjde->bhide", {unselected, block_states});  // (B, H, Nq, D, D)
  const at::Tensor z = at::matmul(unselected, block_z).unsqueeze(3);        // (B, H, Nq, 1, D)

  const int64_t lq = phi_q.size(2);
  const at::Tensor q_blocks = split_blocks(phi_q, blkq);                    // (B, H, Nq, blkq, D)
  const at::Tensor numerator = at::matmul(q_blocks, states);               // (B, H, Nq, blkq, D)
  const at::Tensor denominator = (q_blocks * z).sum(-1, /*keepdim=*/true);  // (B, H, Nq, blkq, 1)
  const at::Tensor empty = denominator == 0;
  const at::Tensor o_l = at::where(empty, at::zeros_like(numerator),
                                   numerator / at::where(empty, at::ones_like(denominator), denominator));
  return o_l.reshape({phi_q.size(0), phi_q.size(1), -1, phi_q.size(3)}).narrow(2, 0, lq);
}

}  // namespace

// φ applied row-wise over D.
at::Tensor feature_map(const at::Tensor& x, FeatureMap f) {
  switch (f) {
    case FeatureMap::kSoftmax: return at::softmax(x, -1);
    case FeatureMap::kElu: return at::elu(x) + 1;
    case FeatureMap::kRelu: return at::relu(x);
  }
  throw std::invalid_argument("sla::reference: unknown feature map");
}

int64_t blocks_per_row(double topk, int64_t num_key_blocks) {
  const auto n = static_cast<int64_t>(std::floor(topk * static_cast<double>(num_key_blocks)));
  return std::max<int64_t>(1, std::min(num_key_blocks, n));
}

BlockMap block_map(const at::Tensor& q, const at::Tensor& k, const SlaConfig& cfg) {
  // The map is discrete: no gradient flows through it.
  at::NoGradGuard no_grad;
  const at::Tensor q_d = q.detach();
  const at::Tensor k_d = k.detach();
  const at::Tensor k_smooth = k_d - k_d.mean(2, /*keepdim=*/true);  // smooth-k
  const at::Tensor pooled_q = block_means(q_d, cfg.blkq);           // (B, H, Nq, D)
  const at::Tensor pooled_k = block_means(k_smooth, cfg.blkk);      // (B, H, Nk, D)
  const at::Tensor score = at::matmul(pooled_q, pooled_k.transpose(-2, -1));  // (B, H, Nq, Nk)

  const int64_t num_key_blocks = score.size(3);
  const int64_t n = blocks_per_row(cfg.topk, num_key_blocks);
  const at::Tensor top = std::get<1>(at::topk(score, n, -1, /*largest=*/true, /*sorted=*/false));
  BlockMap map;
  map.lut = std::get<0>(at::sort(top, -1));
  map.mask = at::zeros(score.sizes(), score.options().dtype(at::kBool)).scatter_(3, map.lut, true);
  return map;
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& proj_w,
                     const at::Tensor& proj_b, const SlaConfig& cfg, double scale) {
  check_inputs(q, k, v);
  const int64_t head_dim = q.size(3);
  if (proj_w.sizes() != at::IntArrayRef{head_dim, head_dim} || proj_b.sizes() != at::IntArrayRef{head_dim})
    throw std::invalid_argument("sla::reference: proj_l must be weight (D, D) and bias (D) with D = " +
                                std::to_string(head_dim));
  if (scale <= 0) scale = 1.0 / std::sqrt(static_cast<double>(head_dim));

  const BlockMap map = block_map(q, k, cfg);
  const at::Tensor keep = token_mask(map.mask, cfg.blkq, cfg.blkk, q.size(2), k.size(2));
  const at::Tensor o_s = sparse_branch(q, k, v, keep, scale);

  // φ_q and φ_k stay separate evaluations: tie_feature_map_qk only matters for learnable maps.
  const at::Tensor phi_q = feature_map(q, cfg.feature_map);
  const at::Tensor phi_k = feature_map(k, cfg.feature_map);
  const at::Tensor o_l = cfg.variant == Variant::kAll
                             ? linear_all(phi_q, phi_k, v)
                             : linear_complement(phi_q, phi_k, v, map.mask, cfg.blkq, cfg.blkk);

  // The projection runs in (at least) float32 even under autocast.
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  const auto proj_dtype = at::promote_types(at::promote_types(q.scalar_type(), proj_w.scalar_type()), at::kFloat);
  const at::Tensor projected =
      at::linear(o_l.to(proj_dtype), proj_w.to(o_l.device(), proj_dtype), proj_b.to(o_l.device(), proj_dtype));
  return o_s + projected.to(q.scalar_type());
}

}  // namespace sla::reference
