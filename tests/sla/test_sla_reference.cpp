// The LibTorch reference against the definition: brute-force loops in double (block map, LUT,
// output) and finite differences of its autograd gradients in float64.
#include "brute_force.h"
#include "sla/reference.h"

#include <catch.hpp>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

using sla::FeatureMap;
using sla::SlaConfig;
using sla::Variant;

namespace {

struct Inputs {
  at::Tensor q, k, v, w, b;
};

Inputs random_inputs(int64_t B, int64_t H, int64_t L, int64_t D, uint64_t seed, at::ScalarType dtype = at::kDouble) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto opts = at::TensorOptions().dtype(at::kDouble);
  Inputs in;
  in.q = at::randn({B, H, L, D}, gen, opts).to(dtype);
  in.k = at::randn({B, H, L, D}, gen, opts).to(dtype);
  in.v = at::randn({B, H, L, D}, gen, opts).to(dtype);
  // A non-zero projection so the linear branch shows in the output.
  in.w = (at::randn({D, D}, gen, opts) * 0.5).to(at::kFloat);
  in.b = (at::randn({D}, gen, opts) * 0.5).to(at::kFloat);
  return in;
}

SlaConfig config(FeatureMap f, Variant variant, int64_t blkq, int64_t blkk, double topk) {
  SlaConfig cfg;
  cfg.feature_map = f;
  cfg.variant = variant;
  cfg.blkq = blkq;
  cfg.blkk = blkk;
  cfg.topk = topk;
  return cfg;
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// Central finite differences of loss = Σ f(x) ∘ R against autograd, over every element of every
// input. Returns the largest |autograd - fd|.
double gradcheck(const std::function<at::Tensor(const std::vector<at::Tensor>&)>& f, std::vector<at::Tensor> inputs,
                 uint64_t seed) {
  for (auto& x : inputs) x = x.detach().to(at::kDouble).contiguous().requires_grad_(true);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const at::Tensor weights = at::randn(f(inputs).sizes(), gen, at::TensorOptions().dtype(at::kDouble));
  const at::Tensor loss = (f(inputs) * weights).sum();
  const auto grads = torch::autograd::grad({loss}, inputs);

  at::NoGradGuard no_grad;
  constexpr double eps = 1e-6;
  double worst = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    double* data = inputs[i].data_ptr<double>();
    const at::Tensor analytic = grads[i].contiguous();
    for (int64_t e = 0; e < inputs[i].numel(); ++e) {
      const double saved = data[e];
      data[e] = saved + eps;
      const double plus = (f(inputs) * weights).sum().item<double>();
      data[e] = saved - eps;
      const double minus = (f(inputs) * weights).sum().item<double>();
      data[e] = saved;
      worst = std::max(worst, std::abs((plus - minus) / (2 * eps) - analytic.data_ptr<double>()[e]));
    }
  }
  return worst;
}

}  // namespace

TEST_CASE("blocks_per_row: floor(topk * Nk), at least one, at most Nk", "[reference]") {
  CHECK(sla::reference::blocks_per_row(0.2, 10) == 2);
  CHECK(sla::reference::blocks_per_row(0.25, 10) == 2);
  CHECK(sla::reference::blocks_per_row(0.05, 2) == 1);  // the public code selects 0 here and divides by zero
  CHECK(sla::reference::blocks_per_row(1.0, 7) == 7);
  CHECK(sla::reference::blocks_per_row(0.5, 3) == 1);
}

TEST_CASE("LUT equals brute-force top-k with partial blocks", "[reference]") {
  const Inputs in = random_inputs(2, 3, 157, 16, 11);
  for (auto [blkq, blkk] : {std::pair{32, 32}, {32, 64}, {64, 32}, {128, 64}}) {
    for (double topk : {0.2, 0.5, 0.75, 1.0}) {
      const SlaConfig cfg = config(FeatureMap::kSoftmax, Variant::kAll, blkq, blkk, topk);
      const auto map = sla::reference::block_map(in.q, in.k, cfg);
      const auto expected = sla::brute::block_lut(in.q, in.k, cfg);
      const int64_t Nq = (157 + blkq - 1) / blkq, Nk = (157 + blkk - 1) / blkk;
      REQUIRE(map.lut.sizes() == at::IntArrayRef{2, 3, Nq, sla::reference::blocks_per_row(topk, Nk)});
      REQUIRE(map.mask.sizes() == at::IntArrayRef{2, 3, Nq, Nk});
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t h = 0; h < 3; ++h)
          for (int64_t i = 0; i < Nq; ++i) {
            std::vector<int64_t> got(map.lut.size(3));
            for (int64_t s = 0; s < map.lut.size(3); ++s) got[s] = map.lut[b][h][i][s].item<int64_t>();
            INFO("blkq " << blkq << " blkk " << blkk << " topk " << topk << " b " << b << " h " << h << " i " << i);
            CHECK(got == expected[b][h][i]);
            for (int64_t j = 0; j < Nk; ++j) {
              const bool in_lut = std::find(got.begin(), got.end(), j) != got.end();
              CHECK(map.mask[b][h][i][j].item<bool>() == in_lut);
            }
          }
    }
  }
}

