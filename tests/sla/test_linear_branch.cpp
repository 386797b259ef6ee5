// Variant complement's linear-branch backward of the fused path (src/sla/cuda/linear_branch.cpp,
// hand-derived formulas over block sums) against autograd of the definition, in float64 on the
// CPU: o_l[r] = Σ_m φ(q_r)·φ(k_m) v_m / Σ_m φ(q_r)·φ(k_m) over the keys m of the blocks not
// selected for r's query block (0 where none is left), y = o_l Wᵀ + b, loss = Σ dO ∘ y; the same
// with the query side handed in (complement_backward_from_q_side, whose query side is a CUDA
// kernel in the library: here its contract computed row by row in float64), and with its key
// side left to the dk/dv pass (the pass's epilogue computed row by row); and the forward's
// per-query-block states (complement_linear_state) against those sums written out.
#include "catch.hpp"
#include "sla/cuda/linear_branch.h"
#include "sla/reference.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

#include <string>

using sla::FeatureMap;
using sla::SlaConfig;
using sla::Variant;

namespace {

// Keys' unselected mask per query row, (B, H, L, L) float64, from the block mask (B, H, Nq, Nk).
at::Tensor row_mask(const at::Tensor& mask, int64_t L, int64_t blkq, int64_t blkk) {
  const at::Tensor rows = at::arange(L, at::kLong).div(blkq, "floor");
  const at::Tensor cols = at::arange(L, at::kLong).div(blkk, "floor");
  return mask.logical_not().index_select(2, rows).index_select(3, cols).to(at::kDouble);
}

struct Grads {
  at::Tensor dq, dk, dv, dw, db, delta_lin;
};

Grads definition(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& w,
                 const at::Tensor& b, const at::Tensor& d_o, const at::Tensor& mask, const SlaConfig& cfg) {
  std::vector<at::Tensor> in;
  for (const at::Tensor* t : {&q, &k, &v, &w, &b}) in.push_back(t->detach().requires_grad_(true));
  const at::Tensor phi_q = sla::reference::feature_map(in[0], cfg.feature_map);
  const at::Tensor phi_k = sla::reference::feature_map(in[1], cfg.feature_map);
  const at::Tensor scores = at::matmul(phi_q, phi_k.transpose(-1, -2)) * row_mask(mask, q.size(2), cfg.blkq, cfg.blkk);
  const at::Tensor den = scores.sum(-1, true);
  const at::Tensor o_l = at::matmul(scores, in[2]) / at::where(den == 0, at::ones_like(den), den);
  const at::Tensor y = at::linear(o_l, in[3], in[4]);
  const auto g = torch::autograd::grad({y}, in, {d_o});
  return {g[0], g[1], g[2], g[3], g[4], (d_o * y).sum(-1).flatten(0, 1).detach()};
}

double rel_err(const at::Tensor& got, const at::Tensor& want) {
  return (got - want).abs().max().item<double>() / (want.abs().max().item<double>() + 1e-300);
}

// A float64 problem: (2, 3, 75, 8), partial last blocks of both sizes; one query block with every
// key block selected (nothing left to attend linearly), one with none.
struct Problem {
  SlaConfig cfg;
  at::Tensor q, k, v, d_o, w, b, mask;
};
Problem problem(FeatureMap f, int64_t blkq, int64_t blkk, uint64_t seed) {
  Problem p;
  p.cfg.feature_map = f;
  p.cfg.variant = Variant::kComplement;
  p.cfg.blkq = blkq;
  p.cfg.blkk = blkk;
  const int64_t B = 2, H = 3, L = 75, D = 8;
  const int64_t nq = (L + blkq - 1) / blkq, nk = (L + blkk - 1) / blkk;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  for (at::Tensor* t : {&p.q, &p.k, &p.v, &p.d_o}) *t = at::randn({B, H, L, D}, gen, f64);
  p.w = at::randn({D, D}, gen, f64) * 0.5;
  p.b = at::randn({D}, gen, f64) * 0.5;
  p.mask = at::rand({B, H, nq, nk}, gen, f64) < 0.4;
  p.mask[0][1][2].fill_(true);
  p.mask[1][0][0].fill_(false);
  return p;
}

// Every gradient and delta_lin against autograd of the definition, at 1e-10 of its largest element.
void check_grads(const sla::kernels::LinearGrads& ours, const Problem& p) {
  const SlaConfig& cfg = p.cfg;
  const Grads want = definition(p.q, p.k, p.v, p.w, p.b, p.d_o, p.mask, cfg);
  const std::pair<const char*, std::pair<at::Tensor, at::Tensor>> checks[] = {
      {"dq", {ours.dq, want.dq}},
      {"dk", {ours.dk, want.dk}},
      {"dv", {ours.dv, want.dv}},
      {"d proj_w", {ours.dw, want.dw}},
      {"d proj_b", {ours.db, want.db}},
      {"delta_lin", {ours.delta_lin, want.delta_lin}}};
  for (const auto& [name, pair] : checks) {
    INFO("feature map " << int(cfg.feature_map) << ", blocks " << cfg.blkq << "/" << cfg.blkk << ", " << name);
    REQUIRE(pair.first.sizes() == pair.second.sizes());
    CHECK(rel_err(pair.first, pair.second) < 1e-10);
  }
}

// The query side's contract (ComplementQSideChunk, linear_branch.h) row by row in float64: each
// row reads M' = M_i / L and z' = z_i / L of its query block; dq through autograd of φ.
void query_side_by_rows(const sla::kernels::ComplementQSideChunk& c, const SlaConfig& cfg) {
  const int64_t L = c.q.size(2), D = c.q.size(3);
  const at::Tensor row_block = at::arange(L, at::kLong).div(cfg.blkq, "floor");
  const at::Tensor row_tile = at::arange(L, at::kLong).div(c.tile_rows, "floor");
  const at::AutoGradMode grad_mode(true);  // the caller runs under no_grad
  const at::Tensor x = c.q[0].detach().requires_grad_(true), d_o = c.grad_o[0];  // (c, L, D)
  const at::Tensor phi = sla::reference::feature_map(x, cfg.feature_map);
  const at::Tensor m = c.state.state.index_select(1, row_block);  // (c, L, D, D)
  const at::Tensor z = c.state.z.index_select(1, row_block);      // (c, L, D)
  const at::Tensor den = (phi * z).sum(-1).detach();
  const at::Tensor inv = at::where(den > 0, 1.0 / den, at::zeros_like(den));
  const at::Tensor t = at::matmul(phi.detach().unsqueeze(-2), m).squeeze(-2);  // φ M'
  const at::Tensor dden = -(d_o * t).sum(-1) * inv * inv;
  const at::Tensor d_phi = at::matmul(d_o.unsqueeze(-2), m.transpose(-1, -2)).squeeze(-2) * inv.unsqueeze(-1) +
                           dden.unsqueeze(-1) * z;
  c.dq[0].copy_(torch::autograd::grad({phi}, {x}, {d_phi})[0]);
  c.delta_lin.copy_(at::matmul(d_o, c.bias) - dden * den);
  const at::Tensor phi_over = phi.detach() * inv.unsqueeze(-1);
  const int64_t tiles = (L + c.tile_rows - 1) / c.tile_rows;
  for (const at::Tensor& t_ : {c.a_tile, c.dz_tile, c.db_tile}) t_.narrow(1, 0, tiles).zero_();
  c.a_tile.view({c.q.size(1), -1, D * D})
      .index_add_(1, row_tile, (phi_over.unsqueeze(-1) * d_o.unsqueeze(-2)).flatten(2));  // aᵀ
  c.dz_tile.index_add_(1, row_tile, dden.unsqueeze(-1) * phi.detach() / double(L));
  c.db_tile.index_add_(1, row_tile, d_o);
}

// The dk/dv pass's epilogue with the key side per key block (SlaParams::lin_per_k_block) row by
// row in float64: dS_j = ds_scale_j ds_j / L, dφ(k) = v dS_jᵀ + dz_j, dv = φ(k) dS_j, dk through
// autograd of φ.
void key_side_by_rows(sla::kernels::LinearGrads& g, const Problem& p) {
  const int64_t B = p.k.size(0), H = p.k.size(1), L = p.k.size(2), D = p.k.size(3), nk = p.mask.size(3);
  const at::Tensor key_block = at::arange(L, at::kLong).div(p.cfg.blkk, "floor");
  const at::Tensor ds = (g.ds * g.ds_scale.view({B * H, nk, 1, 1})).view({B, H, nk, D, D}) / double(L);
  const at::Tensor ds_rows = ds.index_select(2, key_block);                      // (B, H, L, D, D)
  const at::Tensor dz_rows = g.dz.view({B, H, nk, D}).index_select(2, key_block);  // (B, H, L, D)
  const at::Tensor x = p.k.detach().requires_grad_(true);
  const at::Tensor phi = sla::reference::feature_map(x, p.cfg.feature_map);
  const at::Tensor d_phi = at::matmul(p.v.unsqueeze(-2), ds_rows.transpose(-1, -2)).squeeze(-2) + dz_rows;
  g.dk = torch::autograd::grad({phi}, {x}, {d_phi})[0];
  g.dv = at::matmul(phi.detach().unsqueeze(-2), ds_rows).squeeze(-2);
}

}  // namespace

