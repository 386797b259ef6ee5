// The LibTorch face of the kernels: tensor checks ("expected ..., got ..."; the kernels' own limits
// through can_implement and why_not of kernels/support.h), allocation, the params struct, the block
// map glue and the autograd Function. The kernels (sla::kernels, src/sla/kernels/) never see torch:
// this folder, src/sla/cuda/, is where torch and the kernels meet.
#include "sla/sla_kernels.h"

#include "linear_branch.h"
#include "sla/kernels/sla_launch.h"

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <sstream>

namespace sla {

namespace {

using kernels::SlaParams;
using kernels::TensorRef;
using kernels::LinearGrads;
using kernels::linear_branch_backward;

std::string shape_str(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

// The kernels read rows of 16 bytes with unit stride over D; anything else gets a copy.
at::Tensor kernel_layout(const at::Tensor& x) {
  const bool ok = x.stride(3) == 1 && x.stride(2) % 8 == 0 && reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0;
  return ok ? x : x.contiguous();
}

TensorRef ref(const at::Tensor& x) { return kernels::tensor_ref(x); }

// The kernels fix their own precisions; under autocast the ATen ops around them (variant
// complement's block sums and linear-branch backward, the block map's fallback scores) must not be recast.
struct NoAutocast {
  c10::impl::ExcludeDispatchKeyGuard guard{c10::autocast_dispatch_keyset};
};

float effective_scale(double scale, int64_t d) { return scale > 0 ? float(scale) : float(1.0 / std::sqrt(double(d))); }

// The transposed block map, which only the backward's dk/dv pass walks.
struct KeyBlockIndex {
  at::Tensor kv_count;  // int32 (B*H, Nk)
  at::Tensor kv_list;   // int32 (B*H, Nk, Nq)
};

// L, B, H beyond int range saturate, so that can_implement reports them (kTooLarge).
int clamp_int(int64_t v) { return int(std::min<int64_t>(v, std::numeric_limits<int>::max())); }

// sizes: (B, H, L, D) of q (= k = v).
SlaParams base_params(at::IntArrayRef sizes, at::ScalarType dtype, const SlaConfig& cfg, double scale) {
  SlaParams p{};
  p.elem = dtype == at::kHalf ? kernels::ElemType::kFp16 : kernels::ElemType::kBf16;
  p.head_dim = clamp_int(sizes[3]);
  p.blkq = clamp_int(cfg.blkq);
  p.blkk = clamp_int(cfg.blkk);
  p.batch = clamp_int(sizes[0]);
  p.heads = clamp_int(sizes[1]);
  p.seqlen = clamp_int(sizes[2]);
  if (p.blkq <= 0 || p.blkk <= 0) return p;  // can_implement refuses it; no division below
  p.num_q_blocks = int((sizes[2] + cfg.blkq - 1) / cfg.blkq);
  p.num_k_blocks = int((sizes[2] + cfg.blkk - 1) / cfg.blkk);
  p.blocks_per_row = int(reference::blocks_per_row(cfg.topk, p.num_k_blocks));
  p.scale = effective_scale(scale, sizes[3]);
  p.scale_log2 = p.scale * 1.4426950408889634f;
  return p;
}
SlaParams base_params(const at::Tensor& q, const SlaConfig& cfg, double scale) {
  return base_params(q.sizes(), q.scalar_type(), cfg, scale);
}

void check_status(const SlaParams& p) {
  const kernels::Status s = kernels::can_implement(p);
  TORCH_CHECK(s == kernels::Status::kSuccess, "sla kernels: ", kernels::why_not(s, p));
}

// Row counts of the blocks (the last one may be partial), float32 (N, 1).
at::Tensor block_rows(int64_t n, int64_t blk, int64_t L, const at::TensorOptions& opts) {
  return (L - at::arange(n, opts) * blk).clamp_max(blk).unsqueeze(1);
}

// Rows of key blocks up to this long are selected by the select kernel (beyond 1024 it reads a row
// from memory in each of its 32 radix passes); longer ones by ATen's topk.
constexpr int64_t kKernelSelectMaxKeyBlocks = 24576;

// The block map in the kernels' format: the LUT, int32 (B*H, Nq, n) ascending.
at::Tensor device_block_map(const at::Tensor& q, const at::Tensor& k, const SlaConfig& cfg) {
  SlaParams p = base_params(q, cfg, 0.0);
  p.q = ref(q);
  p.k = ref(k);
  check_status(p);
  const int64_t bh = int64_t(p.batch) * p.heads, nq = p.num_q_blocks, nk = p.num_k_blocks;
  const int max_blocks = int(std::max(nq, nk));
  const auto f32 = q.options().dtype(at::kFloat);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  at::Tensor sums = at::empty({2, bh, max_blocks, p.head_dim}, f32);  // block sums of q rows, k rows
  kernels::run_block_pool(p, sums.data_ptr<float>(), max_blocks, stream);
  kernels::run_smooth_k(p, sums.data_ptr<float>(), max_blocks, stream);  // k rows: smooth-k block means
  at::Tensor lut = at::empty({bh, nq, p.blocks_per_row}, q.options().dtype(at::kInt));
  p.lut = lut.data_ptr<int32_t>();
  if (nk <= kKernelSelectMaxKeyBlocks) {
    // Scores through a buffer, heads in chunks of at most 32 MB of it.
    const int64_t per_head = nq * nk * 4, chunk = std::max<int64_t>(1, (int64_t(32) << 20) / per_head);
    const at::Tensor scores = at::empty({std::min(bh, chunk), nq, nk}, f32);
    for (int64_t bh0 = 0; bh0 < bh; bh0 += chunk) {
      kernels::run_block_scores_select(p, sums.data_ptr<float>(), max_blocks, scores.data_ptr<float>(), int(bh0),
                                       int(std::min(chunk, bh - bh0)), stream);
    }
  } else {
    // Rows too long for the select kernel's radix passes over memory: top-k through ATen.
    const at::Tensor pq = sums[0].slice(1, 0, nq) / block_rows(nq, cfg.blkq, p.seqlen, f32);
    const at::Tensor pk = sums[1].slice(1, 0, nk);
    const at::Tensor score = at::bmm(pq, pk.transpose(1, 2));  // (B*H, Nq, Nk)
    lut.copy_(std::get<0>(at::sort(std::get<1>(at::topk(score, p.blocks_per_row, -1)), -1)));
  }
  return lut;
}

// kv_count, kv_list from p.lut (p sized by base_params).
KeyBlockIndex key_block_index(const SlaParams& p, const at::TensorOptions& opts) {
  const int64_t bh = int64_t(p.batch) * p.heads;
  KeyBlockIndex index;
  index.kv_count = at::empty({bh, p.num_k_blocks}, opts.dtype(at::kInt));
  index.kv_list = at::empty({bh, p.num_k_blocks, p.num_q_blocks}, opts.dtype(at::kInt));
  kernels::run_lut_transpose(p, index.kv_count.data_ptr<int32_t>(), index.kv_list.data_ptr<int32_t>(),
                             at::cuda::getCurrentCUDAStream());
  return index;
}

at::Tensor selection_mask(const at::Tensor& lut, const at::Tensor& q, int64_t nk) {
  const auto sizes = lut.sizes();
  at::Tensor mask = at::zeros({sizes[0], sizes[1], nk}, q.options().dtype(at::kBool));
  mask.scatter_(2, lut.to(at::kLong), true);
  return mask.view({q.size(0), q.size(1), sizes[1], nk});
}

// A second stream of this thread on a device and its fork and join events, made once: a stream
// and events per call cost the host more than the overlap saves at short sequences.
struct SideStream {
  at::cuda::CUDAStream stream;
  at::cuda::CUDAEvent fork, join;
};
SideStream& side_stream(c10::DeviceIndex device) {
  thread_local std::map<c10::DeviceIndex, SideStream> streams;
  auto it = streams.find(device);
  if (it == streams.end()) {
    it = streams.emplace(device, SideStream{at::cuda::getStreamFromPool(false, device), {}, {}}).first;
  }
  return it->second;
}

struct ForwardState {
  at::Tensor o, lse;
  at::Tensor lut;                    // the block map (device_block_map)
  at::Tensor mask;                   // defined for variant complement only
  kernels::FusedLinearState fused;   // defined for variant all only
};

ForwardState sla_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& proj_w,
                         const at::Tensor& proj_b, const SlaConfig& cfg, double scale) {
  ForwardState st;
  SlaParams p = base_params(q, cfg, scale);
  // The linear branch is fused into the kernel's epilogue: variant all with one state per (b, h),
  // kept for the backward; complement with one per query block, which the backward does not need.
  // The block map runs on a side stream beside the linear branch's pass over K, V (variant all's
  // state pass, complement's block sums, which need no block map): the state pass is latency-bound
  // and leaves memory bandwidth for the block map's pooling; the block sums, memory-bound too,
  // share it and still hide part of the block map. Forked from and joined into the current
  // stream by events, so that a CUDA graph capture takes both streams in. The pass over K, V is
  // queued first: the longest launch before the sparse kernel, it keeps the GPU busy while the
  // host queues the block map.
  const at::cuda::CUDAStream main = at::cuda::getCurrentCUDAStream();
  SideStream& side = side_stream(main.device_index());
  side.fork.record(main);
  side.fork.block(side.stream);
  kernels::ComplementBlockSums block_sums;
  if (cfg.variant == Variant::kAll) {
    st.fused = kernels::fused_linear_state(k, v, proj_w, cfg);
  } else {
    block_sums = kernels::complement_block_sums(k, v, cfg, p.num_k_blocks);
  }
  {
    const c10::cuda::CUDAStreamGuard on_side(side.stream);
    st.lut = device_block_map(q, k, cfg);
    if (cfg.variant == Variant::kComplement) st.mask = selection_mask(st.lut, q, p.num_k_blocks);
    side.join.record(side.stream);
  }
  side.join.block(main);
  // The allocator ties a block to the stream it was made on: the LUT and mask, made on the side
  // stream, are read on this one from now on; q and k, made on this one, were read on the side stream.
  st.lut.record_stream(main);
  if (st.mask.defined()) st.mask.record_stream(main);
  q.record_stream(side.stream);
  k.record_stream(side.stream);
  kernels::FusedLinearState complement;
  if (cfg.variant == Variant::kComplement) {
    complement = kernels::complement_linear_state(block_sums, proj_w, st.mask, q.size(2));
  }
  const kernels::FusedLinearState& lin = cfg.variant == Variant::kAll ? st.fused : complement;
  const at::Tensor bias = proj_b.to(at::kFloat).contiguous();
  p.feature_map = int(cfg.feature_map);
  p.lin_state = lin.state.data_ptr();
  p.lin_z = lin.z.data_ptr<float>();
  p.lin_bias = bias.data_ptr<float>();
  p.lin_eps = lin.eps;
  p.lin_per_q_block = cfg.variant == Variant::kComplement;
  st.o = at::empty_like(q);
  st.lse = at::empty({q.size(0) * q.size(1), q.size(2)}, q.options().dtype(at::kFloat));
  p.lut = st.lut.data_ptr<int32_t>();
  p.q = ref(q);
  p.k = ref(k);
  p.v = ref(v);
  p.o = ref(st.o);
  p.lse = st.lse.data_ptr<float>();
  check_status(p);
  kernels::run_sla_fwd(p, at::cuda::getCurrentCUDAStream());
  return st;
}

// The linear branch's key side handed to the dk/dv pass's epilogue (SlaParams::lin_ds).
void fuse_linear_key_side(SlaParams& p, const LinearGrads& lin, const SlaConfig& cfg, bool per_k_block) {
  p.feature_map = int(cfg.feature_map);
  p.lin_ds = lin.ds.data_ptr();
  p.lin_ds_scale = lin.ds_scale.data_ptr<float>();
  p.lin_dz = lin.dz.data_ptr<float>();
  p.lin_inv_len = float(1.0 / double(p.seqlen));
  p.lin_per_k_block = per_k_block;
}

std::vector<at::Tensor> sla_backward(const at::Tensor& grad_o_in, const at::Tensor& q, const at::Tensor& k,
                                     const at::Tensor& v, const at::Tensor& proj_w, const at::Tensor& proj_b,
                                     const SlaConfig& cfg, double scale, const ForwardState& st) {
  const at::Tensor grad_o = kernel_layout(grad_o_in.to(q.scalar_type()));
  at::Tensor dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v);
  at::Tensor delta = at::empty({q.size(0) * q.size(1), q.size(2)}, q.options().dtype(at::kFloat));
  SlaParams p = base_params(q, cfg, scale);
  p.lut = st.lut.data_ptr<int32_t>();
  p.q = ref(q);
  p.k = ref(k);
  p.v = ref(v);
  p.o = ref(st.o);
  p.lse = st.lse.data_ptr<float>();
  p.d_o = ref(grad_o);
  p.dq = ref(dq);
  p.dk = ref(dk);
  p.dv = ref(dv);
  p.delta = delta.data_ptr<float>();
  check_status(p);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  // The dk/dv pass's index (the forward does not need it), built just before that pass.
  KeyBlockIndex index;
  auto run_dkdv = [&] {
    index = key_block_index(p, q.options());
    p.kv_count = index.kv_count.data_ptr<int32_t>();
    p.kv_list = index.kv_list.data_ptr<int32_t>();
    kernels::run_sla_bwd(p, kernels::BwdStage::kDkDv, stream);
  };
  // The float32 dq addend is released once the dq pass is queued (the caching allocator orders the
  // reuse on this stream), so it is never alive beside the dk and dv addends.
  LinearGrads lin;
  if (st.fused.state.defined()) {
    // Variant all: the query side of the linear branch first (a long launch, which keeps the GPU
    // busy while the host queues the rest), then the sparse dq pass, then the key side.
    // It writes the sparse backward's delta too (rowsum(dO ∘ o) beside its own row sums), so the
    // dq pass needs no preprocess.
    kernels::LinearQSide q_side = kernels::fused_linear_backward_q(grad_o, q, proj_b, st.fused, cfg, st.o, delta);
    p.dq_add = ref(q_side.dq);
    p.delta_ready = true;
    kernels::run_sla_bwd(p, kernels::BwdStage::kDq, stream);
    p.delta_ready = false;
    q_side.dq.reset();
    // The key side in the dk/dv pass's epilogue where that pass is the wgmma one (no float32 dk,
    // dv addends), else as its own pass.
    const bool fuse_key_side = kernels::dkdv_fuses_linear(p);
    lin = kernels::fused_linear_backward_k(q_side, k, v, proj_w, st.fused, cfg, !fuse_key_side);
    if (fuse_key_side) fuse_linear_key_side(p, lin, cfg, false);
  } else {
    // Variant complement: the key side in the dk/dv pass's epilogue too where it can (dS, dz per
    // key block), else float32 dk, dv addends from ATen.
    lin = linear_branch_backward(grad_o, q, k, v, proj_w, proj_b, st.mask, cfg, !kernels::dkdv_fuses_linear(p));
    p.dq_add = ref(lin.dq);
    p.delta_lin = lin.delta_lin.data_ptr<float>();
    kernels::run_sla_bwd(p, kernels::BwdStage::kDq, stream);
    lin.dq.reset();
    lin.delta_lin.reset();
    if (lin.ds.defined()) fuse_linear_key_side(p, lin, cfg, true);
  }
  p.dq_add = {};
  p.delta_lin = nullptr;
  p.dk_add = ref(lin.dk);
  p.dv_add = ref(lin.dv);
  run_dkdv();
  return {dq, dk, dv, lin.dw.to(proj_w.scalar_type()), lin.db.to(proj_b.scalar_type())};
}

// Inputs in the kernels' layout (copies only where the strides demand it).
struct Inputs {
  at::Tensor q, k, v;
};
Inputs prepare(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const SlaConfig& cfg) {
  std::string why;
  TORCH_CHECK(cuda_kernels_support(q, k, v, cfg, &why), "sla kernels: ", why);
  return {kernel_layout(q), kernel_layout(k), kernel_layout(v)};
}

// FusedLinearState::eps for sequence length L (the state is divided by c = L).
float fused_eps(int64_t seqlen) { return float(kernels::kLinearEps / double(seqlen)); }

void check_proj(const at::Tensor& q, const at::Tensor& proj_w, const at::Tensor& proj_b) {
  const int64_t D = q.size(-1);
  TORCH_CHECK(proj_w.dim() == 2 && proj_w.size(0) == D && proj_w.size(1) == D,
              "sla kernels: expected proj_w of shape (D, D) = (", D, ", ", D, "), got ", proj_w.sizes());
  TORCH_CHECK(proj_b.dim() == 1 && proj_b.size(0) == D, "sla kernels: expected proj_b of shape (", D, "), got ",
              proj_b.sizes());
  TORCH_CHECK(proj_w.device() == q.device() && proj_b.device() == q.device(),
              "sla kernels: expected proj_w and proj_b on ", q.device(), ", got ", proj_w.device(), " and ",
              proj_b.device());
}

// A saved tensor handed back by a caller: the kernels read it through raw pointers, so it must be
// exactly what the forward produced (shape, dtype, device, contiguous).
void check_saved(const char* name, const at::Tensor& t, at::IntArrayRef sizes, at::ScalarType dtype,
                 const at::Tensor& q) {
  TORCH_CHECK(t.defined() && t.sizes() == sizes && t.scalar_type() == dtype && t.device() == q.device() &&
                  t.is_contiguous(),
              "sla kernels: expected saved ", name, " of shape ", sizes, ", ", c10::toString(dtype), ", contiguous on ",
              q.device(), ", got ", t.defined() ? shape_str(t) + " " + c10::toString(t.scalar_type()) : "undefined");
}

class SlaFunction : public torch::autograd::Function<SlaFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, const at::Tensor& proj_w, const at::Tensor& proj_b,
                            const SlaConfig& cfg, double scale) {
    const c10::cuda::CUDAGuard guard(q.device());
    const Inputs in = prepare(q, k, v, cfg);
    ForwardState st = sla_forward(in.q, in.k, in.v, proj_w, proj_b, cfg, scale);
    // What the node holds beyond the inputs (bench/NOTES.md counts it): o itself (saved as an
    // output, no copy; the backward's delta needs it), lse (B*H, L), the LUT, and for variant all
    // the D x D state, or for complement the mask.
    ctx->save_for_backward(
        {in.q, in.k, in.v, proj_w, proj_b, st.o, st.lse, st.lut, st.mask, st.fused.state, st.fused.z, st.fused.s});
    ctx->saved_data[sla::checkpoint::kSettingTopk] = cfg.topk;
    ctx->saved_data[sla::checkpoint::kSettingFeatureMap] = int64_t(cfg.feature_map);
    ctx->saved_data[sla::checkpoint::kSettingBlkq] = cfg.blkq;
    ctx->saved_data[sla::checkpoint::kSettingBlkk] = cfg.blkk;
    ctx->saved_data[sla::checkpoint::kSettingVariant] = int64_t(cfg.variant);
    ctx->saved_data["scale"] = scale;
    return st.o;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const NoAutocast no_autocast;
    const auto s = ctx->get_saved_variables();
    const c10::cuda::CUDAGuard guard(s[0].device());
    SlaConfig cfg;
    cfg.topk = ctx->saved_data[sla::checkpoint::kSettingTopk].toDouble();
    cfg.feature_map = FeatureMap(ctx->saved_data[sla::checkpoint::kSettingFeatureMap].toInt());
    cfg.blkq = ctx->saved_data[sla::checkpoint::kSettingBlkq].toInt();
    cfg.blkk = ctx->saved_data[sla::checkpoint::kSettingBlkk].toInt();
    cfg.variant = Variant(ctx->saved_data[sla::checkpoint::kSettingVariant].toInt());
    ForwardState st;
    st.o = s[5];
    st.lse = s[6];
    st.lut = s[7];
    st.mask = s[8];
    st.fused.state = s[9];
    st.fused.z = s[10];
    st.fused.s = s[11];
    st.fused.eps = fused_eps(s[0].size(2));
    auto g = sla_backward(grad_out[0], s[0], s[1], s[2], s[3], s[4], cfg, ctx->saved_data["scale"].toDouble(), st);
    return {g[0], g[1], g[2], g[3], g[4], at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool cuda_kernels_support(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const SlaConfig& cfg,
                          std::string* why) {
  auto fail = [&](const std::string& msg) {
    if (why != nullptr) *why = msg;
    return false;
  };
  for (const at::Tensor* t : {&q, &k, &v}) {
    if (!t->defined() || !t->is_cuda()) return fail("expected q, k, v on a CUDA device");
    if (t->dim() != 4) return fail("expected 4-d (B, H, L, D) tensors, got " + shape_str(*t));
    if (t->scalar_type() != at::kBFloat16 && t->scalar_type() != at::kHalf) {
      return fail(kernels::expected_dtypes() + ", got " + c10::toString(t->scalar_type()));
    }
  }
  if (k.sizes() != q.sizes() || v.sizes() != q.sizes()) {
    return fail("expected q, k, v of one shape (Lq = Lk), got " + shape_str(q) + ", " + shape_str(k) + ", " +
                shape_str(v));
  }
  if (k.scalar_type() != q.scalar_type() || v.scalar_type() != q.scalar_type()) {
    return fail("expected q, k, v of one dtype");
  }
  if (k.device() != q.device() || v.device() != q.device()) return fail("expected q, k, v on one device");
  return cuda_kernels_support_shape(q.sizes(), q.scalar_type(), cfg, why);
}

bool cuda_kernels_support_shape(at::IntArrayRef sizes, at::ScalarType dtype, const SlaConfig& cfg,
                                std::string* why) {
  auto fail = [&](const std::string& msg) {
    if (why != nullptr) *why = msg;
    return false;
  };
  if (sizes.size() != 4) return fail("expected 4-d (B, H, L, D) tensors, got " + c10::str(sizes));
  if (dtype != at::kBFloat16 && dtype != at::kHalf) return fail(kernels::expected_dtypes() + ", got " + c10::toString(dtype));
  // Head dim, block sizes, the dtypes this build holds, sizes: the kernels' one validator.
  const SlaParams p = base_params(sizes, dtype, cfg, 0.0);
  const kernels::Status s = kernels::can_implement(p);
  if (s != kernels::Status::kSuccess) return fail(kernels::why_not(s, p));
  return true;
}

at::Tensor cuda_sla_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& proj_w, const at::Tensor& proj_b, const SlaConfig& cfg,
                              double scale) {
  check_proj(q, proj_w, proj_b);
  const NoAutocast no_autocast;
  const bool needs_grad = at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() ||
                                                         v.requires_grad() || proj_w.requires_grad() ||
                                                         proj_b.requires_grad());
  if (!needs_grad) {  // inference: no graph, nothing kept for a backward
    const c10::cuda::CUDAGuard guard(q.device());
    const Inputs in = prepare(q, k, v, cfg);
    return sla_forward(in.q, in.k, in.v, proj_w, proj_b, cfg, scale).o;
  }
  return SlaFunction::apply(q, k, v, proj_w, proj_b, cfg, scale);
}

