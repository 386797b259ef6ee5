#include "linear_branch.h"

#include "sla/kernels/linear_launch.h"
#include "sla/reference.h"
#include "sla/kernels/sla_launch.h"

#include <ATen/cuda/CUDAContext.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <tuple>

namespace sla::kernels {

namespace {

// Elements (L x D per head) of one chunk of heads in the complement's backward, 16M: about 200 MB
// of mostly float32 temporaries per chunk. Measured at 4M against 16M: on an H100 the complement
// backward 2.51 -> 2.71x at (1, 12, 32760, 128), 0.38 -> 0.42x at (1, 24, 4608, 128) (fewer launches
// where the host is the bound), peak memory 2.385 -> 2.322 GiB (bench/NOTES.md, session 12). The
// forward's states take all heads at once (its temporaries are 16-bit and smaller).
constexpr int64_t kChunkElements = int64_t(1) << 24;

using reference::feature_map;

// Rows (c, L, D) -> blocks (c, N, blk, D), zero rows appended to fill the last block.
at::Tensor to_blocks(const at::Tensor& x, int64_t blk) {
  const int64_t L = x.size(1), n = (L + blk - 1) / blk;
  return at::constant_pad_nd(x, {0, 0, 0, n * blk - L}).reshape({x.size(0), n, blk, x.size(2)});
}

// The precision of variant complement's backward in ATen: for bf16, as the kernels, GEMM operands
// rounded to bf16 (`operand`) with float32 products, sums and elementwise math (`acc`); fp16 runs
// its GEMMs in float32, since the unnormalised block sums (up to L |v|) would overflow fp16's range;
// float64 inputs (the tests' oracle of the formulas) stay float64 throughout.
struct Precision {
  at::ScalarType operand, acc;
  explicit Precision(at::ScalarType dtype)
      : operand(dtype == at::kHalf ? at::kFloat : dtype),
        acc(dtype == at::kBFloat16 || dtype == at::kHalf ? at::kFloat : dtype) {}
  // a @ b, batched over the leading dimension (3-D), operands in `operand`, result in `acc`.
  at::Tensor bmm(const at::Tensor& a, const at::Tensor& b) const {
    if (operand == acc) return at::bmm(a.to(acc), b.to(acc));
    return at::bmm(a.to(operand), b.to(operand), acc);
  }
  // a @ b for 2-D a, b, likewise.
  at::Tensor mm(const at::Tensor& a, const at::Tensor& b) const {
    if (operand == acc) return at::mm(a.to(acc), b.to(acc));
    return at::mm(a.to(operand), b.to(operand), acc);
  }
  // a @ b (3-D) with b kept at `acc`'s precision: b goes in as two operand-dtype parts, hi + lo, so
  // that only a is rounded (the block sums and φ(q) S_i, on which o_l and d proj_w rest).
  at::Tensor bmm_exact_b(const at::Tensor& a, const at::Tensor& b) const {
    if (operand == acc) return at::bmm(a.to(acc), b.to(acc));
    const at::Tensor a_op = a.to(operand), hi = b.to(operand);
    at::Tensor lo = at::empty_like(hi);
    at::sub_out(lo, b, hi);  // b − hi in `acc`, rounded to `operand`: one pass
    // The second product added in the GEMM, into the first (baddbmm with a new result would copy
    // the first product into it first).
    at::Tensor out = at::bmm(a_op, hi, acc);
    at::baddbmm_out(out, out, a_op, lo, acc);
    return out;
  }
  // aᵀ b summed over many rows (d proj_w), likewise for 2-D a (exact in `operand`: dO) and b.
  at::Tensor mm_t_exact_b(const at::Tensor& a, const at::Tensor& b) const {
    return bmm_exact_b(a.t().unsqueeze(0), b.unsqueeze(0)).squeeze(0);
  }
};

// Zeroes the rows past L of φ by blocks (c, N, blk, D): φ(0) ≠ 0 for softmax and elu, and the
// padding must not count in the block sums.
void zero_padding_rows(const at::Tensor& phi_blocks, int64_t L) {
  const at::Tensor rows = phi_blocks.view({phi_blocks.size(0), -1, phi_blocks.size(3)});
  rows.narrow(1, L, rows.size(1) - L).zero_();
}

// (c, N, rows, D) blocks as (c * N, rows, D) for bmm.
at::Tensor flat(const at::Tensor& x) { return x.reshape({-1, x.size(-2), x.size(-1)}); }

// dφ -> dx for φ = feature_map(x), elementwise on (..., D) rows.
at::Tensor feature_map_backward(const at::Tensor& x, const at::Tensor& phi, const at::Tensor& d_phi, FeatureMap f) {
  switch (f) {
    case FeatureMap::kSoftmax: return phi * (d_phi - (d_phi * phi).sum(-1, true));
    case FeatureMap::kElu: return d_phi * at::where(x > 0, at::ones_like(phi), phi);  // φ = e^x for x ≤ 0
    case FeatureMap::kRelu: return d_phi * (x > 0);
  }
  throw std::invalid_argument("sla: unknown feature map");
}

// Calls fn(b, h0, h1) over chunks of heads of at most `elements` L x D elements (at least one head).
void for_each_chunk(const at::Tensor& q, int64_t elements, const std::function<void(int64_t, int64_t, int64_t)>& fn) {
  const int64_t B = q.size(0), H = q.size(1), per_head = q.size(2) * q.size(3);
  const int64_t heads_per_chunk = std::max<int64_t>(1, elements / per_head);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h0 = 0; h0 < H; h0 += heads_per_chunk) fn(b, h0, std::min(H, h0 + heads_per_chunk));
  }
}

