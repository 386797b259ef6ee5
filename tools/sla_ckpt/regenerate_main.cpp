// sla-ckpt-regenerate --plan JSON [--json]: the LibTorch half of `sla-ckpt regenerate`, which
// works out the plan (regenerate.cpp) and execs this program.
//
// For every (head_dim, dtype) entry it distils the SLA projection from dense attention: on q/k/v
// (the calibration file's, else standard-normal samples of the head dim) it takes one SGD step on
// proj_l of a freshly initialised (zero) projection against the mean squared error between the
// SLA output and dense softmax attention. With W, b the only parameters and o = o_s + W o_l + b
// linear in them, the error along the negative gradient g is a parabola
//   e(t) = e0 - t |g|^2 + c t^2,   c = e(1) - e0 + |g|^2,
// so the learning rate t* = |g|^2 / (2c) lowers it whenever g != 0; rounding of half-precision
// inputs is absorbed by halving t until the error is lower. The error before and after is
// printed. The file is written through write_sla_file (atomic) and records in its extension key
// that it was regenerated and from what.
//
// For a checkpoint of the example DiT (plan mode "example-dit") it instead loads the model weights,
// freezes them, and takes one step of the example's flow-matching loss on its synthetic batch in
// which only proj_l of the SLA modules learns (SGD, learning rate chosen as above so that the loss
// on that batch goes down). The backend writes the file's entries, exactly as the trainer would.
#include "sla/checkpoint/errors.h"
#include "sla/checkpoint/safetensors.h"
#include "sla/sla_config.h"
#include "sla/checkpoint/sla_state.h"
#include "sla/reference.h"
#include "dit.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/autograd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <fstream>
#include <string>
#include <unistd.h>

#ifndef SLA_TOOLKIT_VERSION
#define SLA_TOOLKIT_VERSION "0.0.0"
#endif