reference::BlockMap cuda_block_map(const at::Tensor& q, const at::Tensor& k, const SlaConfig& cfg) {
  const c10::cuda::CUDAGuard guard(q.device());
  const NoAutocast no_autocast;
  const Inputs in = prepare(q, k, k, cfg);
  const at::Tensor lut = device_block_map(in.q, in.k, cfg);
  const int64_t nk = (q.size(2) + cfg.blkk - 1) / cfg.blkk;
  const auto sizes = lut.sizes();
  return {lut.to(at::kLong).view({q.size(0), q.size(1), sizes[1], sizes[2]}), selection_mask(lut, q, nk)};
}

std::vector<at::Tensor> cuda_sla_backward(const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& v, const at::Tensor& proj_w, const at::Tensor& proj_b,
                                          const SlaConfig& cfg, double scale) {
  const c10::cuda::CUDAGuard guard(q.device());
  const NoAutocast no_autocast;
  at::NoGradGuard no_grad;
  const Inputs in = prepare(q, k, v, cfg);
  const ForwardState st = sla_forward(in.q, in.k, in.v, proj_w, proj_b, cfg, scale);
  return sla_backward(grad_o, in.q, in.k, in.v, proj_w, proj_b, cfg, scale, st);
}

SlaSaved cuda_sla_forward_saved(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const at::Tensor& proj_w, const at::Tensor& proj_b, const SlaConfig& cfg,
                                double scale) {
  check_proj(q, proj_w, proj_b);
  const c10::cuda::CUDAGuard guard(q.device());
  const NoAutocast no_autocast;
  at::NoGradGuard no_grad;
  const Inputs in = prepare(q, k, v, cfg);
  ForwardState st = sla_forward(in.q, in.k, in.v, proj_w, proj_b, cfg, scale);
  return {st.o, st.lse, st.lut, st.fused.state, st.fused.z, st.fused.s};
}

