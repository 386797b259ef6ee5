// sla-bench: in one process, on the same fresh random inputs, times dense attention
// (at::scaled_dot_product_attention restricted to the cuDNN backend) and the fused SLA path
// (sla::cuda_sla_attention: block map + sparse kernels + linear branch + proj_l): the inference
// forward (no_grad), the training-path forward (gradients enabled: the autograd node and what it
// saves are built, as in training) and the backward separately, median of CUDA-event timings
// after warm-up. Prints speed-ups over dense, peak memory of forward + backward (inputs
// included), the card, and a markdown table.
//
// Example: sla-bench --reps 20 --markdown results.md --commit $(git rev-parse --short HEAD)
// `--variant both` runs every row with variant all and with variant complement (issue 16's
// "complement within 15 % of all" rows); the default is variant all alone.
#include "cuda_timing.h"
#include "sla/sla_config.h"
#include "sla/sla_kernels.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/csrc/autograd/autograd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <chrono>
#include <ctime>
#include <fstream>
#include <functional>
#include <vector>

namespace {

using sla::bench::median_ms;

// printf-style formatting into a std::string (torch's bundled fmt headers may not match the
// system libfmt, so the benchmark does without fmt).
std::string sformat(const char* f, ...) {
  va_list args, copy;
  va_start(args, f);
  va_copy(copy, args);
  std::string out(std::vsnprintf(nullptr, 0, f, copy), '\0');
  va_end(copy);
  std::vsnprintf(out.data(), out.size() + 1, f, args);
  va_end(args);
  return out;
}

struct Shape {
  int64_t B, H, L, D;
};

struct Row {
  Shape shape;
  double topk;
  int64_t blkq, blkk;
  sla::Variant variant;
  double dense_fwd_ms, dense_train_fwd_ms, dense_bwd_ms, sla_fwd_ms, sla_train_fwd_ms, sla_bwd_ms;
  double dense_peak_gib, sla_peak_gib;
  double block_map_ms;  // the block map alone, part of the SLA forward
};

using AttnFn = std::function<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>;

struct Timing {
  double fwd_ms, train_fwd_ms, bwd_ms, peak_gib;
};

// Forward under no_grad (inference); forward with gradients enabled (the training path: the
// graph node and its saved tensors are built, then dropped with the output); backward alone
// (graph built once, retained, gradients returned rather than accumulated); peak memory of one
// forward + backward from freshly allocated inputs.
Timing time_attention(const AttnFn& attn, const Shape& s, at::ScalarType dtype, int warmup, int reps,
                      sla::bench::Clock clock) {
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
  const auto dev = at::cuda::current_device();
  c10::cuda::CUDACachingAllocator::emptyCache();
  c10::cuda::CUDACachingAllocator::resetPeakStats(dev);
  const size_t base = c10::cuda::CUDACachingAllocator::getDeviceStats(dev).allocated_bytes[0].current;
  // (B, L, H, D) memory viewed as (B, H, L, D): the DiT layout, no copies.
  const at::Tensor q = at::randn({s.B, s.L, s.H, s.D}, opts).transpose(1, 2).requires_grad_(true);
  const at::Tensor k = at::randn({s.B, s.L, s.H, s.D}, opts).transpose(1, 2).requires_grad_(true);
  const at::Tensor v = at::randn({s.B, s.L, s.H, s.D}, opts).transpose(1, 2).requires_grad_(true);
  const at::Tensor grad_o = at::randn({s.B, s.L, s.H, s.D}, opts).transpose(1, 2);
  {
    const at::Tensor o = attn(q, k, v);
    const auto g = torch::autograd::grad({o}, {q, k, v}, {grad_o});
  }
  cudaDeviceSynchronize();
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(dev);
  Timing t;
  t.peak_gib = double(stats.allocated_bytes[0].peak - base) / double(1 << 30);
  {
    at::NoGradGuard no_grad;
    t.fwd_ms = median_ms([&] { attn(q, k, v); }, warmup, reps, clock);
  }
  t.train_fwd_ms = median_ms([&] { attn(q, k, v); }, warmup, reps, clock);
  const at::Tensor o = attn(q, k, v);
  t.bwd_ms = median_ms([&] { torch::autograd::grad({o}, {q, k, v}, {grad_o}, /*retain_graph=*/true); }, warmup,
                       reps, clock);
  return t;
}

std::string shape_name(const Shape& s) {
  return sformat("%lld,%lld,%lld,%lld", (long long)s.B, (long long)s.H, (long long)s.L, (long long)s.D);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Dense cuDNN attention vs fused SLA: forward and backward speed-up, peak memory"};
  int reps = 20, warmup = 5;
  std::string markdown, commit = "unknown";
  bool quick = false, host_ahead = false;
  std::string variant_choice = "all";
  app.add_option("--reps", reps, "timed repetitions per measurement (median reported)")->check(CLI::Range(20, 1000));
  app.add_option("--warmup", warmup, "untimed calls before timing");
  app.add_option("--markdown", markdown, "also write the markdown table to this file");
  app.add_option("--commit", commit, "commit id printed with the table");
  app.add_flag("--quick", quick,
               "only the issue's target rows: (1,12,32760,128) topk 0.05 128/64 and 0.2 64/64, (1,24,4608,128) "
               "topk 0.2, (1,16,16384,64) topk 0.05 64/64");
  app.add_flag("--host-ahead", host_ahead,
               "time each call queued behind a GPU spin, so the figures are GPU work alone (the host ahead, as in a "
               "training loop); default: the device idle before each call, the host's time to the first kernel "
               "included");
  app.add_option("--variant", variant_choice, "linear-branch variant of the SLA rows: all, complement, or both")
      ->check(CLI::IsMember({"all", "complement", "both"}));
  CLI11_PARSE(app, argc, argv);
  const sla::bench::Clock clock = host_ahead ? sla::bench::Clock::kHostAhead : sla::bench::Clock::kDeviceIdle;
  std::vector<sla::Variant> variants;
  if (variant_choice != "complement") variants.push_back(sla::Variant::kAll);
  if (variant_choice != "all") variants.push_back(sla::Variant::kComplement);

  if (!at::hasCUDA()) {
    std::fprintf(stderr, "sla-bench: no CUDA device\n");
    return 2;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, at::cuda::current_device());
  const std::string card = prop.name;

  // Dense baseline: the cuDNN backend alone.
  auto& ctx = at::globalContext();
  ctx.setSDPUseFlash(false);
  ctx.setSDPUseMemEfficient(false);
  ctx.setSDPUseMath(false);
  ctx.setSDPUseCuDNN(true);
  const AttnFn dense = [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    return at::scaled_dot_product_attention(q, k, v);
  };

  const std::vector<Shape> shapes = {{1, 12, 32760, 128}, {2, 16, 32760, 128}, {1, 24, 4608, 128}, {1, 16, 16384, 64}};
  const std::vector<double> topks = {0.05, 0.1, 0.2};
  const std::vector<std::pair<int64_t, int64_t>> blocks = {{128, 64}, {64, 64}};
  std::vector<Row> rows;
  for (const Shape& s : shapes) {
    at::manual_seed(s.L * 131 + s.H);
    const Timing d = time_attention(dense, s, at::kBFloat16, warmup, reps, clock);
    for (double topk : topks) {
      for (auto [blkq, blkk] : blocks) {
        const bool in_quick = (s.L == 32760 && s.B == 1 && topk == 0.05 && blkq == 128) ||
                              (s.L == 32760 && s.B == 1 && topk == 0.2 && blkq == 64) ||
                              (s.L == 4608 && topk == 0.2) || (s.D == 64 && topk == 0.05 && blkq == 64);
        if (quick && !in_quick) continue;
        for (sla::Variant variant : variants) {
          sla::SlaConfig cfg;
          cfg.topk = topk;
          cfg.blkq = blkq;
          cfg.blkk = blkk;
          cfg.variant = variant;
          const auto f32 = at::TensorOptions().device(at::kCUDA).dtype(at::kFloat);
          const at::Tensor w = at::randn({s.D, s.D}, f32) * (1.0 / std::sqrt(double(s.D)));  // trained-like proj_l
          const at::Tensor b = at::randn({s.D}, f32) * 0.1;
          const AttnFn sla_fn = [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
            return sla::cuda_sla_attention(q, k, v, w, b, cfg, 0.0);
          };
          const Timing t = time_attention(sla_fn, s, at::kBFloat16, warmup, reps, clock);
          double block_map_ms = 0;
          {
            const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
            const at::Tensor q = at::randn({s.B, s.L, s.H, s.D}, opts).transpose(1, 2);
            const at::Tensor k = at::randn({s.B, s.L, s.H, s.D}, opts).transpose(1, 2);
            block_map_ms = median_ms([&] { sla::cuda_block_map(q, k, cfg); }, warmup, reps, clock);
          }
          Row r{s,        topk,           blkq,     blkk,       variant,    d.fwd_ms,   d.train_fwd_ms, d.bwd_ms,
                t.fwd_ms, t.train_fwd_ms, t.bwd_ms, d.peak_gib, t.peak_gib, block_map_ms};
          std::printf("%-18s topk %.2f %3lld/%-3lld %-10s dense fwd %8.3f train fwd %8.3f bwd %8.3f ms | sla fwd "
                      "%8.3f ms (%5.2fx) train fwd %8.3f ms (%5.2fx) bwd %8.3f ms (%5.2fx) | peak fwd+bwd dense %.3f "
                      "GiB sla %.3f GiB | block map %.3f ms\n",
                      shape_name(s).c_str(), topk, (long long)blkq, (long long)blkk, sla::to_string(variant),
                      d.fwd_ms, d.train_fwd_ms, d.bwd_ms, t.fwd_ms, d.fwd_ms / t.fwd_ms, t.train_fwd_ms,
                      d.train_fwd_ms / t.train_fwd_ms, t.bwd_ms, d.bwd_ms / t.bwd_ms, d.peak_gib, t.peak_gib,
                      block_map_ms);
          std::fflush(stdout);
          rows.push_back(r);
        }
      }
    }
  }

  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::string md = sformat(
      "Date: %s  \nCard: %s  \nCommit: %s  \nbf16, (B, L, H, D) memory viewed as (B, H, L, D), median of %d CUDA-event "
      "timings after %d warm-up calls, %s; dense = at::scaled_dot_product_attention, cuDNN backend only; SLA = "
      "sla::cuda_sla_attention (block map + sparse + linear branch + proj_l), softmax feature map, "
      "random nonzero proj_l. fwd = inference (no_grad); train fwd = forward with gradients enabled (autograd node "
      "built, as in training). Peak = fwd + bwd, inputs and dO included.\n\n"
      "| shape (B,H,L,D) | topk | blkq/blkk | variant | dense fwd ms | dense train fwd ms | dense bwd ms | "
      "SLA fwd ms | SLA train fwd ms | SLA bwd ms | fwd speed-up | train fwd speed-up | bwd speed-up | "
      "peak dense GiB | peak SLA GiB | block map ms |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
      date, card.c_str(), commit.c_str(), reps, warmup,
      host_ahead ? "each call queued behind a GPU spin (host ahead: GPU work alone)"
                 : "the device idle before each call (host time to the first kernel included)");
  for (const Row& r : rows) {
    md += sformat(
        "| %s | %.2f | %lld/%lld | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.2fx | %.3f | "
        "%.3f | %.3f |\n",
        shape_name(r.shape).c_str(), r.topk, (long long)r.blkq, (long long)r.blkk, sla::to_string(r.variant),
        r.dense_fwd_ms, r.dense_train_fwd_ms, r.dense_bwd_ms, r.sla_fwd_ms, r.sla_train_fwd_ms, r.sla_bwd_ms,
        r.dense_fwd_ms / r.sla_fwd_ms, r.dense_train_fwd_ms / r.sla_train_fwd_ms, r.dense_bwd_ms / r.sla_bwd_ms,
        r.dense_peak_gib, r.sla_peak_gib, r.block_map_ms);
  }
  std::printf("\n%s", md.c_str());
  if (!markdown.empty()) std::ofstream(markdown) << md;
  return 0;
}