TEST_CASE("at least one block is selected when topk * Nk < 1", "[reference]") {
  const Inputs in = random_inputs(1, 2, 100, 8, 5);
  for (Variant variant : {Variant::kAll, Variant::kComplement}) {
    const SlaConfig cfg = config(FeatureMap::kSoftmax, variant, 64, 64, 0.1);  // Nk = 2, 0.2 blocks
    const auto map = sla::reference::block_map(in.q, in.k, cfg);
    CHECK(map.lut.size(3) == 1);
    CHECK(map.mask.sum(-1).eq(1).all().item<bool>());
    const at::Tensor o = sla::reference::attention(in.q, in.k, in.v, in.w, in.b, cfg);
    CHECK(o.isfinite().all().item<bool>());
    CHECK(max_abs_diff(o, sla::brute::attention(in.q, in.k, in.v, in.w, in.b, cfg)) < 1e-10);
  }
}

TEST_CASE("reference equals the brute-force definition (float64, odd sizes, partial blocks)", "[reference]") {
  double worst = 0;
  for (FeatureMap f : {FeatureMap::kSoftmax, FeatureMap::kElu, FeatureMap::kRelu}) {
    for (Variant variant : {Variant::kAll, Variant::kComplement}) {
      for (auto [L, blkq, blkk, topk] : {std::tuple{37, 32, 32, 0.5}, {101, 32, 64, 0.5}, {101, 64, 32, 0.3},
                                         {130, 128, 32, 0.4}, {37, 64, 64, 1.0}, {150, 32, 32, 1.0}}) {
        const Inputs in = random_inputs(2, 3, L, 16, 100 + L);
        const SlaConfig cfg = config(f, variant, blkq, blkk, topk);
        for (double scale : {0.0, 0.3}) {
          const at::Tensor ours = sla::reference::attention(in.q, in.k, in.v, in.w, in.b, cfg, scale);
          const at::Tensor expected = sla::brute::attention(in.q, in.k, in.v, in.w, in.b, cfg, scale);
          REQUIRE(ours.scalar_type() == at::kDouble);
          const double diff = max_abs_diff(ours, expected);
          INFO(sla::to_string(f) << " " << sla::to_string(variant) << " L " << L << " blk " << blkq << "/" << blkk);
          CHECK(diff < 1e-10);
          worst = std::max(worst, diff);
        }
      }
    }
  }
  std::printf("brute-force max |reference - definition| (float64): %.3e\n", worst);
}

TEST_CASE("complement variant: every block selected gives o_l = 0, output = sparse + bias", "[reference]") {
  const Inputs in = random_inputs(1, 2, 70, 8, 9);
  const SlaConfig cfg = config(FeatureMap::kElu, Variant::kComplement, 32, 32, 1.0);
  const at::Tensor with_proj = sla::reference::attention(in.q, in.k, in.v, in.w, in.b, cfg);
  const at::Tensor bias_only = sla::reference::attention(in.q, in.k, in.v, at::zeros_like(in.w), in.b, cfg);
  CHECK(with_proj.isfinite().all().item<bool>());
  CHECK(max_abs_diff(with_proj, bias_only) == 0.0);
}

TEST_CASE("strided inputs give the same result as contiguous ones", "[reference]") {
  const Inputs in = random_inputs(2, 3, 77, 16, 21);
  // The DiT layout: (B, L, H, D) memory viewed as (B, H, L, D).
  auto strided = [](const at::Tensor& x) { return x.transpose(1, 2).contiguous().transpose(1, 2); };
  const SlaConfig cfg = config(FeatureMap::kSoftmax, Variant::kComplement, 32, 64, 0.5);
  const at::Tensor a = sla::reference::attention(in.q, in.k, in.v, in.w, in.b, cfg);
  const at::Tensor b = sla::reference::attention(strided(in.q), strided(in.k), strided(in.v), in.w, in.b, cfg);
  CHECK(max_abs_diff(a, b) < 1e-12);
}

TEST_CASE("low precision: output keeps the dtype, error is rounding-sized", "[reference]") {
  const Inputs in = random_inputs(1, 2, 100, 32, 3);
  const SlaConfig cfg = config(FeatureMap::kSoftmax, Variant::kAll, 32, 32, 0.5);
  const at::Tensor exact = sla::reference::attention(in.q, in.k, in.v, in.w, in.b, cfg);
  for (auto [dtype, tolerance] : {std::pair{at::kFloat, 1e-5}, {at::kBFloat16, 0.1}, {at::kHalf, 0.02}}) {
    const at::Tensor o = sla::reference::attention(in.q.to(dtype), in.k.to(dtype), in.v.to(dtype), in.w, in.b, cfg);
    CHECK(o.scalar_type() == dtype);
    CHECK(max_abs_diff(o, exact) < tolerance);
  }
}

TEST_CASE("float64 gradients match finite differences (q, k, v, proj_l)", "[reference][gradcheck]") {
  double worst = 0;
  for (FeatureMap f : {FeatureMap::kSoftmax, FeatureMap::kElu, FeatureMap::kRelu}) {
    for (Variant variant : {Variant::kAll, Variant::kComplement}) {
      // L = 70 with 32-row blocks: a partial last block; topk 0.5 of Nk = 3 selects 1 block.
      const SlaConfig cfg = config(f, variant, 32, 32, 0.5);
      const Inputs in = random_inputs(1, 2, 70, 8, 42);
      const double err = gradcheck(
          [&](const std::vector<at::Tensor>& x) { return sla::reference::attention(x[0], x[1], x[2], x[3], x[4], cfg); },
          {in.q, in.k, in.v, in.w, in.b}, 7);
      INFO(sla::to_string(f) << " " << sla::to_string(variant));
      CHECK(err < 1e-6);
      std::printf("gradcheck %-7s %-10s max |autograd - finite difference| = %.3e\n", sla::to_string(f),
                  sla::to_string(variant), err);
      worst = std::max(worst, err);
    }
  }
  std::printf("gradcheck worst: %.3e\n", worst);
}
