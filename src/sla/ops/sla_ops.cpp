// Registers the SLA attention operators in namespace `sla`, shaped for torch.compile, AOTAutograd
// and CUDA graphs: forward and backward are separate, functional ops (no autograd inside, no host
// synchronisation), the forward returns everything the backward reads, and every output's shape,
// dtype, strides and device follow from the inputs' metadata, so that a fake implementation
// (python/sla_toolkit/ops.py, torch.library.register_fake) can state them exactly:
//
//   sla::block_map(q, k, topk, blkq, blkk) -> (lut int64 (B,H,Nq,n) ascending, mask bool (B,H,Nq,Nk)),
//       both contiguous
//   sla::attention_fwd(q, k, v, proj_w, proj_b, topk, blkq, blkk, feature_map, variant, scale)
//       -> (o, lse, lut, lin_state, lin_z, lin_s)
//   sla::attention_bwd(grad_o, q, k, v, proj_w, proj_b, o, lse, lut, lin_state, lin_z, lin_s,
//                      topk, blkq, blkk, feature_map, variant, scale) -> (dq, dk, dv, d_proj_w, d_proj_b)
//   sla::kernels_support(shape, dtype, topk, blkq, blkk) -> str: "" when the fused kernels run q, k, v
//       of this shape and dtype on a CUDA device, else why not (what the fake implementation asks)
//
// sla::attention_fwd carries its autograd formula (AttentionFunction below: o differentiable, the
// backward is sla::attention_bwd); the fakes live in Python, so torch.compile needs sla_toolkit.
//
// Two paths, chosen from metadata alone (kernels_path below):
//   kernels   (CUDA, and cuda_kernels_support): lse float32 (B*H, L), lut int32 (B*H, Nq, n), and for
//             variant all lin_state (B*H, D, D) in q's dtype, lin_z float32 (B*H, D), lin_s float32
//             (B*H, D, D) (cuda_sla_forward_saved); for complement the lin_* are empty;
//   reference (everything else, any device): the backward recomputes through autograd of the reference,
//             so lse, lut and lin_* are empty, shape (0,), dtypes as above.
// o and each gradient are laid out like at::empty_like of q (o, dq), k, v, proj_w, proj_b.
// feature_map: "softmax" | "elu" | "relu"; variant: "all" | "complement"; scale <= 0 means D^-1/2.
// Autocast never reaches inside: each path keeps its own precisions (proj_l in float32).
// Python: import sla_toolkit (fake implementations); raw: torch.ops.load_library.
#include "sla/reference.h"
#include "sla/sla_config.h"
#ifdef SLA_HAVE_CUDA_KERNELS
#include "sla/sla_kernels.h"
#endif

#include <c10/core/impl/LocalDispatchKeySet.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "op_config.h"

#include "sla/checkpoint/sla_settings.h"

#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace sla {
namespace {

using ops::make_config;

// The ops run with autocast off: a caller's autocast region must not recast the reference's
// products or the projection (the kernels' glue excludes it too).
struct NoAutocast {
  c10::impl::ExcludeDispatchKeyGuard guard{c10::autocast_dispatch_keyset};
};

#ifdef SLA_HAVE_CUDA_KERNELS
bool kernels_path(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const SlaConfig& cfg) {
  return cuda_kernels_support(q, k, v, cfg, nullptr);
}
#endif

// x laid out like at::empty_like(like) (dtype and device of x): the layout the fake states.
// A copy only where the computation produced another one (e.g. a query the kernels had to copy).
at::Tensor laid_out_like(const at::Tensor& like, const at::Tensor& x) {
  const at::Tensor want = at::empty_like(like, like.options().device(at::kMeta).dtype(x.scalar_type()));
  if (x.sizes() == want.sizes() && x.strides() == want.strides()) return x;
  at::Tensor out = at::empty_like(like, x.options());
  out.copy_(x);
  return out;
}

// The state outputs of the reference path: empty, with the dtypes of the kernels' path.
at::Tensor empty_state(const at::Tensor& q, at::ScalarType dtype) { return at::empty({0}, q.options().dtype(dtype)); }

std::tuple<at::Tensor, at::Tensor> block_map_reference(const at::Tensor& q, const at::Tensor& k, double topk,
                                                       int64_t blkq, int64_t blkk) {
  const reference::BlockMap map = reference::block_map(q, k, make_config(topk, blkq, blkk, "softmax", "all"));
  return {map.lut.contiguous(), map.mask.contiguous()};
}

std::tuple<at::Tensor, at::Tensor> block_map(const at::Tensor& q, const at::Tensor& k, double topk, int64_t blkq,
                                             int64_t blkk) {
  const NoAutocast no_autocast;
#ifdef SLA_HAVE_CUDA_KERNELS
  const SlaConfig cfg = make_config(topk, blkq, blkk, "softmax", "all");
  if (kernels_path(q, k, k, cfg)) {
    const reference::BlockMap map = cuda_block_map(q, k, cfg);
    return {map.lut.contiguous(), map.mask.contiguous()};
  }
#endif
  return block_map_reference(q, k, topk, blkq, blkk);
}

using Saved = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

Saved attention_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& proj_w,
                    const at::Tensor& proj_b, double topk, int64_t blkq, int64_t blkk, std::string feature_map,
                    std::string variant, double scale) {
  const NoAutocast no_autocast;
  const SlaConfig cfg = make_config(topk, blkq, blkk, feature_map, variant);
#ifdef SLA_HAVE_CUDA_KERNELS
  if (kernels_path(q, k, v, cfg)) {
    const SlaSaved s = cuda_sla_forward_saved(q, k, v, proj_w, proj_b, cfg, scale);
    const bool all = cfg.variant == Variant::kAll;
    return {laid_out_like(q, s.o), s.lse, s.lut, all ? s.lin_state : empty_state(q, q.scalar_type()),
            all ? s.lin_z : empty_state(q, at::kFloat), all ? s.lin_s : empty_state(q, at::kFloat)};
  }
#endif
  const at::Tensor o = reference::attention(q, k, v, proj_w, proj_b, cfg, scale);
  return {laid_out_like(q, o), empty_state(q, at::kFloat), empty_state(q, at::kInt), empty_state(q, q.scalar_type()),
          empty_state(q, at::kFloat), empty_state(q, at::kFloat)};
}