at::Tensor chunk_of(const at::Tensor& x, int64_t b, int64_t h0, int64_t h1) {
  return x.select(0, b).slice(0, h0, h1);
}

// Sizes of the linear-branch passes for x (B, H, L, D), splits for `pass` (linear_splits);
// q_block_tiles > 0: the query-side pass per query block, tile_q_blocks of them per row tile
// (LinearParams::q_block_tiles, tile_q_blocks).
LinearParams linear_params(const at::Tensor& x, const SlaConfig& cfg, LinearPass pass, int q_block_tiles = 0,
                           int tile_q_blocks = 1) {
  LinearParams p;
  p.q_block_tiles = q_block_tiles;
  p.tile_q_blocks = tile_q_blocks;
  p.elem = x.scalar_type() == at::kHalf ? ElemType::kFp16 : ElemType::kBf16;
  p.head_dim = int(x.size(3));
  p.batch = int(x.size(0));
  p.heads = int(x.size(1));
  p.seqlen = int(x.size(2));
  p.feature_map = int(cfg.feature_map);
  p.inv_len = float(1.0 / double(p.seqlen));
  const int64_t tiles = (x.size(2) + linear_tile_rows(p.head_dim) - 1) / linear_tile_rows(p.head_dim);
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t bh = int64_t(p.batch) * p.heads;
  p.splits = linear_splits(bh, tiles, sms, linear_resident_ctas(p, pass));
  return p;
}

// The algebra's sizes: those of pass p, with `splits` partials per (b, h) from the pass that
// wrote them.
LinearAlgebraParams algebra_params(const LinearParams& p, int splits) {
  LinearAlgebraParams a;
  a.elem = p.elem;
  a.head_dim = p.head_dim;
  a.bh = p.batch * p.heads;
  a.splits = splits;
  return a;
}

}  // namespace

FusedLinearState fused_linear_state(const at::Tensor& k, const at::Tensor& v, const at::Tensor& proj_w,
                                    const SlaConfig& cfg) {
  at::NoGradGuard no_grad;
  LinearParams p = linear_params(k, cfg, LinearPass::kState);
  const int64_t BH = int64_t(p.batch) * p.heads, D = p.head_dim;
  const auto f32 = k.options().dtype(at::kFloat);
  at::Tensor state_part = at::empty({BH, p.splits, D, D}, f32);
  at::Tensor z_part = at::empty({BH, p.splits, D}, f32);
  p.k = tensor_ref(k);
  p.v = tensor_ref(v);
  p.state_part = state_part.data_ptr<float>();
  p.z_part = z_part.data_ptr<float>();
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  run_linear_state(p, stream);
  const at::Tensor w = proj_w.to(at::kFloat).contiguous();
  FusedLinearState out;
  out.s = at::empty({BH, D, D}, f32);
  out.state = at::empty({BH, D, D}, k.options());
  out.z = at::empty({BH, D}, f32);
  out.eps = float(kLinearEps / double(p.seqlen));
  LinearAlgebraParams a = algebra_params(p, p.splits);
  a.w = w.data_ptr<float>();
  a.state_part = state_part.data_ptr<float>();
  a.z_part = z_part.data_ptr<float>();
  a.s = out.s.data_ptr<float>();
  a.m = out.state.data_ptr();
  a.z = out.z.data_ptr<float>();
  run_linear_state_algebra(a, stream);
  return out;
}

