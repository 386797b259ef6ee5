// SparseLinearAttention: zero-initialised float32 proj_l, the reference path on CPU, and a float32
// projection whatever the module is cast to or whatever autocast says.
#include "sla/reference.h"
#include "sla/sparse_linear_attention.h"

#include <catch.hpp>

#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

namespace {

at::Tensor randn(std::vector<int64_t> shape, at::ScalarType dtype = at::kFloat) {
  return at::randn(shape, at::TensorOptions().dtype(at::kFloat)).to(dtype);
}

void randomise(sla::SparseLinearAttention& m) {
  at::NoGradGuard no_grad;
  m->proj_l->weight.copy_(randn({m->head_dim(), m->head_dim()}) * 0.3);
  m->proj_l->bias.copy_(randn({m->head_dim()}) * 0.3);
}

sla::SlaConfig small_blocks() { return sla::SlaConfig::parse("{'topk': 0.5, 'blkq': 32, 'blkk': 32}"); }

}  // namespace

TEST_CASE("proj_l starts at zero: an untrained module is sparse attention alone", "[module]") {
  at::manual_seed(1);
  sla::SparseLinearAttention m(16, small_blocks());
  CHECK(m->proj_l->weight.scalar_type() == at::kFloat);
  CHECK(m->proj_l->weight.abs().sum().item<double>() == 0.0);
  CHECK(m->proj_l->bias.abs().sum().item<double>() == 0.0);
  const at::Tensor q = randn({2, 2, 70, 16}), k = randn({2, 2, 70, 16}), v = randn({2, 2, 70, 16});
  // With a zero projection the linear branch vanishes, whatever it computes.
  sla::SlaConfig linear_only = small_blocks();
  const at::Tensor with_linear = sla::reference::attention(q, k, v, randn({16, 16}), at::zeros({16}), linear_only);
  const at::Tensor o = m->forward(q, k, v);
  CHECK(at::allclose(o, sla::reference::attention(q, k, v, at::zeros({16, 16}), at::zeros({16}), small_blocks())));
  CHECK_FALSE(at::allclose(o, with_linear));
}

TEST_CASE("forward equals the reference with the module's projection", "[module]") {
  at::manual_seed(2);
  sla::SparseLinearAttention m(16, sla::SlaConfig::parse("{'topk': 0.5, 'blkq': 32, 'blkk': 64, 'variant': 'complement'}"));
  randomise(m);
  const at::Tensor q = randn({1, 3, 100, 16}), k = randn({1, 3, 100, 16}), v = randn({1, 3, 100, 16});
  const at::Tensor expected = sla::reference::attention(q, k, v, m->proj_l->weight, m->proj_l->bias, m->config(), 0.7);
  CHECK(at::equal(m->forward(q, k, v, 0.7), expected));
}

TEST_CASE("casting the module keeps proj_l float32; bf16 inputs give bf16 output, float32 gradients", "[module]") {
  at::manual_seed(3);
  sla::SparseLinearAttention m(16, small_blocks());
  randomise(m);
  m->to(at::kBFloat16);
  CHECK(m->proj_l->weight.scalar_type() == at::kFloat);
  m->to(at::kCPU, at::kHalf);
  CHECK(m->proj_l->bias.scalar_type() == at::kFloat);

  const at::Tensor q = randn({1, 2, 64, 16}, at::kBFloat16).requires_grad_(true);
  const at::Tensor k = randn({1, 2, 64, 16}, at::kBFloat16), v = randn({1, 2, 64, 16}, at::kBFloat16);
  const at::Tensor o = m->forward(q, k, v);
  CHECK(o.scalar_type() == at::kBFloat16);
  o.to(at::kFloat).sum().backward();
  CHECK(m->proj_l->weight.grad().scalar_type() == at::kFloat);
  CHECK(q.grad().scalar_type() == at::kBFloat16);
  CHECK(m->proj_l->weight.grad().abs().sum().item<double>() > 0);
}

TEST_CASE("autocast does not change the computation", "[module]") {
  at::manual_seed(4);
  sla::SparseLinearAttention m(32, small_blocks());
  randomise(m);
  const at::Tensor q = randn({1, 2, 64, 32}), k = randn({1, 2, 64, 32}), v = randn({1, 2, 64, 32});
  const at::Tensor plain = m->forward(q, k, v);
  at::Tensor under_autocast;
  {
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    // Sanity: autocast is live (a bare matmul would come out in bf16).
    CHECK(at::matmul(q, k.transpose(-2, -1)).scalar_type() == at::kBFloat16);
    under_autocast = m->forward(q, k, v);
    at::autocast::set_autocast_enabled(at::kCPU, false);
    at::autocast::clear_cache();
  }
  CHECK(under_autocast.scalar_type() == at::kFloat);
  CHECK(at::equal(plain, under_autocast));
}
