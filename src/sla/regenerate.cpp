#include "regenerate.h"

#include "one_step.h"
#include "reference.h"
#include "sla_config.h"

#include "sla/checkpoint/errors.h"
#include "sla/checkpoint/safetensors.h"
#include "sla/checkpoint/sla_state.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>

#ifndef SLA_TOOLKIT_VERSION
#define SLA_TOOLKIT_VERSION "0.0.0"
#endif

namespace sla {
namespace {

using sla::checkpoint::CheckpointError;
using sla::checkpoint::RegenerateEntry;
using sla::checkpoint::RegeneratePlan;

constexpr int64_t kSampleBatch = 2;
constexpr int64_t kSampleHeads = 4;

at::ScalarType scalar_type_of(sla::checkpoint::safetensors::Dtype dtype) {
  using sla::checkpoint::safetensors::Dtype;
  switch (dtype) {
    case Dtype::kF64: return at::kDouble;
    case Dtype::kF32: return at::kFloat;
    case Dtype::kF16: return at::kHalf;
    case Dtype::kBF16: return at::kBFloat16;
    default:
      throw CheckpointError("E_CONFIG", std::string("calibration dtype ") + dtype_name(dtype) + " unsupported");
  }
}

// q, k, v as float32 CPU tensors: from the calibration file or N(0, 1) samples with L covering 8 key blocks.
std::array<at::Tensor, 3> calibration_inputs(const RegeneratePlan& plan, int64_t head_dim, const SlaConfig& cfg) {
  if (!plan.calibration.empty()) {
    const auto file = sla::checkpoint::safetensors::read_file(plan.calibration);
    std::array<at::Tensor, 3> out;
    const char* names[] = {"q", "k", "v"};
    for (int i = 0; i < 3; ++i) {
      const auto* t = file.find(names[i]);
      if (!t) throw CheckpointError("E_CONFIG", std::string("calibration lacks ") + names[i], plan.calibration);
      out[i] = at::from_blob(const_cast<uint8_t*>(t->bytes.data()), t->shape,
                             at::TensorOptions().dtype(scalar_type_of(t->dtype)))
                   .to(at::kFloat, /*non_blocking=*/false, /*copy=*/true);
      if (!at::isfinite(out[i]).all().item<bool>())
        throw CheckpointError("E_CONFIG", std::string("calibration tensor ") + names[i] + " holds NaN or infinite values",
                              plan.calibration);
    }
    return out;
  }
  at::manual_seed(0);
  const int64_t len = 8 * std::max(cfg.blkq, cfg.blkk);
  auto sample = [&] { return at::randn({kSampleBatch, kSampleHeads, len, head_dim}, at::kFloat); };
  return {sample(), sample(), sample()};
}

// The reference step holds the (L, L) scores of every (batch, head) in float32, about three
// copies of them at its peak (2.5 measured on the CPU for (1, 4, 8192, 64), besides LibTorch's own).
constexpr double kReferenceScoreCopies = 3.0;

double reference_step_bytes(const at::Tensor& q) {
  const double len = double(q.size(2));
  return kReferenceScoreCopies * double(q.size(0)) * double(q.size(1)) * len * len * sizeof(float);
}

// What the system can still give this process (Linux: MemAvailable), or nothing where unknown.
std::optional<double> available_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    unsigned long long kib = 0;
    if (std::sscanf(line.c_str(), "MemAvailable: %llu kB", &kib) == 1) return double(kib) * 1024;
  }
  return std::nullopt;
}

// A calibration too long for the reference step on the CPU is refused before it is run, rather
// than left to the kernel's out-of-memory killer (which would end the process without a word).
void check_reference_fits(const at::Tensor& q, const std::string& calibration) {
  const double need = reference_step_bytes(q);
  const std::optional<double> have = available_bytes();
  if (!have || need <= *have) return;
  constexpr double kGiB = 1024.0 * 1024 * 1024;
  char message[320];
  std::snprintf(message, sizeof message,
                "calibration of shape [%lld, %lld, %lld, %lld] needs about %.1f GiB for the one-step reference's "
                "(L, L) scores, %.1f GiB available; keep fewer heads or tokens (e.g. q[:, :2, :8192])",
                static_cast<long long>(q.size(0)), static_cast<long long>(q.size(1)), static_cast<long long>(q.size(2)),
                static_cast<long long>(q.size(3)), need / kGiB, *have / kGiB);
  throw CheckpointError("E_CONFIG", message, calibration);
}

// The device the plan asks for; auto takes CUDA when there is one.
at::Device device_of(const std::string& name) {
  if (name == "cuda" && !at::hasCUDA())
    throw std::invalid_argument("--device cuda but no CUDA device is available");
  return (name == "cuda" || (name == "auto" && at::hasCUDA())) ? at::Device(at::kCUDA) : at::Device(at::kCPU);
}