namespace {

// S_j = φ(K_j)ᵀ V_j in `dtype` and z_j = Σ φ(K_j) in float32 per key block of k, v (B, H, L, D) on
// the block-sums kernel: (B*H, Nk, D, D), (B*H, Nk, D). The kernel sums groups of min(blkk, D)
// rows; blocks of two groups (blkk 128 at D 64) are added here in float32.
std::pair<at::Tensor, at::Tensor> kernel_block_sums(const at::Tensor& k, const at::Tensor& v, const SlaConfig& cfg,
                                                    int64_t nk, at::ScalarType dtype) {
  LinearParams p = linear_params(k, cfg, LinearPass::kState);
  const int64_t bh = k.size(0) * k.size(1), D = k.size(3), rows = linear_tile_rows(int(D));
  const int64_t group = std::min<int64_t>(cfg.blkk, rows), per_block = cfg.blkk / group;
  const int64_t groups = (k.size(2) + rows - 1) / rows * (rows / group);
  const at::ScalarType out_dtype = per_block > 1 ? at::kFloat : dtype;
  at::Tensor s = at::empty({bh, groups, D, D}, k.options().dtype(out_dtype));
  at::Tensor z = at::empty({bh, groups, D}, k.options().dtype(at::kFloat));
  p.k = tensor_ref(k);
  p.v = tensor_ref(v);
  p.block_rows = int(group);
  p.block_sums_f32 = out_dtype == at::kFloat;
  p.block_sums = s.data_ptr();
  p.block_z = z.data_ptr<float>();
  run_linear_block_sums(p, at::cuda::getCurrentCUDAStream());
  const int64_t need = nk * per_block;  // groups past the last row are zero
  if (need > groups) {
    s = at::constant_pad_nd(s, {0, 0, 0, 0, 0, need - groups});
    z = at::constant_pad_nd(z, {0, 0, 0, need - groups});
  }
  s = s.narrow(1, 0, need);
  z = z.narrow(1, 0, need);
  if (per_block > 1) {
    s = s.reshape({bh, nk, per_block, D, D}).sum(2).to(dtype);
    z = z.reshape({bh, nk, per_block, D}).sum(2);
  }
  return {s, z};
}

}  // namespace

ComplementBlockSums complement_block_sums(const at::Tensor& k, const at::Tensor& v, const SlaConfig& cfg, int64_t nk,
                                          bool float32) {
  at::NoGradGuard no_grad;
  ComplementBlockSums sums;
  sums.dtype = k.scalar_type();
  const Precision prec(sums.dtype);
  const at::ScalarType out = float32 ? prec.acc : prec.operand;
  if (k.is_cuda() && (sums.dtype == at::kBFloat16 || sums.dtype == at::kHalf)) {
    std::tie(sums.s, sums.z) = kernel_block_sums(k, v, cfg, nk, out);
    return sums;
  }
  // φ(K) by key block, rounded to k's dtype once (softmax computes in float32 inside, relu is
  // exact; elu + 1 would round twice in 16 bits).
  const int64_t bh = k.size(0) * k.size(1), L = k.size(2), D = k.size(3);
  const auto rows = [&](const at::Tensor& x) { return x.reshape({bh, L, D}); };
  const at::Tensor kb = to_blocks(rows(k), cfg.blkk);  // (B*H, Nk, blkk, D)
  const bool widen = cfg.feature_map == FeatureMap::kElu;
  const at::Tensor phi = feature_map(widen ? kb.to(prec.acc) : kb, cfg.feature_map).to(sums.dtype);
  zero_padding_rows(phi, L);
  const at::Tensor vb = to_blocks(rows(v), cfg.blkk).to(prec.operand);
  sums.z = phi.sum(2, false, prec.acc);
  sums.s = prec.bmm(flat(phi.to(prec.operand)).transpose(1, 2), flat(vb)).view({bh, nk, D, D}).to(out);
  return sums;
}

FusedLinearState complement_linear_state(const ComplementBlockSums& sums, const at::Tensor& proj_w,
                                         const at::Tensor& mask, int64_t seqlen) {
  at::NoGradGuard no_grad;
  const int64_t bh = sums.s.size(0), nk = sums.s.size(1), D = sums.s.size(3), nq = mask.size(2);
  // bf16: the block products and sums on tensor cores; fp16: in float32 (the range of the sums).
  const Precision prec(sums.dtype);
  const at::ScalarType op = prec.operand;
  FusedLinearState out;
  out.eps = 0.f;
  if (sums.s.scalar_type() == prec.acc) out.s = sums.s;  // float32 S_j: the backward's d proj_w
  // Σ over the blocks not selected, float32 accumulation, / L applied before the rounding; then Wᵀ.
  const double inv_len = 1.0 / double(seqlen);
  const at::Tensor unselected = mask.reshape({bh, nq, nk}).logical_not().to(op);  // U (B*H, Nq, Nk)
  at::Tensor summed = at::empty({bh, nq, D * D}, sums.s.options().dtype(op));
  at::baddbmm_out(summed, summed, unselected, sums.s.to(op).reshape({bh, nk, D * D}), 0, inv_len);
  const at::Tensor state = at::mm(summed.view({bh * nq * D, D}), proj_w.to(op).t());
  out.state = state.to(sums.dtype).view({bh, nq, D, D});
  out.z = at::empty({bh, nq, D}, sums.z.options().dtype(prec.acc));
  at::baddbmm_out(out.z, out.z, unselected.to(prec.acc), sums.z.reshape({bh, nk, D}), 0, inv_len);
  return out;
}