std::vector<at::Tensor> cuda_sla_backward_saved(const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v, const at::Tensor& proj_w,
                                                const at::Tensor& proj_b, const SlaSaved& saved,
                                                const SlaConfig& cfg, double scale) {
  check_proj(q, proj_w, proj_b);
  TORCH_CHECK(grad_o.sizes() == q.sizes() && grad_o.device() == q.device(), "sla kernels: expected grad_o of shape ",
              q.sizes(), " on ", q.device(), ", got ", shape_str(grad_o), " on ", grad_o.device());
  const c10::cuda::CUDAGuard guard(q.device());
  const NoAutocast no_autocast;
  at::NoGradGuard no_grad;
  const Inputs in = prepare(q, k, v, cfg);
  const SlaParams p = base_params(in.q, cfg, scale);
  const int64_t bh = int64_t(p.batch) * p.heads, d = p.head_dim;
  TORCH_CHECK(saved.o.defined() && saved.o.sizes() == q.sizes() && saved.o.scalar_type() == q.scalar_type() &&
                  saved.o.device() == q.device(),
              "sla kernels: expected saved o of q's shape, dtype and device");
  check_saved("lse", saved.lse, {bh, p.seqlen}, at::kFloat, q);
  check_saved("lut", saved.lut, {bh, p.num_q_blocks, p.blocks_per_row}, at::kInt, q);
  ForwardState st;
  st.o = kernel_layout(saved.o);
  st.lse = saved.lse;
  st.lut = saved.lut;
  if (cfg.variant == Variant::kAll) {
    check_saved("lin_state", saved.lin_state, {bh, d, d}, q.scalar_type(), q);
    check_saved("lin_z", saved.lin_z, {bh, d}, at::kFloat, q);
    check_saved("lin_s", saved.lin_s, {bh, d, d}, at::kFloat, q);
    st.fused.state = saved.lin_state;
    st.fused.z = saved.lin_z;
    st.fused.s = saved.lin_s;
    st.fused.eps = fused_eps(p.seqlen);
  } else {
    st.mask = selection_mask(saved.lut, in.q, p.num_k_blocks);
  }
  return sla_backward(grad_o, in.q, in.k, in.v, proj_w, proj_b, cfg, scale, st);
}

}  // namespace sla