SlaConfig config_of(const RegeneratePlan& plan) {
  nlohmann::json s = sla::checkpoint::settings_to_json(plan.settings);
  s[sla::checkpoint::kSettingVariant] = plan.variant;
  return SlaConfig::parse(s.dump());
}

sla::checkpoint::Float32Tensor to_float32(const at::Tensor& t) {
  const at::Tensor c = t.detach().to(at::kCPU, at::kFloat).contiguous();
  return {c.sizes().vec(), std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel())};
}

std::pair<RegeneratedEntry, sla::checkpoint::SlaEntry> regenerate_entry(const RegenerateEntry& planned,
                                                                        const RegeneratePlan& plan,
                                                                        const SlaConfig& cfg, const at::Device& device) {
  const int64_t head_dim = planned.head_dim;
  // On a GPU the step runs in the entry's dtype, as training would; on the CPU in float32 (the
  // reference's half-precision matmuls are slow there and the projection itself is float32 anyway).
  const at::ScalarType dtype =
      device.is_cuda() ? (planned.dtype_token == "fp16" ? at::kHalf : at::kBFloat16) : at::kFloat;
  auto [q32, k32, v32] = calibration_inputs(plan, head_dim, cfg);
  if (q32.size(3) != head_dim)
    throw CheckpointError("E_CONFIG", "calibration head_dim differs from entry " + planned.key, plan.calibration);
  if (device.is_cpu() && !plan.calibration.empty()) check_reference_fits(q32, plan.calibration);
  const at::Tensor q = q32.to(device, dtype), k = k32.to(device, dtype), v = v32.to(device, dtype);
  const at::Tensor dense = at::scaled_dot_product_attention(q32.to(device), k32.to(device), v32.to(device));

  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  at::Tensor w = at::zeros({head_dim, head_dim}, f32).requires_grad_(true);
  at::Tensor b = at::zeros({head_dim}, f32).requires_grad_(true);
  const OneStep step = descend_once(
      {w, b}, [&] { return (reference::attention(q, k, v, w, b, cfg).to(at::kFloat) - dense).pow(2).mean(); },
      planned.key);

  RegeneratedEntry report{planned.key, step.loss_before, step.loss_after, step.learning_rate};
  sla::checkpoint::SlaEntry entry;
  entry.key = planned.key;
  entry.head_dim = head_dim;
  entry.dtype_token = planned.dtype_token;
  entry.weight = to_float32(w);
  entry.bias = to_float32(b);
  return {report, entry};
}

// regenerate_entry, with LibTorch's own errors (an allocation that failed: a GPU out of memory, an
// address-space limit) said in one line naming the entry, without their C++ backtrace.
std::pair<RegeneratedEntry, sla::checkpoint::SlaEntry> run_entry(const RegenerateEntry& planned,
                                                                 const RegeneratePlan& plan, const SlaConfig& cfg,
                                                                 const at::Device& device) {
  try {
    return regenerate_entry(planned, plan, cfg, device);
  } catch (const c10::Error& e) {
    std::string message = e.what_without_backtrace();
    message = message.substr(0, message.find('\n'));
    const bool memory = message.find("memory") != std::string::npos;
    const std::string advice = memory && !plan.calibration.empty() ? " (a shorter calibration needs less)" : "";
    throw CheckpointError("E_REGENERATE", "the one-step run failed: " + message + advice, planned.key);
  }
}

}  // namespace

RegenerateReport regenerate(const RegeneratePlan& plan, const sla::checkpoint::LogFn& log) {
  const SlaConfig cfg = config_of(plan);
  const at::Device device = device_of(plan.device);
  sla::checkpoint::SlaFile file;
  file.settings = plan.settings;
  file.extension = {{"regenerated", true},
                    {"regenerated_from", plan.inputs},
                    {sla::checkpoint::kSettingVariant, plan.variant},
                    {"writer", "sla-ckpt regenerate " SLA_TOOLKIT_VERSION},
                    {"regenerated_device", device.is_cuda() ? "cuda" : "cpu"}};
  file.has_extension = true;

  RegenerateReport report;
  report.output = plan.output;
  report.device = device.is_cuda() ? "cuda" : "cpu";
  report.regenerated_from = plan.inputs;
  for (const auto& planned : plan.entries) {
    auto [entry_report, entry] = run_entry(planned, plan, cfg, device);
    char line[256];
    std::snprintf(line, sizeof line, "%s: mse vs dense attention before %.6g, after %.6g (one SGD step, lr %.4g, %s)",
                  entry_report.key.c_str(), entry_report.error_before, entry_report.error_after,
                  entry_report.learning_rate, report.device.c_str());
    sla::checkpoint::log_to(log, sla::checkpoint::LogLevel::kInfo, line);
    report.entries.push_back(entry_report);
    file.entries.push_back(std::move(entry));
  }
  sla::checkpoint::write_sla_file(plan.output, file);
  return report;
}

}  // namespace sla