FusedLinearState complement_linear_state(const at::Tensor& k, const at::Tensor& v, const at::Tensor& proj_w,
                                         const at::Tensor& mask, const SlaConfig& cfg, bool block_sums) {
  const ComplementBlockSums sums = complement_block_sums(k, v, cfg, mask.size(3), block_sums);
  return complement_linear_state(sums, proj_w, mask, k.size(2));
}

LinearQSide fused_linear_backward_q(const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& proj_b,
                                    const FusedLinearState& fused, const SlaConfig& cfg, const at::Tensor& o,
                                    const at::Tensor& delta) {
  at::NoGradGuard no_grad;
  LinearParams p = linear_params(q, cfg, LinearPass::kBwdQ);
  const int64_t BH = int64_t(p.batch) * p.heads, D = p.head_dim;
  const auto f32 = q.options().dtype(at::kFloat);
  LinearQSide out;
  out.dq = at::empty(q.sizes(), f32);
  if (!o.defined()) out.delta_lin = at::empty({BH, p.seqlen}, f32);
  const at::Tensor bias = proj_b.to(at::kFloat).contiguous();
  out.a_part = at::empty({BH, p.splits, D, D}, f32);
  out.dz_part = at::empty({BH, p.splits, D}, f32);
  out.db_part = at::empty({BH, p.splits, D}, f32);
  p.q = tensor_ref(q);
  p.d_o = tensor_ref(grad_o);
  p.m_scaled = fused.state.data_ptr();
  p.z_scaled = fused.z.data_ptr<float>();
  p.eps_scaled = fused.eps;
  p.a_part = out.a_part.data_ptr<float>();
  p.dz_part = out.dz_part.data_ptr<float>();
  p.db_part = out.db_part.data_ptr<float>();
  p.bias = bias.data_ptr<float>();
  p.o = tensor_ref(o);
  p.delta_lin = o.defined() ? delta.data_ptr<float>() : out.delta_lin.data_ptr<float>();
  p.dq_add = tensor_ref(out.dq);
  run_linear_bwd_q(p, at::cuda::getCurrentCUDAStream());
  return out;
}

LinearGrads fused_linear_backward_k(const LinearQSide& q_side, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& proj_w, const FusedLinearState& fused, const SlaConfig& cfg,
                                    bool key_pass) {
  at::NoGradGuard no_grad;
  LinearParams p = linear_params(k, cfg, LinearPass::kBwdK);
  const int64_t BH = int64_t(p.batch) * p.heads;
  const auto f32 = k.options().dtype(at::kFloat);
  LinearGrads g;

  // D x D algebra per (b, h) (LinearAlgebraParams): d proj_w, d proj_b, dS normalised, dz.
  const int64_t D = p.head_dim;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const at::Tensor w = proj_w.to(at::kFloat).contiguous();
  const at::Tensor scratch = at::empty({BH * D * D * 2 + BH * (D / 16)}, f32);  // dw_part, ds_raw, tile_max
  g.dw = at::empty({D, D}, f32);
  g.db = at::empty({D}, f32);
  const at::Tensor ds = at::empty({BH, D, D}, k.options());
  const at::Tensor ds_scale = at::empty({BH}, f32);
  const at::Tensor dz = at::empty({BH, D}, f32);
  LinearAlgebraParams a = algebra_params(p, int(q_side.a_part.size(1)));  // the q-side pass's partials
  a.w = w.data_ptr<float>();
  a.a_part = q_side.a_part.data_ptr<float>();
  a.dz_part = q_side.dz_part.data_ptr<float>();
  a.db_part = q_side.db_part.data_ptr<float>();
  a.s_in = fused.s.data_ptr<float>();
  a.dw_part = scratch.data_ptr<float>();
  a.ds_raw = a.dw_part + BH * D * D;
  a.tile_max = a.ds_raw + BH * D * D;
  a.dw = g.dw.data_ptr<float>();
  a.db = g.db.data_ptr<float>();
  a.ds = ds.data_ptr();
  a.ds_scale = ds_scale.data_ptr<float>();
  a.dz = dz.data_ptr<float>();
  run_linear_grad_algebra(a, stream);
  if (!key_pass) {
    g.ds = ds;
    g.ds_scale = ds_scale;
    g.dz = dz;
    return g;
  }

  // Key side: dk and dv (no partials).
  g.dk = at::empty(k.sizes(), f32);
  g.dv = at::empty(v.sizes(), f32);
  p.k = tensor_ref(k);
  p.v = tensor_ref(v);
  p.ds = ds.data_ptr();
  p.ds_scale = ds_scale.data_ptr<float>();
  p.dz = dz.data_ptr<float>();
  p.dk_add = tensor_ref(g.dk);
  p.dv_add = tensor_ref(g.dv);
  run_linear_bwd_k(p, stream);
  return g;
}

