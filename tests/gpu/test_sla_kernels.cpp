// The fused kernels against the float64 reference (sla::reference), on the GPU, for every dtype,
// head_dim, block-size pair, feature map and variant, on fresh random inputs with partial blocks:
// error(kernels) <= 2 x error(reference run in the input dtype) + a rounding atol, for o and the
// gradients of q, k, v, proj_l.weight, proj_l.bias (nonzero random proj_l); the LUT equals the
// reference block map; outputs land in NaN-poisoned memory and must come back finite.
#include "catch.hpp"
#include "gpu_skip.h"
#include "sla/cuda/linear_branch.h"
#include "sla/reference.h"
#include "sla/sla_kernels.h"
#include "sla/sparse_linear_attention.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

// CTest counts exit code 77 as skipped: no device, no verdict.
const bool kHaveGpu = [] {
  if (c10::cuda::device_count() == 0) {
    std::fprintf(stderr, "no CUDA device: skipped\n");
    std::exit(kSkipNoGpu);
  }
  return true;
}();

using sla::FeatureMap;
using sla::SlaConfig;
using sla::Variant;

struct Case {
  at::ScalarType dtype;
  int64_t head_dim, blkq, blkk;
  FeatureMap feature_map;
  Variant variant;
  bool bl_layout;  // (B, L, H, D) memory viewed as (B, H, L, D)
  double topk;
  int64_t seqlen = 0;  // 0: 3 max(blkq, blkk) + 17
  int64_t heads = 2;   // B = 2
  double key_ramp = 0;  // k scaled by 1 + key_ramp · position / L: scores that grow along the keys
};

std::string describe(const Case& c) {
  return std::string(c10::toString(c.dtype)) + " D=" + std::to_string(c.head_dim) + " blk=" + std::to_string(c.blkq) +
         "/" + std::to_string(c.blkk) + " " + sla::to_string(c.feature_map) + " " + sla::to_string(c.variant) +
         (c.bl_layout ? " BLHD" : " BHLD") + " topk=" + std::to_string(c.topk) +
         (c.seqlen > 0 ? " L=" + std::to_string(c.seqlen) : "") +
         (c.heads != 2 ? " H=" + std::to_string(c.heads) : "") +
         (c.key_ramp > 0 ? " key ramp " + std::to_string(c.key_ramp) : "");
}

at::Tensor random_input(int64_t B, int64_t H, int64_t L, int64_t D, at::ScalarType dtype, bool bl_layout) {
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
  if (bl_layout) return at::randn({B, L, H, D}, opts).transpose(1, 2);
  return at::randn({B, H, L, D}, opts);
}

// Fills the caching allocator's free blocks with NaN so that an unwritten output element shows.
void poison_allocator() {
  at::Tensor junk = at::full({int64_t(64) << 20}, std::numeric_limits<float>::quiet_NaN(),
                             at::TensorOptions().device(at::kCUDA));
}

struct Result {
  std::vector<at::Tensor> values;  // o, dq, dk, dv, dW, db
};

Result run_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& w,
                     const at::Tensor& b, const at::Tensor& grad_o, const SlaConfig& cfg, at::ScalarType dtype) {
  std::vector<at::Tensor> in;
  for (const at::Tensor* t : {&q, &k, &v}) in.push_back(t->detach().to(dtype).requires_grad_(true));
  const at::ScalarType pdtype = dtype == at::kDouble ? at::kDouble : at::kFloat;
  in.push_back(w.detach().to(pdtype).requires_grad_(true));
  in.push_back(b.detach().to(pdtype).requires_grad_(true));
  const at::Tensor o = sla::reference::attention(in[0], in[1], in[2], in[3], in[4], cfg);
  auto g = torch::autograd::grad({o}, in, {grad_o.to(dtype)});
  return {{o, g[0], g[1], g[2], g[3], g[4]}};
}

