// The kernel playground: one configuration of the fused kernels against the float64 reference, for
// quick iteration on the GPU. Not a test (no verdict, no CTest entry); built with the CUDA kernels.
//   sla-kernel-check [B H L D topk blkq blkk dtype variant feature_map reps]
//   sla-kernel-check 1 2 4096 128 0.2 64 64 bf16 all softmax 10
// Prints, for o and the gradients of q, k, v, proj_l.weight, proj_l.bias: max and mean |kernel -
// reference| and max |reference|; then the kernels' mean forward and forward+backward times over
// `reps` runs (CUDA events, after one warm-up). Unsupported configurations print why_not's line.
#include "sla/reference.h"
#include "sla/sla_config.h"
#include "sla/sla_kernels.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/core/grad_mode.h>
#include <ATen/cuda/CUDAEvent.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

namespace {

const char* const kUsage =
    "usage: sla-kernel-check [B H L D topk blkq blkk dtype variant feature_map reps]\n"
    "  defaults 1 2 1024 64 0.2 64 64 bf16 all softmax 10; dtype bf16|fp16, variant all|complement,\n"
    "  feature_map softmax|elu|relu\n";

struct Args {
  int64_t B = 1, H = 2, L = 1024, D = 64;
  double topk = 0.2;
  int64_t blkq = 64, blkk = 64;
  std::string dtype = "bf16", variant = "all", feature_map = "softmax";
  int reps = 10;
};

Args parse(int argc, char** argv) {
  Args a;
  std::vector<std::string> v(argv + 1, argv + argc);
  auto arg = [&](size_t i) -> const std::string* { return i < v.size() ? &v[i] : nullptr; };
  if (auto s = arg(0)) a.B = std::stoll(*s);
  if (auto s = arg(1)) a.H = std::stoll(*s);
  if (auto s = arg(2)) a.L = std::stoll(*s);
  if (auto s = arg(3)) a.D = std::stoll(*s);
  if (auto s = arg(4)) a.topk = std::stod(*s);
  if (auto s = arg(5)) a.blkq = std::stoll(*s);
  if (auto s = arg(6)) a.blkk = std::stoll(*s);
  if (auto s = arg(7)) a.dtype = *s;
  if (auto s = arg(8)) a.variant = *s;
  if (auto s = arg(9)) a.feature_map = *s;
  if (auto s = arg(10)) a.reps = std::stoi(*s);
  if (v.size() > 11 || (a.dtype != "bf16" && a.dtype != "fp16") || a.reps < 1) throw std::invalid_argument(kUsage);
  return a;
}

sla::SlaConfig config(const Args& a) {
  sla::SlaConfig cfg;
  cfg.topk = a.topk;
  cfg.blkq = a.blkq;
  cfg.blkk = a.blkk;
  if (a.variant == "all") cfg.variant = sla::Variant::kAll;
  else if (a.variant == "complement") cfg.variant = sla::Variant::kComplement;
  else throw std::invalid_argument(kUsage);
  if (a.feature_map == "softmax") cfg.feature_map = sla::FeatureMap::kSoftmax;
  else if (a.feature_map == "elu") cfg.feature_map = sla::FeatureMap::kElu;
  else if (a.feature_map == "relu") cfg.feature_map = sla::FeatureMap::kRelu;
  else throw std::invalid_argument(kUsage);
  return cfg;
}

void report(const char* name, const at::Tensor& got, const at::Tensor& exact) {
  const at::Tensor err = (got.to(at::kDouble) - exact).abs();
  std::printf("  %-7s max |err| %.3e  mean |err| %.3e  max |ref| %.3e\n", name, err.max().item<double>(),
              err.mean().item<double>(), exact.abs().max().item<double>());
}

// Mean milliseconds of fn over reps runs, after one warm-up.
template <class Fn>
double time_ms(int reps, Fn fn) {
  fn();
  at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
  start.record();
  for (int i = 0; i < reps; ++i) fn();
  stop.record();
  stop.synchronize();
  return double(start.elapsed_time(stop)) / reps;
}

int run(const Args& a) {
  const sla::SlaConfig cfg = config(a);
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(a.dtype == "bf16" ? at::kBFloat16 : at::kHalf);
  at::manual_seed(0);
  const at::Tensor q = at::randn({a.B, a.H, a.L, a.D}, opts), k = at::randn({a.B, a.H, a.L, a.D}, opts),
                   v = at::randn({a.B, a.H, a.L, a.D}, opts), g = at::randn({a.B, a.H, a.L, a.D}, opts);
  const auto f32 = opts.dtype(at::kFloat);
  const at::Tensor w = at::randn({a.D, a.D}, f32) / std::sqrt(double(a.D)), b = at::randn({a.D}, f32) * 0.1;
  std::string why;
  if (!sla::cuda_kernels_support(q, k, v, cfg, &why)) {
    std::printf("unsupported: %s\n", why.c_str());
    return 2;
  }
  std::printf("B %lld H %lld L %lld D %lld topk %g blk %lld/%lld %s %s %s\n", (long long)a.B, (long long)a.H,
              (long long)a.L, (long long)a.D, a.topk, (long long)a.blkq, (long long)a.blkk, a.dtype.c_str(),
              a.variant.c_str(), a.feature_map.c_str());

  // Kernels: o and the five gradients of sum(g ∘ o).
  std::vector<at::Tensor> in;
  for (const at::Tensor* t : {&q, &k, &v, &w, &b}) in.push_back(t->detach().requires_grad_(true));
  const at::Tensor o = sla::cuda_sla_attention(in[0], in[1], in[2], in[3], in[4], cfg, 0.0);
  const auto grads = torch::autograd::grad({o}, in, {g});
  // Reference in float64 on the same device, differentiated by autograd.
  std::vector<at::Tensor> in64;
  for (const at::Tensor* t : {&q, &k, &v, &w, &b}) in64.push_back(t->to(at::kDouble).requires_grad_(true));
  const at::Tensor o64 = sla::reference::attention(in64[0], in64[1], in64[2], in64[3], in64[4], cfg, 0.0);
  const auto grads64 = torch::autograd::grad({o64}, in64, {g.to(at::kDouble)});
  std::printf("errors against the float64 reference:\n");
  report("o", o.detach(), o64.detach());
  const char* names[] = {"dq", "dk", "dv", "dw", "db"};
  for (int i = 0; i < 5; ++i) report(names[i], grads[i], grads64[i]);

  at::NoGradGuard no_grad;
  const double fwd = time_ms(a.reps, [&] { sla::cuda_sla_attention(q, k, v, w, b, cfg, 0.0); });
  const double both = time_ms(a.reps, [&] { sla::cuda_sla_backward(g, q, k, v, w, b, cfg, 0.0); });
  std::printf("time (mean of %d): forward %.3f ms, forward + backward %.3f ms\n", a.reps, fwd, both);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (!at::hasCUDA()) {
      std::fprintf(stderr, "sla-kernel-check: no CUDA device\n");
      return 77;
    }
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sla-kernel-check: %s\n", e.what());
    return 1;
  }
}
