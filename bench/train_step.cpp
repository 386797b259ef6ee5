// sla-train-bench: what SLA buys a training step. The example DiT's transformer blocks
// (examples/dit.h) at Wan 2.1 1.3B's attention width: hidden 1536, 12 heads of 128, FFN 8960,
// cross-attention to a 512-token text context; bf16 autocast, AdamW. In one process, on the same
// inputs, each attention mechanism trains the same freshly seeded blocks: self-attention through
// sla::AttentionBackend ("sdpa": at::scaled_dot_product_attention, cuDNN backend only; "sla": the
// fused kernels, variant all), cross-attention through SDPA in every run. Reports the median step
// time (forward + backward + optimizer step, CUDA events) and the peak memory of one step
// (parameters, gradients, optimizer state, inputs and activations), as ratios to SDPA. Also the
// self-attention call alone (forward with gradients enabled + backward, through the same backend,
// at the blocks' shape), which bounds what a faster kernel can give: the step without
// self-attention takes about step(SDPA) − depth × attention(SDPA).
//
// Not modelled (Wan has them, they cost the same in every run): adaLN modulation, RMSNorm of q and
// k, rotary embeddings, the patch and text embedders.
//
// Example: sla-train-bench --reps 10 --markdown train.md --commit $(git rev-parse --short HEAD)
#include "cuda_timing.h"
#include "dit.h"
#include "sla/hooks.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adamw.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace {

using sla::bench::median_ms;

struct Mechanism {
  std::string label;       // as printed
  std::string attention;   // BackendOptions::attention_mechanism
  std::string sla_config;  // for "sla"
};

struct Result {
  int64_t tokens;
  std::string label;
  double step_ms, peak_gib;
  double attention_ms;  // one self-attention call alone, forward (gradients on) + backward
};

// bf16 autocast on CUDA for the forward, as `with torch.autocast("cuda", torch.bfloat16)` does:
// on at construction, off and the cast cache cleared at destruction.
class Autocast {
 public:
  Autocast() {
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::increment_nesting();
  }
  ~Autocast() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCUDA, false);
  }
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;
};

struct Inputs {
  at::Tensor x, context, target;  // (1, L, hidden), (1, Lc, hidden), (1, L, hidden) float32
};