namespace {

// The complement backward's outputs, in `options`: dq, dk, dv and delta_lin to be written in
// full, d proj_w and d proj_b zero (sums over chunks).
LinearGrads complement_grads(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const at::TensorOptions& options) {
  const int64_t L = q.size(2), D = q.size(3);
  LinearGrads g;
  g.dq = at::empty(q.sizes(), options);
  g.dk = at::empty(k.sizes(), options);
  g.dv = at::empty(v.sizes(), options);
  g.dw = at::zeros({D, D}, options);
  g.db = at::zeros({D}, options);
  g.delta_lin = at::empty({q.size(0) * q.size(1), L}, options);
  return g;
}

// Whether the complement's query side runs on the fused pass: 16-bit CUDA inputs whose query
// blocks are whole row tiles or halves of one (blkq a multiple of D or D / 2: 64 or 128 at D =
// 128; 32, 64 or 128 at D = 64).
bool complement_fused_q_side(const at::Tensor& q, const SlaConfig& cfg) {
  const at::ScalarType dtype = q.scalar_type();
  const int64_t tile = linear_tile_rows(int(q.size(3)));
  return q.is_cuda() && (dtype == at::kBFloat16 || dtype == at::kHalf) &&
         (cfg.blkq % tile == 0 || 2 * cfg.blkq == tile);
}

// Rows per query-side partial of the fused pass: a row tile, or a query block where two share one.
int64_t fused_q_side_partial_rows(const at::Tensor& q, const SlaConfig& cfg) {
  return std::min<int64_t>(cfg.blkq, linear_tile_rows(int(q.size(3))));
}

// The query side on sla_linear_bwd_q_kernel, per query block (LinearParams::q_block_tiles,
// tile_q_blocks).
void fused_q_side(const ComplementQSideChunk& chunk, const SlaConfig& cfg) {
  const int64_t tile = linear_tile_rows(int(chunk.q.size(3)));
  TORCH_CHECK(chunk.tile_rows == fused_q_side_partial_rows(chunk.q, cfg),
              "sla: the query-side kernel's partials are per row tile or per query block");
  LinearParams p = linear_params(chunk.q, cfg, LinearPass::kBwdQ, int(std::max<int64_t>(1, cfg.blkq / tile)),
                                 int(std::max<int64_t>(1, tile / cfg.blkq)));
  p.num_q_blocks = int(chunk.state.state.size(1));
  p.q = tensor_ref(chunk.q);
  p.d_o = tensor_ref(chunk.grad_o);
  p.m_scaled = chunk.state.state.data_ptr();
  p.z_scaled = chunk.state.z.data_ptr<float>();
  p.eps_scaled = 0.f;
  p.a_part = chunk.a_tile.data_ptr<float>();
  p.dz_part = chunk.dz_tile.data_ptr<float>();
  p.db_part = chunk.db_tile.data_ptr<float>();
  p.bias = chunk.bias.data_ptr<float>();
  p.delta_lin = chunk.delta_lin.data_ptr<float>();
  p.dq_add = tensor_ref(chunk.dq);
  run_linear_bwd_q(p, at::cuda::getCurrentCUDAStream());
}

}  // namespace