TEST_CASE("complement backward: the block-sum formulas equal autograd of the definition (float64)") {
  for (FeatureMap f : {FeatureMap::kSoftmax, FeatureMap::kElu, FeatureMap::kRelu}) {
    for (auto [blkq, blkk] : {std::pair<int64_t, int64_t>{16, 32}, {32, 16}}) {
      const Problem p = problem(f, blkq, blkk, uint64_t(int(f) * 100 + blkq));
      check_grads(sla::kernels::linear_branch_backward(p.d_o, p.q, p.k, p.v, p.w, p.b, p.mask, p.cfg), p);
    }
  }
}

TEST_CASE("complement backward from a given query side: per-tile partials, the key side (float64)") {
  for (FeatureMap f : {FeatureMap::kSoftmax, FeatureMap::kElu, FeatureMap::kRelu}) {
    // Tiles of 8 rows: one per query block at blkq 8, four at blkq 32 (summed per block).
    for (auto [blkq, blkk] : {std::pair<int64_t, int64_t>{8, 16}, {32, 16}}) {
      const Problem p = problem(f, blkq, blkk, uint64_t(int(f) * 10 + blkq + 5000));
      check_grads(sla::kernels::complement_backward_from_q_side(
                      p.d_o, p.q, p.k, p.v, p.w, p.b, p.mask, p.cfg, 8,
                      [&](const sla::kernels::ComplementQSideChunk& c) { query_side_by_rows(c, p.cfg); }),
                  p);
    }
  }
}