// Autograd of the reference: the definition of the gradients (recomputes the forward). It runs in
// a fresh thread's dispatch state: this kernel is entered below autograd, possibly under a
// caller's TorchDispatchMode (opcheck's schema check, a profiler), and either would keep autograd
// from recording the recomputation; to them the operator is opaque anyway.
std::vector<at::Tensor> backward_reference(const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k,
                                           const at::Tensor& v, const at::Tensor& proj_w, const at::Tensor& proj_b,
                                           const SlaConfig& cfg, double scale) {
  const c10::impl::ForceDispatchKeyGuard fresh_dispatch(c10::default_included_set, c10::default_excluded_set);
  at::AutoGradMode grad_mode(true);
  std::vector<at::Tensor> inputs;
  for (const at::Tensor* t : {&q, &k, &v, &proj_w, &proj_b}) inputs.push_back(t->detach().requires_grad_(true));
  const at::Tensor o = reference::attention(inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], cfg, scale);
  return torch::autograd::grad({o}, inputs, {grad_o.to(o.scalar_type())});
}

Grads attention_bwd(const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const at::Tensor& proj_w, const at::Tensor& proj_b, const at::Tensor& o, const at::Tensor& lse,
                    const at::Tensor& lut, const at::Tensor& lin_state, const at::Tensor& lin_z,
                    const at::Tensor& lin_s, double topk, int64_t blkq, int64_t blkk, std::string feature_map,
                    std::string variant, double scale) {
  const NoAutocast no_autocast;
  const SlaConfig cfg = make_config(topk, blkq, blkk, feature_map, variant);
  std::vector<at::Tensor> g;
#ifdef SLA_HAVE_CUDA_KERNELS
  if (kernels_path(q, k, v, cfg)) {
    SlaSaved saved{o, lse, lut, {}, {}, {}};
    if (cfg.variant == Variant::kAll) {
      saved.lin_state = lin_state;
      saved.lin_z = lin_z;
      saved.lin_s = lin_s;
    }
    g = cuda_sla_backward_saved(grad_o, q, k, v, proj_w, proj_b, saved, cfg, scale);
  }
#else
  (void)o, (void)lse, (void)lut, (void)lin_state, (void)lin_z, (void)lin_s;
#endif
  if (g.empty()) g = backward_reference(grad_o, q, k, v, proj_w, proj_b, cfg, scale);
  return {laid_out_like(q, g[0]), laid_out_like(k, g[1]), laid_out_like(v, g[2]), laid_out_like(proj_w, g[3]),
          laid_out_like(proj_b, g[4])};
}