// The query side's per-tile partials make the rest linear: with A_j = Σ_i U_ij a_i, the key side
// is dS_j = A_jᵀ W / L, so dφ(K_j) = (V_j Wᵀ) A_j / L + dz_j, dV_j = φ(K_j) A_jᵀ W / L, and
// d proj_w = Σ_j A_j S_j / L with S_j = φ(K_j)ᵀ V_j (float32: d proj_w's precision). The query
// side hands over a_iᵀ, so that A_jᵀ, which dS_j needs, is one GEMM's output. Without the key
// pass, dS_j L / ds_scale_j and dz_j go to the dk/dv pass instead (LinearGrads::ds).
LinearGrads complement_backward_from_q_side(const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& v, const at::Tensor& proj_w, const at::Tensor& proj_b,
                                            const at::Tensor& mask, const SlaConfig& cfg, int64_t tile_rows,
                                            const ComplementQSide& q_side, bool key_pass) {
  at::NoGradGuard no_grad;
  const at::ScalarType dtype = q.scalar_type();
  const Precision prec(dtype);
  const auto acc = q.options().dtype(prec.acc);
  const int64_t B = q.size(0), H = q.size(1), L = q.size(2), D = q.size(3);
  const int64_t nq = mask.size(2), nk = mask.size(3);
  TORCH_CHECK(cfg.blkq % tile_rows == 0, "sla: the query side's row tiles must divide blkq");
  const int64_t block_tiles = cfg.blkq / tile_rows, tiles = (L + tile_rows - 1) / tile_rows;
  const double inv_len = 1.0 / double(L);
  LinearGrads g = complement_grads(q, k, v, acc);
  if (!key_pass) {
    g.dk = g.dv = at::Tensor();
    g.ds = at::empty({B * H, nk, D, D}, q.options());
    g.ds_scale = at::empty({B * H, nk}, acc);
    g.dz = at::empty({B * H, nk, D}, acc);
  }
  const at::Tensor w = proj_w.to(prec.acc), bias = proj_b.to(prec.acc).contiguous();
  const at::Tensor w_op_t = w.to(prec.operand).t();
  for_each_chunk(q, kChunkElements, [&](int64_t b, int64_t h0, int64_t h1) {
    const int64_t c = h1 - h0;
    const auto part = [&](const at::Tensor& x) { return chunk_of(x, b, h0, h1).unsqueeze(0); };  // (1, c, ...)
    const FusedLinearState st = complement_linear_state(part(k), part(v), proj_w, part(mask), cfg, true);

    // Query side: per tile partials (tiles past the last stay 0 for the per-block sums).
    const at::Tensor a_tile = at::empty({c, nq * block_tiles, D, D}, acc);
    const at::Tensor dz_tile = at::empty({c, nq * block_tiles, D}, acc);
    const at::Tensor db_tile = at::empty({c, nq * block_tiles, D}, acc);
    if (nq * block_tiles > tiles) {
      for (const at::Tensor& t : {a_tile, dz_tile, db_tile}) t.narrow(1, tiles, nq * block_tiles - tiles).zero_();
    }
    q_side({part(q), part(grad_o), st, bias, tile_rows, a_tile, dz_tile, db_tile, part(g.dq),
            g.delta_lin.narrow(0, b * H + h0, c)});
    const auto per_block = [&](const at::Tensor& x, int64_t n) {  // (c, Nq * block_tiles, ...) -> (c, Nq, n)
      return (block_tiles == 1 ? x : x.view({c, nq, block_tiles, n}).sum(2)).view({c, nq, n});
    };
    const at::Tensor a_i_t = per_block(a_tile, D * D), dz_i = per_block(dz_tile, D);  // a_iᵀ
    g.db.add_(db_tile.sum(at::IntArrayRef{0, 1}));

    // Key side: A_jᵀ, dz_j over the query blocks that did not select j.
    const at::Tensor u_t = chunk_of(mask, b, h0, h1).logical_not().transpose(1, 2);  // (c, Nk, Nq)
    const at::Tensor a_j_t = prec.bmm_exact_b(u_t.to(prec.operand), a_i_t).view({c * nk, D, D});
    const at::Tensor dz_j = at::bmm(u_t.to(prec.acc), dz_i);                          // (c, Nk, D)
    const at::Tensor block_s = st.s.reshape({c * nk, D, D});  // S_j, float32
    {
      // Σ_j A_j S_j in groups of key blocks: each group one GEMM over its stacked A_jᵀ and S_j
      // (rows (j, d)), so that the products summed inside the GEMM need no float32 (c Nk, D, D) buffer.
      int64_t per_group = 16;
      while ((c * nk) % per_group != 0) per_group /= 2;
      const int64_t groups = c * nk / per_group;
      const at::Tensor a_g = a_j_t.view({groups, per_group * D, D}), s_g = block_s.view({groups, per_group * D, D});
      g.dw.add_(at::bmm(a_g.transpose(1, 2), s_g).sum(0), inv_len);
    }
    const at::Tensor a_jt = a_j_t.to(prec.operand);  // A_jᵀ, the GEMMs' operand
    if (!key_pass) {
      // dS_j L = A_jᵀ W as one GEMM over the stacked A_jᵀ, in q's dtype: bf16 keeps float32's range
      // (scale 1, the GEMM writes bf16 itself); elsewhere the GEMM runs wider and each block is
      // scaled by its largest element (fp16's range).
      at::Tensor ds = g.ds.narrow(0, b * H + h0, c).view({c * nk * D, D});
      const at::Tensor ds_scale = g.ds_scale.narrow(0, b * H + h0, c).view({c * nk});
      if (prec.operand == dtype && dtype != prec.acc) {
        at::mm_out(ds, a_jt.view({c * nk * D, D}), w.to(prec.operand));
        ds_scale.fill_(1.0);
      } else {
        const at::Tensor raw = prec.mm(a_jt.view({c * nk * D, D}), w).view({c * nk, D, D});
        ds_scale.copy_(raw.abs().amax(at::IntArrayRef{1, 2}).clamp_min(1e-30));
        ds.view({c * nk, D, D}).copy_(raw / ds_scale.view({c * nk, 1, 1}));
      }
      g.dz.narrow(0, b * H + h0, c).copy_(dz_j);
      return;
    }
    const at::Tensor xk = to_blocks(chunk_of(k, b, h0, h1).to(prec.acc), cfg.blkk);   // (c, Nk, blkk, D)
    const at::Tensor phi_k = feature_map(xk, cfg.feature_map);
    zero_padding_rows(phi_k, L);
    const at::Tensor phi_k_op = phi_k.to(prec.operand);
    const at::Tensor vb_op = to_blocks(chunk_of(v, b, h0, h1), cfg.blkk).to(prec.operand);
    const at::Tensor vw = at::matmul(vb_op, w_op_t);                                   // V_j Wᵀ
    const at::Tensor d_phi_k =
        prec.bmm(flat(vw), a_jt.transpose(1, 2)).view(phi_k.sizes()).mul_(inv_len).add_(dz_j.unsqueeze(2));
    const at::Tensor dv =
        prec.mm(prec.bmm(flat(phi_k_op), a_jt).view({-1, D}), w).view(phi_k.sizes()).mul_(inv_len);
    const auto unblock = [&](const at::Tensor& x) { return x.reshape({c, -1, D}).narrow(1, 0, L); };
    chunk_of(g.dk, b, h0, h1).copy_(unblock(feature_map_backward(xk, phi_k, d_phi_k, cfg.feature_map)));
    chunk_of(g.dv, b, h0, h1).copy_(unblock(dv));
  });
  return g;
}

