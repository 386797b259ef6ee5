// The CUDA side of the attention backend: float32 on CUDA falls back to SDPA (said once), bf16 on
// CUDA runs SLA (the fused kernels when built, the reference otherwise) and matches the CPU
// reference. Exits 77 (skipped) without a CUDA device.
#if __has_include(<catch2/catch_session.hpp>)
#include <catch2/catch_session.hpp>
#else
#define CATCH_CONFIG_RUNNER
#endif
#include <catch.hpp>

#include "gpu_skip.h"
#include "sla/hooks.h"
#include "sla/reference.h"

#include <ATen/Context.h>

TEST_CASE("float32 on CUDA falls back to SDPA, once", "[hooks][gpu]") {
  sla::AttentionBackend backend(sla::BackendOptions{"sla", "{'blkq': 32, 'blkk': 32}", true, "", nullptr, nullptr});
  std::vector<std::string> lines;
  backend.log = [&](const std::string& line) { lines.push_back(line); };
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kFloat);
  const at::Tensor q = at::randn({1, 2, 128, 64}, opts), k = at::randn({1, 2, 128, 64}, opts),
                   v = at::randn({1, 2, 128, 64}, opts);
  for (int call = 0; call < 3; ++call) CHECK(at::equal(backend(q, k, v), at::scaled_dot_product_attention(q, k, v)));
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("float32 inputs on CUDA") != std::string::npos);
  CHECK(backend.modules().empty());
}

TEST_CASE("bf16 on CUDA runs SLA and agrees with the float64 reference", "[hooks][gpu]") {
  sla::AttentionBackend backend(
      sla::BackendOptions{"sla", "{'topk': 0.5, 'blkq': 64, 'blkk': 64}", true, "", nullptr, nullptr});
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const at::Tensor q = at::randn({1, 2, 256, 64}, opts), k = at::randn({1, 2, 256, 64}, opts),
                   v = at::randn({1, 2, 256, 64}, opts);
  const at::Tensor o = backend(q, k, v);
  CHECK(o.scalar_type() == at::kBFloat16);
  CHECK(o.is_cuda());
  REQUIRE(backend.modules().size() == 1);
  CHECK(backend.modules()[0]->proj_l->weight.is_cuda());
  const auto cpu64 = [](const at::Tensor& t) { return t.to(at::kCPU, at::kDouble); };
  const at::Tensor exact = sla::reference::attention(cpu64(q), cpu64(k), cpu64(v), at::zeros({64, 64}),
                                                     at::zeros({64}), backend.config());
  CHECK((o.to(at::kCPU, at::kDouble) - exact).abs().max().item<double>() < 0.05);
}

TEST_CASE("bf16 on CUDA that the kernels refuse runs the reference and says why, once", "[hooks][gpu]") {
  sla::AttentionBackend backend(sla::BackendOptions{"sla", "{'blkq': 32, 'blkk': 32}", true, "", nullptr, nullptr});
  std::vector<std::string> lines;
  backend.log = [&](const std::string& line) { lines.push_back(line); };
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const at::Tensor q = at::randn({1, 2, 64, 96}, opts);  // head_dim 96: not in the kernels' table
  for (int call = 0; call < 2; ++call) CHECK(backend(q, q, q).sizes() == q.sizes());
#ifdef SLA_HAVE_CUDA_KERNELS
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("expected head_dim 64 or 128, got 96") != std::string::npos);
#else
  CHECK(lines.empty());
#endif
}

int main(int argc, char** argv) {
  if (!at::hasCUDA()) return kSkipNoGpu;
  return Catch::Session().run(argc, argv);
}