Result run_kernels(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& w,
                   const at::Tensor& b, const at::Tensor& grad_o, const SlaConfig& cfg) {
  std::vector<at::Tensor> in;
  for (const at::Tensor* t : {&q, &k, &v, &w, &b}) in.push_back(t->detach().requires_grad_(true));
  poison_allocator();
  const at::Tensor o = sla::cuda_sla_attention(in[0], in[1], in[2], in[3], in[4], cfg, 0.0);
  poison_allocator();
  auto g = torch::autograd::grad({o}, in, {grad_o});
  return {{o, g[0], g[1], g[2], g[3], g[4]}};
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& ref) {
  return (a.to(at::kDouble) - ref).abs().max().item<double>();
}

void check_case(const Case& c, uint64_t seed) {
  at::manual_seed(seed);
  SlaConfig cfg;
  cfg.topk = c.topk;
  cfg.blkq = c.blkq;
  cfg.blkk = c.blkk;
  cfg.feature_map = c.feature_map;
  cfg.variant = c.variant;
  // Odd length: partial last blocks of both sizes.
  const int64_t B = 2, H = c.heads, D = c.head_dim, L = c.seqlen > 0 ? c.seqlen : 3 * std::max(c.blkq, c.blkk) + 17;
  const at::Tensor q = random_input(B, H, L, D, c.dtype, c.bl_layout);
  at::Tensor k = random_input(B, H, L, D, c.dtype, c.bl_layout);
  if (c.key_ramp > 0) {
    const at::Tensor ramp = 1 + c.key_ramp * at::arange(L, k.options().dtype(at::kFloat)) / double(L);
    k = (k.to(at::kFloat) * ramp.view({L, 1})).to(c.dtype);
  }
  const at::Tensor v = random_input(B, H, L, D, c.dtype, c.bl_layout);
  const auto f32 = at::TensorOptions().device(at::kCUDA).dtype(at::kFloat);
  const at::Tensor w = at::randn({D, D}, f32) * (1.0 / std::sqrt(double(D)));  // nonzero proj_l
  const at::Tensor b = at::randn({D}, f32) * 0.1;
  const at::Tensor grad_o = random_input(B, H, L, D, c.dtype, false);
  // A build limited by SLA_KERNEL_HDIMS / SLA_KERNEL_DTYPES refuses the rest: not a failure here.
  if (std::string why; !sla::cuda_kernels_support(q, k, v, cfg, &why) && why.find("this build's") != std::string::npos) {
    WARN("skipped, not in this build: " << describe(c) << ": " << why);
    return;
  }

  const Result exact = run_reference(q, k, v, w, b, grad_o, cfg, at::kDouble);
  const Result low = run_reference(q, k, v, w, b, grad_o, cfg, c.dtype);
  const Result ours = run_kernels(q, k, v, w, b, grad_o, cfg);

  const char* names[] = {"o", "dq", "dk", "dv", "d proj_w", "d proj_b"};
  const double eps = c.dtype == at::kBFloat16 ? 1.0 / 256 : 1.0 / 2048;  // unit roundoff of the output dtype
  for (size_t i = 0; i < exact.values.size(); ++i) {
    const at::Tensor& ref = exact.values[i];
    const double scale = ref.abs().max().item<double>();
    const double err = max_abs_diff(ours.values[i], ref);
    const double err_low = max_abs_diff(low.values[i], ref);
    const double atol = 2 * eps * scale;  // two roundings of the largest element in the output dtype
    INFO(describe(c) << " " << names[i] << ": kernel error " << err << ", reference-in-dtype error " << err_low
                     << ", bound " << 2 * err_low + atol << ", max |ref| " << scale);
    CHECK(ours.values[i].isfinite().all().item<bool>());
    CHECK(err <= 2 * err_low + atol);
    // Independent of how far the low-precision reference strays (its own block map may differ).
    CHECK(err <= 8 * eps * (scale + 1));
    std::printf("%-60s %-9s err %.3e  ref-in-dtype %.3e  bound %.3e\n", describe(c).c_str(), names[i], err, err_low,
                2 * err_low + atol);
  }
}

// Random bf16 q and k (B, H, L, D) for the block-map cases, q drawn first; k shifted by 0.5 so that
// smooth-k (k minus its mean over the sequence) matters.
std::pair<at::Tensor, at::Tensor> block_map_inputs(int64_t B, int64_t H, int64_t L, int64_t D, bool bl_layout) {
  return {random_input(B, H, L, D, at::kBFloat16, bl_layout), random_input(B, H, L, D, at::kBFloat16, bl_layout) + 0.5};
}

