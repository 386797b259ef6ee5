// Registers the SLA operators in namespace `sla`:
//   sla::block_map(q, k, topk, blkq, blkk) -> (lut int64 (B,H,Nq,n) ascending, mask bool (B,H,Nq,Nk))
//   sla::forward(q, k, v, proj_w, proj_b, topk, blkq, blkk, feature_map, variant, scale) -> o
//       differentiable (CompositeImplicitAutograd): the fused kernels where they apply, else the reference
//   sla::backward(grad_o, q, k, v, proj_w, proj_b, ...same options) -> (dq, dk, dv, d proj_w, d proj_b)
// feature_map: "softmax" | "elu" | "relu"; variant: "all" | "complement"; scale <= 0 means D^-1/2.
// Python: torch.ops.load_library("libsla_ops.so"); torch.ops.sla.forward(...).
#include "sla/reference.h"
#include "sla/sla_config.h"
#ifdef SLA_HAVE_CUDA_KERNELS
#include "sla/sla_kernels.h"
#endif

#include <torch/csrc/autograd/autograd.h>
#include <torch/library.h>

#include <stdexcept>
#include <string>
#include <tuple>

namespace sla {
namespace {

FeatureMap parse_feature_map(const std::string& s) {
  for (FeatureMap f : {FeatureMap::kSoftmax, FeatureMap::kElu, FeatureMap::kRelu}) {
    if (s == to_string(f)) return f;
  }
  throw std::invalid_argument("sla ops: feature_map: expected softmax, elu or relu, got '" + s + "'");
}

Variant parse_variant(const std::string& s) {
  for (Variant v : {Variant::kAll, Variant::kComplement}) {
    if (s == to_string(v)) return v;
  }
  throw std::invalid_argument("sla ops: variant: expected all or complement, got '" + s + "'");
}

SlaConfig make_config(double topk, int64_t blkq, int64_t blkk, const std::string& feature_map,
                      const std::string& variant) {
  SlaConfig cfg;
  cfg.topk = topk;
  cfg.blkq = blkq;
  cfg.blkk = blkk;
  cfg.feature_map = parse_feature_map(feature_map);
  cfg.variant = parse_variant(variant);
  return cfg;
}

bool use_kernels(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const SlaConfig& cfg) {
#ifdef SLA_HAVE_CUDA_KERNELS
  return cuda_kernels_support(q, k, v, cfg, nullptr);
#else
  return false;
#endif
}

std::tuple<at::Tensor, at::Tensor> block_map_cpu(const at::Tensor& q, const at::Tensor& k, double topk, int64_t blkq,
                                                 int64_t blkk) {
  const reference::BlockMap map = reference::block_map(q, k, make_config(topk, blkq, blkk, "softmax", "all"));
  return {map.lut, map.mask};
}

at::Tensor forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& proj_w,
                   const at::Tensor& proj_b, double topk, int64_t blkq, int64_t blkk, std::string feature_map,
                   std::string variant, double scale) {
  const SlaConfig cfg = make_config(topk, blkq, blkk, feature_map, variant);
#ifdef SLA_HAVE_CUDA_KERNELS
  if (use_kernels(q, k, v, cfg)) return cuda_sla_attention(q, k, v, proj_w, proj_b, cfg, scale);
#endif
  return reference::attention(q, k, v, proj_w, proj_b, cfg, scale);
}

using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// Autograd of the reference: the definition of the gradients.
Grads backward_reference(const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& proj_w, const at::Tensor& proj_b, const SlaConfig& cfg, double scale) {
  at::AutoGradMode grad_mode(true);
  std::vector<at::Tensor> inputs;
  for (const at::Tensor* t : {&q, &k, &v, &proj_w, &proj_b}) inputs.push_back(t->detach().requires_grad_(true));
  const at::Tensor o = reference::attention(inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], cfg, scale);
  const auto g = torch::autograd::grad({o}, inputs, {grad_o});
  return {g[0], g[1], g[2], g[3], g[4]};
}

Grads backward(const at::Tensor& grad_o, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
               const at::Tensor& proj_w, const at::Tensor& proj_b, double topk, int64_t blkq, int64_t blkk,
               std::string feature_map, std::string variant, double scale) {
  const SlaConfig cfg = make_config(topk, blkq, blkk, feature_map, variant);
#ifdef SLA_HAVE_CUDA_KERNELS
  if (use_kernels(q, k, v, cfg)) {
    const auto g = cuda_sla_backward(grad_o, q, k, v, proj_w, proj_b, cfg, scale);
    return {g[0], g[1], g[2], g[3], g[4]};
  }
#endif
  return backward_reference(grad_o, q, k, v, proj_w, proj_b, cfg, scale);
}

#ifdef SLA_HAVE_CUDA_KERNELS
std::tuple<at::Tensor, at::Tensor> block_map_cuda(const at::Tensor& q, const at::Tensor& k, double topk, int64_t blkq,
                                                  int64_t blkk) {
  const SlaConfig cfg = make_config(topk, blkq, blkk, "softmax", "all");
  if (!use_kernels(q, k, k, cfg)) return block_map_cpu(q, k, topk, blkq, blkk);
  const reference::BlockMap map = cuda_block_map(q, k, cfg);
  return {map.lut, map.mask};
}
#endif

}  // namespace
}  // namespace sla

TORCH_LIBRARY(sla, m) {
  m.def("block_map(Tensor q, Tensor k, float topk, int blkq, int blkk) -> (Tensor lut, Tensor mask)");
  m.def("forward(Tensor q, Tensor k, Tensor v, Tensor proj_w, Tensor proj_b, float topk, int blkq, int blkk, "
        "str feature_map, str variant, float scale) -> Tensor");
  m.def("backward(Tensor grad_o, Tensor q, Tensor k, Tensor v, Tensor proj_w, Tensor proj_b, float topk, int blkq, "
        "int blkk, str feature_map, str variant, float scale) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.impl("forward", c10::DispatchKey::CompositeImplicitAutograd, TORCH_FN(sla::forward));
}

TORCH_LIBRARY_IMPL(sla, CPU, m) {
  m.impl("block_map", TORCH_FN(sla::block_map_cpu));
  m.impl("backward", TORCH_FN(sla::backward));
}

#ifdef SLA_HAVE_CUDA_KERNELS
TORCH_LIBRARY_IMPL(sla, CUDA, m) {
  m.impl("block_map", TORCH_FN(sla::block_map_cuda));
  m.impl("backward", TORCH_FN(sla::backward));
}
#endif