TEST_CASE("complement backward, key side left to the dk/dv pass: dS and dz per key block (float64)") {
  for (FeatureMap f : {FeatureMap::kSoftmax, FeatureMap::kElu, FeatureMap::kRelu}) {
    for (auto [blkq, blkk] : {std::pair<int64_t, int64_t>{8, 16}, {32, 8}}) {
      const Problem p = problem(f, blkq, blkk, uint64_t(int(f) * 10 + blkq + 7000));
      sla::kernels::LinearGrads g = sla::kernels::complement_backward_from_q_side(
          p.d_o, p.q, p.k, p.v, p.w, p.b, p.mask, p.cfg, 8,
          [&](const sla::kernels::ComplementQSideChunk& c) { query_side_by_rows(c, p.cfg); }, false);
      REQUIRE_FALSE(g.dk.defined());
      REQUIRE_FALSE(g.dv.defined());
      const int64_t nk = p.mask.size(3);
      REQUIRE(g.ds.sizes() == at::IntArrayRef{6, nk, 8, 8});
      key_side_by_rows(g, p);
      check_grads(g, p);
    }
  }
}

TEST_CASE("complement forward: per-query-block states equal the sums over unselected keys (float64)") {
  for (FeatureMap f : {FeatureMap::kSoftmax, FeatureMap::kElu, FeatureMap::kRelu}) {
    SlaConfig cfg;
    cfg.feature_map = f;
    cfg.variant = Variant::kComplement;
    cfg.blkq = 32;
    cfg.blkk = 16;
    const int64_t B = 1, H = 2, L = 75, D = 8, nq = 3, nk = 5;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(uint64_t(7 + int(f)));
    const auto f64 = at::TensorOptions().dtype(at::kDouble);
    const at::Tensor k = at::randn({B, H, L, D}, gen, f64), v = at::randn({B, H, L, D}, gen, f64);
    const at::Tensor w = at::randn({D, D}, gen, f64);
    at::Tensor mask = at::rand({B, H, nq, nk}, gen, f64) < 0.4;
    mask[0][1][2].fill_(true);  // every key block selected: state and z 0

    const sla::kernels::FusedLinearState ours = sla::kernels::complement_linear_state(k, v, w, mask, cfg);
    const at::Tensor keys = row_mask(mask, L, cfg.blkq, cfg.blkk);  // (B, H, L, L): query row, key
    const at::Tensor phi_k = sla::reference::feature_map(k, f);
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < nq; ++i) {
        const at::Tensor unselected = keys[0][h][i * cfg.blkq].unsqueeze(1);  // (L, 1)
        const at::Tensor phi = phi_k[0][h] * unselected;
        const at::Tensor state = at::matmul(phi.t(), at::matmul(v[0][h], w.t())) / double(L);
        const at::Tensor z = phi.sum(0) / double(L);
        INFO("feature map " << int(f) << ", head " << h << ", query block " << i);
        CHECK(rel_err(ours.state[h][i], state) < 1e-12);
        CHECK(rel_err(ours.z[h][i], z) < 1e-12);
        CHECK(ours.eps == 0.f);
      }
    }
  }
}