// The autograd formula of sla::attention_fwd, registered with the op (Autograd key): o is the one
// differentiable output, and the backward is sla::attention_bwd on the forward's saved outputs.
// In C++ so that an eager call pays one dispatcher round trip rather than a Python
// autograd.Function; AOTAutograd traces through it like any ATen op's formula.
class AttentionFunction : public torch::autograd::Function<AttentionFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q,
                                                const at::Tensor& k, const at::Tensor& v, const at::Tensor& proj_w,
                                                const at::Tensor& proj_b, double topk, int64_t blkq, int64_t blkk,
                                                const std::string& feature_map, const std::string& variant,
                                                double scale) {
    static const auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("sla::attention_fwd", "").typed<decltype(attention_fwd)>();
    const at::AutoDispatchBelowADInplaceOrView below_autograd;  // to the device kernel (or the fake)
    const auto [o, lse, lut, lin_state, lin_z, lin_s] =
        op.call(q, k, v, proj_w, proj_b, topk, blkq, blkk, feature_map, variant, scale);
    // o is saved as an output (no copy): modifying it in place makes the backward refuse.
    ctx->save_for_backward({q, k, v, proj_w, proj_b, o, lse, lut, lin_state, lin_z, lin_s});
    ctx->mark_non_differentiable({lse, lut, lin_state, lin_z, lin_s});
    ctx->set_materialize_grads(false);  // no zero-filled gradients for the five saved outputs
    ctx->saved_data[sla::checkpoint::kSettingTopk] = topk;
    ctx->saved_data[sla::checkpoint::kSettingBlkq] = blkq;
    ctx->saved_data[sla::checkpoint::kSettingBlkk] = blkk;
    ctx->saved_data[sla::checkpoint::kSettingFeatureMap] = feature_map;
    ctx->saved_data[sla::checkpoint::kSettingVariant] = variant;
    ctx->saved_data["scale"] = scale;
    return {o, lse, lut, lin_state, lin_z, lin_s};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    static const auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("sla::attention_bwd", "").typed<decltype(attention_bwd)>();
    if (!grads[0].defined()) return torch::autograd::variable_list(11);  // o unused: no gradients
    const auto s = ctx->get_saved_variables();
    const auto& d = ctx->saved_data;
    using namespace sla::checkpoint;  // the settings keys
    const auto [dq, dk, dv, dw, db] =
        op.call(grads[0], s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10],
                d.at(kSettingTopk).toDouble(), d.at(kSettingBlkq).toInt(), d.at(kSettingBlkk).toInt(),
                d.at(kSettingFeatureMap).toStringRef(), d.at(kSettingVariant).toStringRef(), d.at("scale").toDouble());
    return {dq, dk, dv, dw, db, {}, {}, {}, {}, {}, {}};
  }
};

Saved attention_fwd_autograd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& proj_w,
                             const at::Tensor& proj_b, double topk, int64_t blkq, int64_t blkk, std::string feature_map,
                             std::string variant, double scale) {
  const auto out = AttentionFunction::apply(q, k, v, proj_w, proj_b, topk, blkq, blkk, feature_map, variant, scale);
  return {out[0], out[1], out[2], out[3], out[4], out[5]};
}

std::string kernels_support(at::IntArrayRef shape, at::ScalarType dtype, double topk, int64_t blkq,
                            int64_t blkk) {
#ifdef SLA_HAVE_CUDA_KERNELS
  std::string why;
  const SlaConfig cfg = make_config(topk, blkq, blkk, "softmax", "all");
  return cuda_kernels_support_shape(shape, dtype, cfg, &why) ? std::string() : why;
#else
  (void)shape, (void)dtype, (void)topk, (void)blkq, (void)blkk;
  return "this build has no CUDA kernels (configured without nvcc or with SLA_WITH_CUDA=OFF)";
#endif
}

}  // namespace
}  // namespace sla

TORCH_LIBRARY(sla, m) {
  m.def("block_map(Tensor q, Tensor k, float topk, int blkq, int blkk) -> (Tensor lut, Tensor mask)");
  m.def("attention_fwd(Tensor q, Tensor k, Tensor v, Tensor proj_w, Tensor proj_b, float topk, int blkq, int blkk, "
        "str feature_map, str variant, float scale) -> (Tensor o, Tensor lse, Tensor lut, Tensor lin_state, "
        "Tensor lin_z, Tensor lin_s)");
  m.def("attention_bwd(Tensor grad_o, Tensor q, Tensor k, Tensor v, Tensor proj_w, Tensor proj_b, Tensor o, "
        "Tensor lse, Tensor lut, Tensor lin_state, Tensor lin_z, Tensor lin_s, float topk, int blkq, int blkk, "
        "str feature_map, str variant, float scale) -> (Tensor dq, Tensor dk, Tensor dv, Tensor d_proj_w, "
        "Tensor d_proj_b)");
  // No tensor arguments: one kernel for every dispatch key.
  m.def("kernels_support(int[] shape, ScalarType dtype, float topk, int blkq, int blkk) -> str",
        TORCH_FN(sla::kernels_support));
}

TORCH_LIBRARY_IMPL(sla, Autograd, m) {
  m.impl("attention_fwd", TORCH_FN(sla::attention_fwd_autograd));
}

TORCH_LIBRARY_IMPL(sla, CPU, m) {
  m.impl("block_map", TORCH_FN(sla::block_map));
  m.impl("attention_fwd", TORCH_FN(sla::attention_fwd));
  m.impl("attention_bwd", TORCH_FN(sla::attention_bwd));
}

// CUDA inputs the kernels refuse (or a build without them) run the reference on the device.
TORCH_LIBRARY_IMPL(sla, CUDA, m) {
  m.impl("block_map", TORCH_FN(sla::block_map));
  m.impl("attention_fwd", TORCH_FN(sla::attention_fwd));
  m.impl("attention_bwd", TORCH_FN(sla::attention_bwd));
}