LinearGrads linear_branch_backward(const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k,
                                   const at::Tensor& v, const at::Tensor& proj_w, const at::Tensor& proj_b,
                                   const at::Tensor& mask, const SlaConfig& cfg, bool key_pass) {
  at::NoGradGuard no_grad;
  if (complement_fused_q_side(q, cfg)) {
    return complement_backward_from_q_side(grad_o, q, k, v, proj_w, proj_b, mask, cfg, fused_q_side_partial_rows(q, cfg),
                                           [&](const ComplementQSideChunk& chunk) { fused_q_side(chunk, cfg); },
                                           key_pass);
  }
  const Precision prec(q.scalar_type());
  const auto acc = q.options().dtype(prec.acc);
  const int64_t L = q.size(2), D = q.size(3);
  LinearGrads g = complement_grads(q, k, v, acc);
  const at::Tensor delta_lin = g.delta_lin.view({q.size(0), q.size(1), L});
  const at::Tensor w = proj_w.to(acc), bias = proj_b.to(acc);
  // Per chunk, with U the (Nq, Nk) blocks not selected, rows by query block i and key block j:
  //   S_j = φ(K_j)ᵀ V_j, z_j = Σ φ(K_j); S_i = Σ_j U_ij S_j, z_i likewise;
  //   o_l = φ(q) S_i / den, den = φ(q)·z_i (0 where U's row is empty: o_l = 0 there);
  //   u = dO W / den, dden = −u·o_l; dφ(q) = u S_iᵀ + dden z_i; dS_i = φ(q)ᵀ u, dz_i = Σ dden φ(q);
  //   dS_j = Σ_i U_ij dS_i, dz_j likewise; dφ(K_j) = V_j dS_jᵀ + dz_j, dV_j = φ(K_j) dS_j;
  //   d proj_w = Σ dOᵀ o_l, d proj_b = Σ dO, delta_lin = dO·(o_l Wᵀ + b).
  for_each_chunk(q, kChunkElements, [&](int64_t b, int64_t h0, int64_t h1) {
    const int64_t c = h1 - h0;
    const at::Tensor xq = to_blocks(chunk_of(q, b, h0, h1).to(prec.acc), cfg.blkq);  // (c, Nq, blkq, D)
    const at::Tensor d_o = to_blocks(chunk_of(grad_o, b, h0, h1).to(prec.acc), cfg.blkq);  // 0 past L
    const at::Tensor xk = to_blocks(chunk_of(k, b, h0, h1).to(prec.acc), cfg.blkk);  // (c, Nk, blkk, D)
    const at::Tensor vb = to_blocks(chunk_of(v, b, h0, h1).to(prec.acc), cfg.blkk);
    const int64_t nq = xq.size(1), nk = xk.size(1);
    const at::Tensor phi_q = feature_map(xq, cfg.feature_map);
    const at::Tensor phi_k = feature_map(xk, cfg.feature_map);
    zero_padding_rows(phi_k, L);

    // The GEMMs' rounded operands, each made once.
    const at::Tensor phi_q_op = phi_q.to(prec.operand), phi_k_op = phi_k.to(prec.operand);
    const at::Tensor vb_op = vb.to(prec.operand);

    const at::Tensor unselected = chunk_of(mask, b, h0, h1).logical_not().to(prec.acc);  // U (c, Nq, Nk)
    const at::Tensor block_s = prec.bmm(flat(phi_k_op).transpose(1, 2), flat(vb_op)).view({c, nk, D * D});
    const at::Tensor block_z = phi_k.sum(2);                                           // (c, Nk, D)
    const at::Tensor s_i = prec.bmm_exact_b(unselected, block_s).view({c * nq, D, D});
    const at::Tensor z_i = at::bmm(unselected, block_z).unsqueeze(2);                  // (c, Nq, 1, D)
    const at::Tensor num = prec.bmm_exact_b(flat(phi_q_op), s_i).view(phi_q.sizes());
    const at::Tensor den = (phi_q * z_i).sum(-1, true);                                // (c, Nq, blkq, 1)
    const at::Tensor safe_den = at::where(den == 0, at::ones_like(den), den);
    const at::Tensor o_l = num / safe_den;

    const at::Tensor rows_d_o = d_o.reshape({-1, D});
    const at::Tensor d_o_w = prec.mm(rows_d_o, w).view(phi_q.sizes());                 // dO W = d o_l
    const at::Tensor u = d_o_w / safe_den, u_op = u.to(prec.operand);
    const at::Tensor d_den = -(u * o_l).sum(-1, true);
    const at::Tensor d_phi_q = prec.bmm(flat(u_op), s_i.transpose(1, 2)).view(phi_q.sizes()) + d_den * z_i;
    const at::Tensor d_s_i = prec.bmm(flat(phi_q_op).transpose(1, 2), flat(u_op)).view({c, nq, D * D});
    const at::Tensor d_z_i = (d_den * phi_q).sum(2);                                    // (c, Nq, D)
    const at::Tensor u_t = unselected.transpose(1, 2);
    const at::Tensor d_s_j = prec.bmm(u_t, d_s_i).view({c * nk, D, D});
    const at::Tensor d_z_j = at::bmm(u_t, d_z_i).unsqueeze(2);                          // (c, Nk, 1, D)
    const at::Tensor d_phi_k = prec.bmm(flat(vb_op), d_s_j.transpose(1, 2)).view(phi_k.sizes()) + d_z_j;
    const at::Tensor dv = prec.bmm(flat(phi_k_op), d_s_j).view(phi_k.sizes());

    g.dw.add_(prec.mm_t_exact_b(rows_d_o, o_l.reshape({-1, D})));
    g.db.add_(rows_d_o.sum(0));
    const at::Tensor rows = (d_o_w * o_l).sum(-1) + at::matmul(d_o, bias);           // dO·(o_l Wᵀ + b)
    chunk_of(delta_lin, b, h0, h1).copy_(rows.view({c, nq * cfg.blkq}).narrow(1, 0, L));
    const auto unblock = [&](const at::Tensor& x) { return x.reshape({c, -1, D}).narrow(1, 0, L); };
    chunk_of(g.dq, b, h0, h1).copy_(unblock(feature_map_backward(xq, phi_q, d_phi_q, cfg.feature_map)));
    chunk_of(g.dk, b, h0, h1).copy_(unblock(feature_map_backward(xk, phi_k, d_phi_k, cfg.feature_map)));
    chunk_of(g.dv, b, h0, h1).copy_(unblock(dv));
  });
  return g;
}

}  // namespace sla::kernels