Result time_training(const Mechanism& m, const sla_dit::DitConfig& cfg, const Inputs& in, int warmup, int reps) {
  const auto dev = at::cuda::current_device();
  c10::cuda::CUDACachingAllocator::emptyCache();
  sla::BackendOptions options;
  options.attention_mechanism = m.attention;
  options.sla_config = m.sla_config;
  auto backend = std::make_shared<sla::AttentionBackend>(options);
  torch::manual_seed(0);  // the same weights for every mechanism
  std::vector<sla_dit::TransformerBlock> blocks;
  std::vector<at::Tensor> params;
  for (int64_t i = 0; i < cfg.depth; ++i) {
    blocks.emplace_back(cfg, backend);
    blocks.back()->to(at::kCUDA);
    for (const at::Tensor& p : blocks.back()->parameters()) params.push_back(p);
  }
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(1e-4).weight_decay(0.0));
  if (backend->uses_sla()) {
    backend->materialize(cfg.attention_head_dim, at::Device(at::kCUDA, dev), at::kBFloat16);
    backend->register_with(optimizer);  // proj_l learns, as in training
  }
  auto step = [&] {
    optimizer.zero_grad();
    at::Tensor loss;
    {
      const Autocast autocast;
      at::Tensor h = in.x;
      for (auto& block : blocks) h = block->forward(h, in.context);
      loss = torch::nn::functional::mse_loss(h.to(at::kFloat), in.target);
    }
    loss.backward();
    optimizer.step();
  };
  const double ms = median_ms(step, warmup, reps);
  // Peak of one step on top of what lives between steps (weights, optimizer state, inputs).
  cudaDeviceSynchronize();
  c10::cuda::CUDACachingAllocator::resetPeakStats(dev);
  step();
  cudaDeviceSynchronize();
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(dev);
  // Self-attention alone at the blocks' shape, (B, L, H, D) memory viewed as (B, H, L, D).
  const auto bf16 = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const int64_t L = in.x.size(1), H = cfg.num_attention_heads, D = cfg.attention_head_dim;
  std::vector<at::Tensor> qkv;
  for (int i = 0; i < 3; ++i) qkv.push_back(at::randn({1, L, H, D}, bf16).transpose(1, 2).requires_grad_(true));
  const at::Tensor grad_o = at::randn({1, L, H, D}, bf16).transpose(1, 2);
  const double attention_ms = median_ms(
      [&] {
        const at::Tensor o = (*backend)(qkv[0], qkv[1], qkv[2]);
        torch::autograd::grad({o}, qkv, {grad_o});
      },
      warmup, reps);
  Result r{L, m.label, ms, double(stats.allocated_bytes[0].peak) / double(1 << 30), attention_ms};
  if (backend->uses_sla() && backend->modules().empty()) {
    std::fprintf(stderr, "sla-train-bench: %s ran no SLA module (fell back to SDPA)\n", m.label.c_str());
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Training step of Wan-2.1-1.3B-shaped DiT blocks: SLA against SDPA (step time, peak memory)"};
  int reps = 10, warmup = 3;
  int64_t depth = 2, context_tokens = 512;
  std::vector<int64_t> lengths = {32760, 4608};
  std::string markdown, commit = "unknown", dense = "cudnn";
  app.add_option("--reps", reps, "timed steps per measurement (median reported)")->check(CLI::Range(3, 1000));
  app.add_option("--warmup", warmup, "untimed steps before timing")->check(CLI::Range(1, 100));
  app.add_option("--depth", depth, "transformer blocks")->check(CLI::Range(1, 64));
  app.add_option("--lengths", lengths, "sequence lengths (tokens)")->check(CLI::Range(int64_t(256), int64_t(1) << 20));
  app.add_option("--context", context_tokens, "text tokens for cross-attention")->check(CLI::Range(1, 1 << 16));
  app.add_option("--dense", dense, "SDPA backends: cudnn (cuDNN alone) or all (PyTorch's choice)")
      ->check(CLI::IsMember({"cudnn", "all"}));
  app.add_option("--markdown", markdown, "also write the markdown table to this file");
  app.add_option("--commit", commit, "commit id printed with the table");
  CLI11_PARSE(app, argc, argv);

  if (!at::hasCUDA()) {
    std::fprintf(stderr, "sla-train-bench: no CUDA device\n");
    return 2;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, at::cuda::current_device());
  if (dense == "cudnn") {
    auto& ctx = at::globalContext();
    ctx.setSDPUseFlash(false);
    ctx.setSDPUseMemEfficient(false);
    ctx.setSDPUseMath(false);
    ctx.setSDPUseCuDNN(true);
  }

  sla_dit::DitConfig cfg;  // Wan 2.1 1.3B's attention width
  cfg.num_attention_heads = 12;
  cfg.attention_head_dim = 128;
  cfg.ffn_hidden = 8960;
  cfg.cross_attention = true;
  cfg.depth = depth;
  const int64_t hidden = cfg.hidden_size();

  const std::vector<Mechanism> mechanisms = {
      {"SDPA", "sdpa", ""},
      {"SLA topk 0.05 128/64", "sla", "{'topk': 0.05, 'blkq': 128, 'blkk': 64}"},
      {"SLA topk 0.2 64/64", "sla", "{'topk': 0.2, 'blkq': 64, 'blkk': 64}"},
  };
  std::vector<Result> results;
  for (int64_t L : lengths) {
    at::manual_seed(L);
    const auto f32 = at::TensorOptions().device(at::kCUDA).dtype(at::kFloat);
    const Inputs in{at::randn({1, L, hidden}, f32), at::randn({1, context_tokens, hidden}, f32),
                    at::randn({1, L, hidden}, f32)};
    const size_t first = results.size();  // mechanisms[0], SDPA: the baseline of this length
    for (const Mechanism& m : mechanisms) {
      results.push_back(time_training(m, cfg, in, warmup, reps));
      const Result& r = results.back();
      const Result& base = results[first];
      std::printf("L %6lld %-22s step %9.3f ms (%5.2fx SDPA)  peak %7.3f GiB (SDPA %7.3f)  self-attention "
                  "fwd+bwd %7.3f ms\n",
                  (long long)L, m.label.c_str(), r.step_ms, base.step_ms / r.step_ms, r.peak_gib, base.peak_gib,
                  r.attention_ms);
      std::fflush(stdout);
    }
  }

  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::string md = "Date: " + std::string(date) + "  \nCard: " + prop.name + "  \nCommit: " + commit +
                   "  \n" + std::to_string(depth) + " DiT blocks (examples/dit.h) at hidden " + std::to_string(hidden) +
                   ", 12 x 128 heads, FFN 8960, cross-attention to " + std::to_string(context_tokens) +
                   " tokens (SDPA); bf16 autocast, AdamW, batch 1; SDPA = " +
                   (dense == "cudnn" ? "cuDNN backend only" : "PyTorch's backend choice") + "; median of " +
                   std::to_string(reps) + " steps after " + std::to_string(warmup) +
                   " warm-up steps. Step = forward + backward + optimizer step; peak = allocated during one step, "
                   "weights and optimizer state included."
                   " Self-attention ms: one call alone at the blocks' shape, forward with gradients + backward. "
                   "Bound: step(SDPA) / (step(SDPA) − depth × self-attention(SDPA)), the speed-up with "
                   "self-attention free.\n\n"
                   "| tokens | self-attention | step ms | speed-up over SDPA | bound | self-attention ms | "
                   "peak GiB | peak / SDPA |\n|---|---|---|---|---|---|---|---|\n";
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    const Result& base = results[i - i % mechanisms.size()];  // SDPA at this length
    const double bound = base.step_ms / (base.step_ms - double(depth) * base.attention_ms);
    char line[256];
    std::snprintf(line, sizeof line, "| %lld | %s | %.2f | %.2fx | %.2fx | %.3f | %.3f | %.2f |\n",
                  (long long)r.tokens, r.label.c_str(), r.step_ms, base.step_ms / r.step_ms, bound, r.attention_ms,
                  r.peak_gib, r.peak_gib / base.peak_gib);
    md += line;
  }
  std::printf("\n%s", md.c_str());
  if (!markdown.empty()) std::ofstream(markdown) << md;
  return 0;
}
