// Helper of test_hooks_python.py: the hooks' side of the Python interop.
//   hooks_roundtrip write <dir>   builds SLA modules 32:bf16 and 16:fp16 with known weights
//                                 (weight[i] = sin(0.1 (i+1) s), bias[i] = cos(0.1 (i+1) s), s = 1 for
//                                 32:bf16, 2 for 16:fp16) and writes <dir>/sla_attention.pt
//   hooks_roundtrip read <dir> <head_dim> <dtype>
//                                 loads <dir> into a fresh backend, runs one SLA call with that
//                                 (head_dim, dtype) and prints the module's proj_l as JSON on stdout
#include "sla/hooks.h"

#include <ATen/core/grad_mode.h>

#include <nlohmann/json.hpp>

#include <iostream>
#include <string>

namespace {

sla::BackendOptions options() {
  sla::BackendOptions o;
  o.sla_config = "{'topk': 0.3, 'blkq': 32, 'blkk': 64, 'tie_feature_map_qk': False}";
  return o;
}

void fill(sla::SparseLinearAttention& m, double s) {
  at::NoGradGuard no_grad;
  const int64_t d = m->head_dim();
  m->proj_l->weight.copy_(at::sin((at::arange(d * d, at::kDouble) + 1) * 0.1 * s).to(at::kFloat).view({d, d}));
  m->proj_l->bias.copy_(at::cos((at::arange(d, at::kDouble) + 1) * 0.1 * s).to(at::kFloat));
}

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "bf16") return at::kBFloat16;
  if (name == "fp16") return at::kHalf;
  if (name == "fp32") return at::kFloat;
  throw std::invalid_argument("dtype must be bf16, fp16 or fp32");
}

std::vector<float> values(const at::Tensor& t) {
  const at::Tensor c = t.detach().contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = argc > 2 ? argv[1] : "";
    sla::AttentionBackend backend(options());
    // The library logs nowhere by default; the Python test reads the lines from stderr.
    backend.log = [](const std::string& line) { std::cerr << "sla: " << line << std::endl; };
    if (mode == "write" && argc == 3) {
      auto a = backend.materialize(32, at::kCPU, at::kBFloat16);
      auto b = backend.materialize(16, at::kCPU, at::kHalf);
      fill(a, 1.0);
      fill(b, 2.0);
      backend.on_save_checkpoint(argv[2]);
      return 0;
    }
    if (mode == "read" && argc == 5) {
      const sla::LoadReport report = backend.on_load_checkpoint(argv[2]);
      const int64_t d = std::stoll(argv[3]);
      const at::ScalarType dtype = parse_dtype(argv[4]);
      const at::Tensor x = at::randn({1, 2, 64, d}).to(dtype);
      backend(x, x, x);  // the module is created by the call, as in training
      const auto m = backend.modules().front();
      nlohmann::json out = {{"weight", values(m->proj_l->weight)},
                            {"bias", values(m->proj_l->bias)},
                            {"differing_keys", report.differing_keys},
                            {"loaded_keys", report.loaded_keys}};
      std::cout << out.dump() << "\n";
      return 0;
    }
    std::cerr << "usage: hooks_roundtrip write <dir> | read <dir> <head_dim> <bf16|fp16|fp32>\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "hooks_roundtrip: " << e.what() << "\n";
    return 1;
  }
}