// The kernels' LUT and mask against the float64 reference block map. Both LUTs are ascending per
// row, so equal sets are equal rows.
void check_block_map(const at::Tensor& q, const at::Tensor& k, const SlaConfig& cfg) {
  const sla::reference::BlockMap ours = sla::cuda_block_map(q, k, cfg);
  const sla::reference::BlockMap ref = sla::reference::block_map(q.to(at::kDouble), k.to(at::kDouble), cfg);
  REQUIRE(ours.lut.sizes() == ref.lut.sizes());
  CHECK(ours.lut.cpu().equal(ref.lut.cpu()));
  CHECK(ours.mask.cpu().equal(ref.mask.cpu()));
}

}  // namespace

TEST_CASE("fused SLA matches the float64 reference across the support matrix") {
  uint64_t seed = 1;
  for (at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    for (int64_t d : {64, 128}) {
      for (int64_t blkq : {32, 64, 128}) {
        for (int64_t blkk : {32, 64, 128}) {
          for (FeatureMap f : {FeatureMap::kSoftmax, FeatureMap::kElu, FeatureMap::kRelu}) {
            for (Variant var : {Variant::kAll, Variant::kComplement}) {
              const bool bl = (seed % 2) == 0;
              check_case({dtype, d, blkq, blkk, f, var, bl, 0.3}, seed++);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("every block selected: complement's linear branch vanishes, all still adds it") {
  for (Variant var : {Variant::kAll, Variant::kComplement}) {
    check_case({at::kBFloat16, 64, 64, 32, FeatureMap::kSoftmax, var, false, 1.0}, 1000 + int(var));
  }
}

// On Hopper the cp.async dk/dv pass (D 64) at blkq 128 takes the wgmma kernel only from 12 query
// blocks per key block on average (sm90_dkdv_pays): L = 1581 gives 13 query blocks of 128, 25 key
// blocks of 64.
TEST_CASE("long lists of query blocks per key block (blkq 128)") {
  check_case({at::kBFloat16, 128, 128, 64, FeatureMap::kSoftmax, Variant::kAll, true, 1.0, 12 * 128 + 45}, 3000);
  check_case({at::kHalf, 64, 128, 64, FeatureMap::kElu, Variant::kAll, false, 1.0, 12 * 128 + 45}, 3001);
}

// Long rows of the LUT over a long sequence: the Hopper forward's rings of K and V stages (at D 64
// and 64-row query blocks two K stages, three V stages) wrap several times, and the selected
// blocks lie anywhere in the 130 key blocks. Rows of 19 blocks: at blkq 128 a stage holds two, so
// the last step pads with a masked copy of the last.
// The first case has 260 tiles of 128 query rows (B = H = 2): more than an H100's or H200's 132
// SMs, so CTAs of the persistent forward walk a second tile, its ring entries following the first's.
TEST_CASE("long sequences: the K/V ring wraps, LUT rows gather from the whole sequence") {
  const int64_t L = 64 * 128 + 77;  // 65 query blocks of 128, 130 key blocks of 64, both partial
  check_case({at::kBFloat16, 128, 128, 64, FeatureMap::kSoftmax, Variant::kAll, true, 0.15, L}, 4000);
  check_case({at::kHalf, 64, 128, 64, FeatureMap::kElu, Variant::kComplement, false, 0.2, L}, 4001);
  check_case({at::kBFloat16, 128, 64, 64, FeatureMap::kRelu, Variant::kAll, false, 0.15, L}, 4002);
  check_case({at::kBFloat16, 64, 64, 64, FeatureMap::kSoftmax, Variant::kAll, true, 0.15, L}, 4003);
}

// Many (b, h): the linear passes' CTAs walk several row tiles of 128 each (40 (b, h), 8 tiles:
// three CTAs per (b, h), so one walks three tiles and the query-side pass's double buffer wraps).
// Complement with two query blocks per row tile (blkq = D / 2): each tile loads the next tile's
// pair of states while its sums run; 15 query blocks, so the last tile has one block only.
TEST_CASE("many heads: the linear passes walk several row tiles per CTA") {
  check_case({at::kBFloat16, 128, 128, 64, FeatureMap::kSoftmax, Variant::kAll, true, 0.2, 7 * 128 + 104, 20}, 7000);
  check_case({at::kHalf, 128, 64, 64, FeatureMap::kElu, Variant::kAll, false, 0.2, 7 * 128 + 104, 20}, 7001);
  check_case({at::kBFloat16, 128, 64, 64, FeatureMap::kSoftmax, Variant::kComplement, true, 0.2, 7 * 128 + 40, 20},
             7002);
  check_case({at::kHalf, 64, 32, 64, FeatureMap::kRelu, Variant::kComplement, false, 0.2, 7 * 64 + 20, 20}, 7003);
}

// The Hopper forward and dq pass run two query blocks of 64 per CTA: with an odd count the last
// CTA's second warpgroup has no block of its own and must write nothing (5 query blocks of 64 here).
TEST_CASE("an odd count of 64-row query blocks") {
  for (Variant var : {Variant::kAll, Variant::kComplement}) {
    check_case({at::kBFloat16, 128, 64, 64, FeatureMap::kSoftmax, var, true, 0.5, 4 * 64 + 17}, 5000 + int(var));
  }
}

// The linear state pass alone (variant all's S = Σ φ(K)ᵀ V and z = Σ φ(K), divided by L): with
// 264 (b, h) there is one CTA per (b, h), which walks all 8 row tiles of 128 (the last partial, its
// padding rows masked though φ(0) ≠ 0), so the Hopper pass's ring of 3 stages wraps twice. Against
// float64 sums of φ of the same inputs; the pass rounds φ(K) to the input dtype before the
// product, hence a bound of a few of its roundings of the largest element.
TEST_CASE("the linear state pass over many row tiles per CTA") {
  const int64_t B = 2, H = 132, L = 7 * 128 + 104, D = 128;
  for (at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    for (FeatureMap f : {FeatureMap::kSoftmax, FeatureMap::kElu, FeatureMap::kRelu}) {
      at::manual_seed(6000 + int(f));
      SlaConfig cfg;
      cfg.feature_map = f;
      const auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
      const at::Tensor k = at::randn({B, H, L, D}, opts), v = at::randn({B, H, L, D}, opts);
      const at::Tensor w = at::randn({D, D}, opts.dtype(at::kFloat)) * (1.0 / std::sqrt(double(D)));
      const sla::kernels::FusedLinearState ours = sla::kernels::fused_linear_state(k, v, w, cfg);
      const at::Tensor phi = sla::reference::feature_map(k.to(at::kDouble), f).flatten(0, 1);  // (BH, L, D)
      const at::Tensor s = at::matmul(phi.transpose(1, 2), v.to(at::kDouble).flatten(0, 1)) / double(L);
      const at::Tensor z = phi.sum(1) / double(L);
      const double eps = dtype == at::kBFloat16 ? 1.0 / 256 : 1.0 / 2048;
      for (const auto& [name, got, want] : {std::tuple<const char*, at::Tensor, at::Tensor>{"S", ours.s, s},
                                           {"z", ours.z, z}}) {
        const double scale = want.abs().max().item<double>();
        const double err = (got.to(at::kDouble) - want).abs().max().item<double>();
        INFO(c10::toString(dtype) << " feature map " << int(f) << " " << name << ": error " << err << ", max " << scale);
        CHECK(err <= 4 * eps * scale);
      }
    }
  }
}

// The forward keeps a row's running max until a block's scores exceed it by 2^8 (kMaxSlackLog2):
// with keys scaled up ninefold along the sequence (LUT rows ascend, so later blocks score higher)
// the max passes its slack several times within a row, and O and the row sums are rescaled
// mid-row. Every forward kernel: warp-specialised at 128 and 64 query rows, the cp.async wgmma one
// at D 64, the mma.sync one at blkq 32.
TEST_CASE("scores that grow along the keys move the running max by more than its slack") {
  const int64_t L = 16 * 64 + 29;
  check_case({at::kBFloat16, 128, 128, 64, FeatureMap::kSoftmax, Variant::kAll, false, 0.5, L, 2, 8.0}, 8000);
  check_case({at::kHalf, 128, 64, 64, FeatureMap::kElu, Variant::kComplement, false, 0.5, L, 2, 8.0}, 8001);
  check_case({at::kBFloat16, 64, 64, 64, FeatureMap::kSoftmax, Variant::kAll, false, 0.5, L, 2, 8.0}, 8002);
  check_case({at::kHalf, 128, 32, 64, FeatureMap::kRelu, Variant::kAll, false, 0.5, L, 2, 8.0}, 8003);
}

// Rows of one key block over many tiles: each tile of the warp-specialised forward is one step, so
// its producer brings the next tile's z (with M) into z's single buffer while the consumers may
// still read the previous tile's, unless it first waits for them to release that tile's M (680
// tiles: about five per CTA; the first case one query block per tile, the others two, complement's
// with two states).
TEST_CASE("one step per tile over many tiles: z's buffer waits for the previous tile") {
  const int64_t L = 16 * 128 + 40;  // 33 key blocks of 64: topk 0.05 selects one
  check_case({at::kBFloat16, 128, 128, 64, FeatureMap::kSoftmax, Variant::kAll, true, 0.05, L, 20}, 9000);
  check_case({at::kHalf, 128, 64, 64, FeatureMap::kElu, Variant::kAll, false, 0.05, L, 20}, 9001);
  check_case({at::kBFloat16, 128, 64, 64, FeatureMap::kSoftmax, Variant::kComplement, true, 0.05, L, 20}, 9002);
}

TEST_CASE("a tiny topk still selects one block per row") {
  check_case({at::kHalf, 128, 128, 64, FeatureMap::kElu, Variant::kAll, true, 0.01}, 2000);
}

TEST_CASE("the kernels' LUT equals the reference block map") {
  for (int64_t blkq : {32, 64, 128}) {
    for (int64_t blkk : {32, 64, 128}) {
      at::manual_seed(blkq * 7 + blkk);
      SlaConfig cfg;
      cfg.topk = 0.25;
      cfg.blkq = blkq;
      cfg.blkk = blkk;
      const int64_t L = 1000 + blkq + 3;
      const int64_t D = blkq == 64 ? 128 : 64;
      const auto [q, k] = block_map_inputs(2, 3, L, D, true);
      INFO("blk " << blkq << "/" << blkk);
      check_block_map(q, k, cfg);
    }
  }
}

// The scores kernel takes 64 x 64 tiles where they fill the GPU (144 CTAs here, H100 and H200:
// 132 SMs) and 32 x 32 tiles below (the case above).
TEST_CASE("the kernels' LUT from 64 x 64 score tiles equals the reference block map") {
  at::manual_seed(8192);
  SlaConfig cfg;
  cfg.topk = 0.1;
  cfg.blkq = 32;
  cfg.blkk = 32;
  const auto [q, k] = block_map_inputs(1, 9, 8192, 64, true);
  check_block_map(q, k, cfg);
}

// A kernel's dynamic shared-memory limit is a per-kernel attribute: a smaller launch must not lower
// it under a larger size that was set before and comes again. This order once failed with "invalid
// argument" (the second 20000 found the limit at 1000's) when one select kernel held a CTA's rows
// of scores in shared memory, sized by Nk; the scores kernel that replaced it takes a fixed size
// per tile shape, and the lengths stay as a check of the block map across calls.
TEST_CASE("the block map at growing, shrinking and again growing lengths") {
  SlaConfig cfg;
  cfg.topk = 0.2;
  for (int64_t L : {20000, 1000, 20000, 3000}) {
    at::manual_seed(L);
    const auto [q, k] = block_map_inputs(1, 2, L, 64, false);
    INFO("L " << L);
    check_block_map(q, k, cfg);
  }
}

TEST_CASE("long rows of key blocks: the select kernel's three row lengths and its ATen fallback") {
  SlaConfig cfg;
  cfg.topk = 0.01;
  cfg.blkq = 128;
  cfg.blkk = 32;
  SECTION("Nk = 625 (up to 32 scores per lane in registers) equals the reference") {
    cfg.blkk = 64;
    at::manual_seed(40001);
    const auto [q, k] = block_map_inputs(1, 2, 40000, 128, true);
    check_block_map(q, k, cfg);
  }
  SECTION("Nk = 1250 (a row read from memory in every radix pass) equals the reference") {
    at::manual_seed(40000);
    const auto [q, k] = block_map_inputs(1, 1, 40000, 128, true);
    check_block_map(q, k, cfg);
  }
  SECTION("Nk = 25000 (100 KB of scores per row) takes the fallback and selects the top blocks") {
    // 6250 rows of 25000 scores: some row's 250th and 251st scores lie closer than float32 resolves,
    // so the check is against the float64 scores: every selected block is within a relative 1e-5
    // of the row's true 250th best, and each row lists 250 distinct blocks in ascending order.
    const int64_t L = 800000, D = 64, nq = L / 128, nk = L / 32;
    const int64_t n = sla::reference::blocks_per_row(cfg.topk, nk);
    at::manual_seed(L);
    const auto [q, k] = block_map_inputs(1, 1, L, D, true);
    const at::Tensor lut = sla::cuda_block_map(q, k, cfg).lut.reshape({nq, n});
    const at::Tensor qd = q.to(at::kDouble), kd = k.to(at::kDouble);
    const at::Tensor pq = qd.reshape({nq, 128, D}).mean(1);
    const at::Tensor pk = (kd - kd.mean(2, true)).reshape({nk, 32, D}).mean(1);
    const at::Tensor score = at::matmul(pq, pk.t());  // (Nq, Nk)
    const at::Tensor nth_best = std::get<0>(score.topk(n, -1)).select(1, n - 1);
    const at::Tensor tol = score.abs().amax(1) * 1e-5;
    CHECK((score.gather(1, lut).amin(1) >= nth_best - tol).all().item<bool>());
    CHECK((lut.diff(1, 1) > 0).all().item<bool>());
  }
}

TEST_CASE("unsupported inputs are refused with the reason") {
  const at::Tensor q = at::randn({1, 2, 100, 96}, at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16));
  std::string why;
  CHECK_FALSE(sla::cuda_kernels_support(q, q, q, SlaConfig{}, &why));
  CHECK(why == "expected head_dim 64 or 128, got 96");
  const at::Tensor f = at::randn({1, 2, 100, 64}, at::TensorOptions().device(at::kCUDA));
  CHECK_FALSE(sla::cuda_kernels_support(f, f, f, SlaConfig{}, &why));
  CHECK(why == "expected bfloat16 or float16, got Float");
  SlaConfig odd_block;
  odd_block.blkk = 48;
  CHECK_FALSE(sla::cuda_kernels_support(q.narrow(3, 0, 64), q.narrow(3, 0, 64), q.narrow(3, 0, 64), odd_block, &why));
  CHECK(why == "expected blkq and blkk in {32, 64, 128}, got 48");
}

TEST_CASE("the module dispatches to the fused kernels on CUDA") {
  at::manual_seed(7);
  SlaConfig cfg;
  cfg.topk = 0.2;
  cfg.blkq = 128;
  cfg.blkk = 64;
  sla::SparseLinearAttention module(128, cfg);
  module->to(torch::Device(torch::kCUDA));
  {
    at::NoGradGuard no_grad;
    module->proj_l->weight.normal_(0.0, 0.05);  // nonzero, so the linear branch shows
    module->proj_l->bias.normal_(0.0, 0.05);
  }
  const at::Tensor q = random_input(1, 2, 777, 128, at::kBFloat16, true);
  const at::Tensor k = random_input(1, 2, 777, 128, at::kBFloat16, true);
  const at::Tensor v = random_input(1, 2, 777, 128, at::kBFloat16, true);
  const at::Tensor o_module = module->forward(q, k, v);
  const at::Tensor o_kernels =
      sla::cuda_sla_attention(q, k, v, module->proj_l->weight, module->proj_l->bias, cfg, 0.0);
  // The kernels are deterministic: the same bits, and a grad_fn of the fused autograd Function.
  CHECK(o_module.is_cuda());
  CHECK(o_module.equal(o_kernels));
  REQUIRE(o_module.grad_fn() != nullptr);
  CHECK(o_module.grad_fn()->name().find("SlaFunction") != std::string::npos);
}

// Memory of the training path, counted in units of one (B, H, L, D) bf16 tensor: the autograd
// node keeps o (saved as the output itself) and small state only, not the sparse branch's o_s;
// the backward holds dq, dk, dv and at most two float32 addends (the linear branch's dk and dv)
// at once, not also its float32 dq addend. B*H = 16 keeps the per-CTA partials of the linear
// passes (at most one SM's worth per (b, h)) near a third of a unit.
TEST_CASE("training path memory: the node keeps o and no o_s; the backward at most two float32 addends") {
  at::manual_seed(11);
  SlaConfig cfg;
  cfg.topk = 0.2;
  cfg.blkq = 128;
  cfg.blkk = 64;
  const int64_t B = 1, H = 16, L = 8192, D = 128;
  const double unit = double(B * H * L * D * 2);
  std::vector<at::Tensor> in;
  for (int i = 0; i < 3; ++i) in.push_back(random_input(B, H, L, D, at::kBFloat16, true).requires_grad_(true));
  const auto f32 = at::TensorOptions().device(at::kCUDA).dtype(at::kFloat);
  in.push_back((at::randn({D, D}, f32) * (1.0 / std::sqrt(double(D)))).requires_grad_(true));
  in.push_back((at::randn({D}, f32) * 0.1).requires_grad_(true));
  const at::Tensor grad_o = random_input(B, H, L, D, at::kBFloat16, false);
  const auto dev = c10::cuda::current_device();
  auto allocated = [&] {
    c10::cuda::device_synchronize();
    return double(c10::cuda::CUDACachingAllocator::getDeviceStats(dev).allocated_bytes[0].current);
  };
  const double before_forward = allocated();
  const at::Tensor o = sla::cuda_sla_attention(in[0], in[1], in[2], in[3], in[4], cfg, 0.0);
  const double held = (allocated() - before_forward) / unit;  // o + what the node saved
  INFO("after the forward: " << held << " units held");
  CHECK(held >= 1.0);
  CHECK(held < 1.25);  // o_s kept as well would make it 2

  c10::cuda::CUDACachingAllocator::resetPeakStats(dev);
  const double before_backward = allocated();
  const auto grads = torch::autograd::grad({o}, in, {grad_o});
  c10::cuda::device_synchronize();
  const double peak =
      (double(c10::cuda::CUDACachingAllocator::getDeviceStats(dev).allocated_bytes[0].peak) - before_backward) / unit;
  INFO("backward peak: " << peak << " units above the forward's");
  CHECK(peak >= 3.0);  // dq, dk, dv at least: the measurement sees the backward
  CHECK(peak < 8.0);   // today 7.3: dq, dk, dv (3) + float32 dk, dv addends (4) + partials; the
                       // float32 dq addend alive beside them would make it 9.3
  CHECK(grads[0].isfinite().all().item<bool>());
}

// Under bf16 autocast the fused path computes what it computes without it: the kernels fix their
// own precisions, and the ATen ops around them (variant complement's block sums) are
// kept out of autocast's reach.
TEST_CASE("autocast does not change the fused path") {
  at::manual_seed(12);
  SlaConfig cfg;
  cfg.topk = 0.3;
  cfg.blkq = 64;
  cfg.blkk = 64;
  cfg.variant = Variant::kComplement;
  const int64_t B = 1, H = 2, L = 333, D = 64;
  const at::Tensor q = random_input(B, H, L, D, at::kBFloat16, true);
  const at::Tensor k = random_input(B, H, L, D, at::kBFloat16, true);
  const at::Tensor v = random_input(B, H, L, D, at::kBFloat16, true);
  const auto f32 = at::TensorOptions().device(at::kCUDA).dtype(at::kFloat);
  const at::Tensor w = at::randn({D, D}, f32) * (1.0 / std::sqrt(double(D)));
  const at::Tensor b = at::randn({D}, f32) * 0.1;
  const at::Tensor plain = sla::cuda_sla_attention(q, k, v, w, b, cfg, 0.0);
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  const at::Tensor autocast = sla::cuda_sla_attention(q, k, v, w, b, cfg, 0.0);
  at::autocast::set_autocast_enabled(at::kCUDA, false);
  at::autocast::clear_cache();
  CHECK(autocast.equal(plain));
}