namespace {

using nlohmann::json;

constexpr int64_t kSampleBatch = 2;
constexpr int64_t kSampleHeads = 4;
constexpr int kMaxHalvings = 30;

struct EntryResult {
  std::string key;
  double error_before = 0;
  double error_after = 0;
  double learning_rate = 0;
  sla::checkpoint::SlaEntry entry;
};

at::ScalarType scalar_type_of(sla::checkpoint::safetensors::Dtype dtype) {
  using sla::checkpoint::safetensors::Dtype;
  switch (dtype) {
    case Dtype::kF64: return at::kDouble;
    case Dtype::kF32: return at::kFloat;
    case Dtype::kF16: return at::kHalf;
    case Dtype::kBF16: return at::kBFloat16;
    default: throw sla::checkpoint::CheckpointError("E_CONFIG", std::string("calibration dtype ") + dtype_name(dtype) + " unsupported");
  }
}

// q, k, v as float32 CPU tensors: from the calibration file or N(0, 1) samples with L covering 8 key blocks.
std::array<at::Tensor, 3> calibration_inputs(const json& plan, int64_t head_dim, const sla::SlaConfig& cfg) {
  if (plan.contains("calibration")) {
    const std::string path = plan["calibration"];
    const auto file = sla::checkpoint::safetensors::read_file(path);
    std::array<at::Tensor, 3> out;
    const char* names[] = {"q", "k", "v"};
    for (int i = 0; i < 3; ++i) {
      const auto* t = file.find(names[i]);
      if (!t) throw sla::checkpoint::CheckpointError("E_CONFIG", std::string("calibration lacks ") + names[i], path);
      out[i] = at::from_blob(const_cast<uint8_t*>(t->bytes.data()), t->shape,
                             at::TensorOptions().dtype(scalar_type_of(t->dtype)))
                   .to(at::kFloat, /*non_blocking=*/false, /*copy=*/true);
    }
    return out;
  }
  at::manual_seed(0);
  const int64_t len = 8 * std::max(cfg.blkq, cfg.blkk);
  auto sample = [&] { return at::randn({kSampleBatch, kSampleHeads, len, head_dim}, at::kFloat); };
  return {sample(), sample(), sample()};
}

// The device the plan asks for; auto takes CUDA when there is one.
at::Device device_of(const json& plan) {
  const std::string device_name = plan.value("device", "auto");
  if (device_name == "cuda" && !at::hasCUDA())
    throw std::invalid_argument("--device cuda but no CUDA device is available");  // a usage error: exit 2
  return (device_name == "cuda" || (device_name == "auto" && at::hasCUDA())) ? at::Device(at::kCUDA) : at::Device(at::kCPU);
}

struct StepResult {
  double loss_before = 0;
  double loss_after = 0;
  double learning_rate = 0;
};

// One SGD step on `params` against loss(), with t* = |g|^2 / (2c) from the parabola through the loss
// at 0 and at a unit step, halved until the loss is lower than before.
StepResult descend(const std::vector<at::Tensor>& params, const std::function<at::Tensor()>& loss,
                   const std::string& where) {
  at::Tensor l0 = loss();
  const auto grads = torch::autograd::grad({l0}, params);
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> start;
  for (const auto& p : params) start.push_back(p.detach().clone());
  auto loss_at = [&](double lr) {
    for (size_t i = 0; i < params.size(); ++i) params[i].copy_(start[i] - lr * grads[i]);
    return loss().item<double>();
  };
  StepResult r;
  r.loss_before = l0.item<double>();
  double gnorm2 = 0;
  for (const auto& g : grads) gnorm2 += g.pow(2).sum().item<double>();
  const double curvature = loss_at(1.0) - r.loss_before + gnorm2;
  r.learning_rate = curvature > 0 ? gnorm2 / (2 * curvature) : 1.0;
  for (int i = 0; i < kMaxHalvings; ++i, r.learning_rate /= 2) {
    r.loss_after = loss_at(r.learning_rate);
    if (r.loss_after < r.loss_before) return r;
  }
  throw sla::checkpoint::CheckpointError("E_REGENERATE", "the SLA step did not lower the loss (gradient vanished?)", where);
}

EntryResult regenerate_entry(const json& pair, const json& plan, const sla::SlaConfig& cfg, const at::Device& device) {
  const int64_t head_dim = pair["head_dim"];
  const std::string token = pair["dtype"];
  // On a GPU the step runs in the entry's dtype, as training would; on the CPU in float32 (the
  // reference's half-precision matmuls are slow there and the projection itself is float32 anyway).
  const at::ScalarType dtype = device.is_cuda() ? (token == "fp16" ? at::kHalf : at::kBFloat16) : at::kFloat;
  auto [q32, k32, v32] = calibration_inputs(plan, head_dim, cfg);
  if (q32.size(3) != head_dim)
    throw sla::checkpoint::CheckpointError("E_CONFIG", "calibration head_dim differs from entry " + pair["key"].get<std::string>());
  const at::Tensor q = q32.to(device, dtype), k = k32.to(device, dtype), v = v32.to(device, dtype);
  const at::Tensor dense = at::scaled_dot_product_attention(q32.to(device), k32.to(device), v32.to(device));

  at::Tensor w = at::zeros({head_dim, head_dim}, at::TensorOptions().dtype(at::kFloat).device(device)).requires_grad_(true);
  at::Tensor b = at::zeros({head_dim}, at::TensorOptions().dtype(at::kFloat).device(device)).requires_grad_(true);
  const StepResult step = descend(
      {w, b}, [&] { return (sla::reference::attention(q, k, v, w, b, cfg).to(at::kFloat) - dense).pow(2).mean(); },
      pair["key"].get<std::string>());
  const at::Tensor w1 = w.detach(), b1 = b.detach();

  EntryResult result;
  result.key = pair["key"];
  result.error_before = step.loss_before;
  result.error_after = step.loss_after;
  result.learning_rate = step.learning_rate;
  result.entry.key = result.key;
  result.entry.head_dim = head_dim;
  result.entry.dtype_token = token;
  const at::Tensor wc = w1.to(at::kCPU).contiguous(), bc = b1.to(at::kCPU).contiguous();
  result.entry.weight = {{head_dim, head_dim}, std::vector<float>(wc.data_ptr<float>(), wc.data_ptr<float>() + wc.numel())};
  result.entry.bias = {{head_dim}, std::vector<float>(bc.data_ptr<float>(), bc.data_ptr<float>() + bc.numel())};
  return result;
}

// Mode example-dit: one real training step of the example DiT in which only the SLA projections learn.
int run_example_dit(const json& plan, bool as_json) {
  namespace fs = std::filesystem;
  const std::string dir = plan["checkpoint_dir"];
  const at::Device device = device_of(plan);
  sla_dit::TrainOptions options = sla_dit::Trainer::options_from_checkpoint(dir);
  options.attention_mechanism = "sla";
  options.sla_config = plan["settings"].dump();
  options.device = device.str();
  std::ifstream state_in(fs::path(dir) / "training_state.json");
  const int64_t step = json::parse(state_in).at("step").get<int64_t>();

  sla_dit::Trainer trainer(options);
  trainer.load_weights(dir);
  trainer.freeze_all_but_sla();
  trainer.model()->train();
  // The first forward creates the SLA modules (proj_l zero), the parameters of this step.
  trainer.loss_on_batch(step + 1);
  std::vector<at::Tensor> params;
  for (const auto& module : trainer.backend().modules())
    for (const auto& p : module->proj_l->parameters()) params.push_back(p);
  if (params.empty())
    throw sla::checkpoint::CheckpointError("E_REGENERATE", "the model ran no attention through SLA (all calls fell back)", dir);
  const StepResult r = descend(params, [&] { return trainer.loss_on_batch(step + 1); }, dir);
  std::fprintf(stderr, "example-dit: flow-matching loss on the batch of step %lld before %.6g, after %.6g "
               "(one SGD step on proj_l only, lr %.4g, %s)\n",
               static_cast<long long>(step + 1), r.loss_before, r.loss_after, r.learning_rate, device.str().c_str());

  // The backend lays out the entries as training writes them; written to a scratch folder, then
  // marked as regenerated and written atomically beside the checkpoint's other files.
  const fs::path scratch = fs::temp_directory_path() / ("sla-ckpt-regenerate-" + std::to_string(::getpid()));
  sla::checkpoint::SlaFile file;
  trainer.backend().log = [](const std::string&) {};  // its "wrote <scratch>" line would mislead
  try {
    trainer.backend().on_save_checkpoint(scratch.string());
    file = sla::checkpoint::load_sla_file((scratch / sla::checkpoint::kSlaFileName).string()).file;
  } catch (...) {
    fs::remove_all(scratch);
    throw;
  }
  fs::remove_all(scratch);
  const std::string from = "example-dit checkpoint " + dir;
  file.extension["regenerated"] = true;
  file.extension["regenerated_from"] = from;
  file.extension["regenerated_device"] = device.is_cuda() ? "cuda" : "cpu";
  file.extension["writer"] = "sla-ckpt-regenerate " SLA_TOOLKIT_VERSION;
  file.has_extension = true;
  sla::checkpoint::write_sla_file(plan["output"], file);

  const json report = {{"output", plan["output"]}, {"device", device.str()}, {"regenerated_from", from},
                       {"mode", "example-dit"}, {"step_batch", step + 1}, {"loss_before", r.loss_before},
                       {"loss_after", r.loss_after}, {"learning_rate", r.learning_rate}};
  if (as_json)
    std::printf("%s\n", report.dump(2).c_str());
  else
    std::printf("wrote %s (%zu entries, one SLA-only training step of the example DiT, loss %.6g -> %.6g)\n",
                plan["output"].get<std::string>().c_str(), file.entries.size(), r.loss_before, r.loss_after);
  return 0;
}

int run(const json& plan, bool as_json) {
  if (plan.value("mode", "") == "example-dit") return run_example_dit(plan, as_json);
  const sla::SlaConfig cfg = sla::SlaConfig::parse(plan["settings"].dump());
  const at::Device device = device_of(plan);
  sla::checkpoint::SlaFile file;
  const json& s = plan["settings"];
  file.settings.topk = s[sla::checkpoint::kSettingTopk];
  file.settings.feature_map = s[sla::checkpoint::kSettingFeatureMap];
  file.settings.blkq = s[sla::checkpoint::kSettingBlkq];
  file.settings.blkk = s[sla::checkpoint::kSettingBlkk];
  file.settings.tie_feature_map_qk = s[sla::checkpoint::kSettingTieFeatureMapQk];
  const std::string from = plan["inputs"];
  file.extension = {{"regenerated", true},
                    {"regenerated_from", from},
                    {sla::checkpoint::kSettingVariant, sla::to_string(cfg.variant)},
                    {"writer", "sla-ckpt-regenerate " SLA_TOOLKIT_VERSION},
                    {"regenerated_device", device.is_cuda() ? "cuda" : "cpu"}};
  file.has_extension = true;

  json report = {{"output", plan["output"]}, {"device", device.str()}, {"regenerated_from", from}, {"entries", json::array()}};
  for (const auto& pair : plan["entries"]) {
    EntryResult r = regenerate_entry(pair, plan, cfg, device);
    std::fprintf(stderr, "%s: mse vs dense attention before %.6g, after %.6g (one SGD step, lr %.4g, %s)\n",
                 r.key.c_str(), r.error_before, r.error_after, r.learning_rate, device.str().c_str());
    report["entries"].push_back(
        {{"key", r.key}, {"error_before", r.error_before}, {"error_after", r.error_after}, {"learning_rate", r.learning_rate}});
    file.entries.push_back(std::move(r.entry));
  }
  sla::checkpoint::write_sla_file(plan["output"], file);
  if (as_json)
    std::printf("%s\n", report.dump(2).c_str());
  else
    std::printf("wrote %s (%zu entries, regenerated from %s, not trained with the model)\n",
                plan["output"].get<std::string>().c_str(), file.entries.size(), from.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string plan_text;
  bool as_json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--plan" && i + 1 < argc) plan_text = argv[++i];
    else if (arg == "--json") as_json = true;
    else {
      std::fprintf(stderr, "usage: sla-ckpt-regenerate --plan JSON [--json] (run through `sla-ckpt regenerate`)\n");
      return 2;
    }
  }
  try {
    return run(json::parse(plan_text), as_json);
  } catch (const sla::checkpoint::CheckpointError& e) {
    std::fprintf(stderr, "sla-ckpt regenerate: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sla-ckpt regenerate: error: %s\n", e.what());
    return 2;
  }
}
