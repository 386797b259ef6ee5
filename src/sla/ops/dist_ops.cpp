// The distributed SLA operators (namespace `sla`, registered as a fragment of the library that
// sla_ops.cpp defines). Groups are named as torch.distributed names them (`group.group_name`):
// C++ resolves the very ProcessGroup object Python created (distributed.h).
//   sla::ulysses_attention(q, k, v, proj_w, proj_b, topk, blkq, blkk, feature_map, variant, scale,
//                          group, length=-1) -> o
//       q, k, v: this rank's sequence shard (B, H, L_r, D); o: its shard of SLA on the whole
//       sequence. Differentiable (CompositeImplicitAutograd over the exchanges' autograd and the
//       module's SLA: fused kernels where they apply, else the reference).
//   sla::all_reduce_mean_(Tensor[] tensors, group)        each tensor becomes its mean over the group
//   sla::broadcast_from_rank0_(Tensor[] tensors, group)   each tensor becomes rank 0's
//   sla::check_same_on_all_ranks(group, what, description) throws, naming both, when ranks differ
#include "op_config.h"
#include "sla/distributed.h"
#include "sla/reference.h"
#include "sla/sla_config.h"
#ifdef SLA_HAVE_CUDA_KERNELS
#include "sla/sla_kernels.h"
#endif

#include <torch/library.h>

#include <string>
#include <vector>

namespace sla {
namespace {

at::Tensor ulysses(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& proj_w,
                   const at::Tensor& proj_b, double topk, int64_t blkq, int64_t blkk, std::string feature_map,
                   std::string variant, double scale, std::string group, int64_t length) {
  const SlaConfig cfg = ops::make_config(topk, blkq, blkk, feature_map, variant);
  const AttentionFn sla = [&](const at::Tensor& hq, const at::Tensor& hk, const at::Tensor& hv) {
#ifdef SLA_HAVE_CUDA_KERNELS
    if (cuda_kernels_support(hq, hk, hv, cfg, nullptr))
      return cuda_sla_attention(hq, hk, hv, proj_w, proj_b, cfg, scale);
#endif
    return reference::attention(hq, hk, hv, proj_w, proj_b, cfg, scale);
  };
  return ulysses_attention(q, k, v, sla, resolve_process_group(group), length);
}

void all_reduce_mean_op(at::TensorList tensors, std::string group) {
  all_reduce_mean(resolve_process_group(group), tensors.vec());
}

void broadcast_op(at::TensorList tensors, std::string group) {
  broadcast_from_rank0(resolve_process_group(group), tensors.vec());
}

void check_op(std::string group, std::string what, std::string description) {
  check_same_on_all_ranks(resolve_process_group(group), what, description);
}

}  // namespace
}  // namespace sla

TORCH_LIBRARY_FRAGMENT(sla, m) {
  m.def("ulysses_attention(Tensor q, Tensor k, Tensor v, Tensor proj_w, Tensor proj_b, float topk, int blkq, "
        "int blkk, str feature_map, str variant, float scale, str group, int length=-1) -> Tensor");
  m.impl("ulysses_attention", c10::DispatchKey::CompositeImplicitAutograd, TORCH_FN(sla::ulysses));
  // Collectives on tensors (no autograd of their own) and on strings: one kernel for every backend.
  m.def("all_reduce_mean_(Tensor(a!)[] tensors, str group) -> ()", TORCH_FN(sla::all_reduce_mean_op));
  m.def("broadcast_from_rank0_(Tensor(a!)[] tensors, str group) -> ()", TORCH_FN(sla::broadcast_op));
  m.def("check_same_on_all_ranks(str group, str what, str description) -> ()", TORCH_FN(sla::check_op));
}
