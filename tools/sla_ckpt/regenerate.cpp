// sla-ckpt regenerate CHECKPOINT_DIR [--sla-config JSON] [--head-dim D]... [--dtype bf16|fp16]
//                    [--device auto|cpu|cuda] [--calibration FILE] [--force] [--dry-run] [--json]
// Rebuilds a missing sla_attention.pt with one SLA training step (for the example DiT's checkpoints
// a real step of its objective, else distillation from dense attention). This file works out the plan
// (which (head_dim, dtype) entries, which settings, which inputs) LibTorch-free, prints it for
// --dry-run, refuses to replace a valid file without --force, and hands the plan to the LibTorch
// executable sla-ckpt-regenerate (beside this binary, or $SLA_CKPT_REGENERATE), which runs the
// step and writes the file. Keeping LibTorch out of sla-ckpt keeps inspect/verify quick to start.
#include "cli.h"

#include "sla/checkpoint/errors.h"
#include "sla/checkpoint/safetensors.h"
#include "sla/checkpoint/sla_state.h"
#include "sla/checkpoint/verify.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <cstring>
#include <map>
#include <optional>
#include <set>

namespace sla::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct RegenerateArgs {
  std::string folder;
  std::string sla_config;
  std::vector<int64_t> head_dims;
  std::string dtype;
  std::string device = "auto";
  std::string calibration;
  bool force = false;
  bool dry_run = false;
  bool json = false;
};

// A Python-dict literal as SimpleTuner accepts it ({'topk': 0.15, 'tie_feature_map_qk': False}) or JSON.
json parse_settings_text(const std::string& text, const std::string& where) {
  std::string s = text;
  for (auto& c : s)
    if (c == '\'') c = '"';
  for (auto [from, to] : {std::pair{"True", "true"}, {"False", "false"}, {"None", "null"}})
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at))
      s.replace(at, std::strlen(from), to);
  json parsed;
  try {
    parsed = json::parse(s);
  } catch (const json::exception&) {
    throw CheckpointError("E_CONFIG", "SLA settings are neither JSON nor a Python dict: " + text, where);
  }
  if (!parsed.is_object()) throw CheckpointError("E_CONFIG", "SLA settings are not an object: " + text, where);
  return parsed;
}

// Defaults overlaid with `given`; unknown keys and bad values are errors.
json resolve_settings(const json& given, const std::string& where) {
  json s = settings_to_json(SlaSettings{});  // sorted keys, as before
  s[kSettingVariant] = kDefaultVariant;
  for (const auto& item : given.items()) {
    if (!s.contains(item.key()))
      throw CheckpointError("E_CONFIG", "unknown SLA setting '" + item.key() + "'", where);
    s[item.key()] = item.value();
  }
  const json &topk = s[kSettingTopk], &feature_map = s[kSettingFeatureMap], &variant = s[kSettingVariant];
  auto block_ok = [](const json& b) { return b.is_number_integer() && block_size_allowed(b.get<int64_t>()); };
  if (!topk.is_number() || !topk_allowed(topk.get<double>()))
    throw CheckpointError("E_CONFIG", std::string(kSettingTopk) + " must be a number in (0, 1]", where);
  if (!feature_map.is_string() || !feature_map_allowed(feature_map.get<std::string>()))
    throw CheckpointError("E_CONFIG", std::string(kSettingFeatureMap) + " must be " + feature_maps_text(), where);
  if (!block_ok(s[kSettingBlkq]) || !block_ok(s[kSettingBlkk]))
    throw CheckpointError("E_CONFIG", std::string(kSettingBlkq) + " and " + kSettingBlkk + " must be " + block_sizes_text(), where);
  if (!s[kSettingTieFeatureMapQk].is_boolean())
    throw CheckpointError("E_CONFIG", std::string(kSettingTieFeatureMapQk) + " must be a bool", where);
  if (!variant.is_string() || !variant_allowed(variant.get<std::string>()))
    throw CheckpointError("E_CONFIG", std::string(kSettingVariant) + " must be " + variants_text(), where);
  return s;
}

// The sla_config of a SimpleTuner training config ("--sla_config" or "sla_config") in the folder or its parent.
std::optional<std::pair<json, std::string>> settings_from_training_config(const fs::path& folder) {
  for (const fs::path& dir : {folder, folder.parent_path()}) {
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path& p = it->path();
      std::error_code size_ec;
      if (p.extension() != ".json" || fs::file_size(p, size_ec) > (4u << 20) || size_ec) continue;
      std::ifstream in(p);
      json config = json::parse(in, nullptr, false);
      if (!config.is_object()) continue;
      for (const char* key : {"--sla_config", "sla_config"}) {
        if (!config.contains(key) || config[key].is_null()) continue;
        const json& value = config[key];
        return std::pair{value.is_string() ? parse_settings_text(value.get<std::string>(), p.string()) : value,
                         p.string()};
      }
    }
  }
  return std::nullopt;
}

// The settings of the newest checkpoint's sla_attention.pt beside or below the folder: the run's own.
std::optional<std::pair<json, std::string>> settings_from_sibling_checkpoint(const fs::path& folder) {
  for (const fs::path& dir : {folder, folder.parent_path()}) {
    const std::string newest = newest_checkpoint_folder(dir.string());
    if (newest.empty() || fs::path(newest) == folder) continue;
    const fs::path file = fs::path(newest) / kSlaFileName;
    try {
      return std::pair{json(settings_to_json(load_sla_file(file.string()).file.settings)), file.string()};
    } catch (const CheckpointError&) {
      continue;  // unreadable: not a source of settings
    }
  }
  return std::nullopt;
}

// A checkpoint folder written by the example DiT (examples/dit.h): its model config names SlaDiT
// and its training_state.json, written last, marks it complete.
bool is_example_dit_checkpoint(const fs::path& folder) {
  std::error_code ec;
  if (!fs::is_regular_file(folder / "training_state.json", ec)) return false;
  std::ifstream in(folder / "transformer" / "config.json");
  const json config = json::parse(in, nullptr, /*allow_exceptions=*/false);
  return config.is_object() && config.value("_class_name", "") == "SlaDiT";
}

struct Plan {
  json body;
  bool existing_valid = false;
};

Plan make_plan(const RegenerateArgs& args) {
  const fs::path folder(args.folder);
  json plan;
  plan["checkpoint_dir"] = args.folder;
  plan["output"] = (folder / kSlaFileName).string();

  // Settings: --sla-config, else the training config, else the defaults.
  if (!args.sla_config.empty()) {
    plan["settings"] = resolve_settings(parse_settings_text(args.sla_config, "--sla-config"), "--sla-config");
    plan["settings_source"] = "--sla-config";
  } else if (auto found = settings_from_training_config(folder)) {
    plan["settings"] = resolve_settings(found->first, found->second);
    plan["settings_source"] = found->second;
  } else if (auto sibling = settings_from_sibling_checkpoint(folder)) {
    plan["settings"] = resolve_settings(sibling->first, sibling->second);
    plan["settings_source"] = sibling->second;
  } else {
    plan["settings"] = resolve_settings(json::object(), "defaults");
    plan["settings_source"] = "defaults";
  }

  // Inputs: calibration q/k/v, else standard-normal samples.
  int64_t calibration_dim = 0;
  if (!args.calibration.empty()) {
    const auto header = safetensors::read_header(args.calibration);
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const auto& t : header.tensors)
      if (t.name == "q" || t.name == "k" || t.name == "v") {
        if (!safetensors::is_float(t.dtype))
          throw CheckpointError("E_CONFIG", "calibration tensor " + t.name + " is not a float tensor", args.calibration);
        shapes[t.name] = t.shape;
      }
    if (shapes.size() != 3 || shapes["q"].size() != 4 || shapes["k"] != shapes["q"] || shapes["v"] != shapes["q"])
      throw CheckpointError("E_CONFIG", "calibration needs tensors q, k, v of one shape (B, H, L, D)", args.calibration);
    calibration_dim = shapes["q"][3];
    plan["inputs"] = "calibration " + args.calibration;
    plan["calibration"] = args.calibration;
  } else {
    plan["inputs"] = "random normal";
  }

  // (head_dim, dtype) pairs: flags, else the model config and the weights.
  const ModelShape hints = find_model_shape(args.folder);
  std::vector<int64_t> dims = args.head_dims;
  std::string dims_source = "--head-dim";
  if (dims.empty()) dims = hints.head_dims, dims_source = hints.config_path;
  if (dims.empty() && calibration_dim > 0) dims = {calibration_dim}, dims_source = "calibration";
  if (dims.empty())
    throw CheckpointError("E_CONFIG", "no attention head_dim found (no transformer/config.json): pass --head-dim",
                          args.folder);
  std::string dtype = !args.dtype.empty() ? args.dtype : hints.dtype_token;
  if (dtype != "bf16" && dtype != "fp16") dtype = "bf16";  // SLA runs in half precision; fp32 inputs fall back to SDPA
  std::set<int64_t> unique(dims.begin(), dims.end());
  json pairs = json::array();
  for (int64_t d : unique) {
    if (d <= 0 || d > 512) throw CheckpointError("E_CONFIG", "head_dim " + std::to_string(d) + " out of range", dims_source);
    if (calibration_dim > 0 && d != calibration_dim)
      throw CheckpointError("E_CONFIG",
                            "calibration head_dim " + std::to_string(calibration_dim) + " differs from the model's " +
                                std::to_string(d),
                            args.calibration);
    pairs.push_back({{"head_dim", d}, {"dtype", dtype}, {"key", std::to_string(d) + ":" + dtype}});
  }
  plan["entries"] = pairs;
  plan["entries_source"] = dims_source + (args.dtype.empty() && !hints.dtype_token.empty() ? " + weights dtype" : "");
  plan["device"] = args.device;
  // The example DiT's own checkpoints get one real training step of its objective; any other
  // model one step of distillation from dense attention on q/k/v samples.
  // --head-dim / --dtype name the entries to write; the example DiT's forward decides its own, so
  // with either flag the plan distils exactly the named entries instead (flags are never ignored).
  const bool entries_named = !args.head_dims.empty() || !args.dtype.empty();
  if (is_example_dit_checkpoint(folder) && args.calibration.empty() && entries_named) {
    plan["mode"] = "dense-distillation";
    plan["mode_reason"] = std::string("--head-dim/--dtype name the entries; the example DiT's own step writes the "
                                      "entries its forward creates, so the named ones are distilled from dense attention");
  } else if (is_example_dit_checkpoint(folder) && args.calibration.empty()) {
    plan["mode"] = "example-dit";
    plan["inputs"] = "example-dit checkpoint " + args.folder;
    // The entries are those of the SLA modules the model's own forward creates (dtype per device).
    plan.erase("entries");
    plan["entries_source"] = "the example DiT's forward";
  } else {
    plan["mode"] = "dense-distillation";
  }

  Plan out;
  out.body = plan;
  const fs::path existing = folder / kSlaFileName;
  std::error_code ec;
  if (fs::exists(existing, ec)) {
    try {
      out.existing_valid = load_sla_file(existing.string()).problems.empty();
    } catch (const CheckpointError&) {
      out.existing_valid = false;
    }
    out.body["replaces"] = out.existing_valid ? "a valid sla_attention.pt" : "an unreadable or invalid sla_attention.pt";
  }
  return out;
}

std::string self_folder() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : self.parent_path().string();
}

int run_regenerate(const RegenerateArgs& args) {
  std::error_code ec;
  if (!fs::is_directory(args.folder, ec)) {
    fmt::print(stderr, "sla-ckpt regenerate: {} is not a folder\n", args.folder);
    return kUnusable;
  }
  Plan plan;
  try {
    plan = make_plan(args);
  } catch (const CheckpointError& e) {
    fmt::print(stderr, "sla-ckpt regenerate: {}\n", e.what());
    return kUnusable;
  }
  if (args.dry_run) {
    fmt::print("{}\n", args.json ? plan.body.dump(2) : "plan (dry run, nothing written):\n" + plan.body.dump(2));
    return kOk;
  }
  if (plan.existing_valid && !args.force) {
    fmt::print(stderr, "sla-ckpt regenerate: {} exists and is valid; pass --force to replace it\n",
               plan.body["output"].get<std::string>());
    return kUnusable;
  }
  const char* env = std::getenv("SLA_CKPT_REGENERATE");
  const std::string exe = env && *env ? env : self_folder() + "/sla-ckpt-regenerate";
  if (::access(exe.c_str(), X_OK) != 0) {
    fmt::print(stderr, "sla-ckpt regenerate: {} not found; it is built with LibTorch (SLA_WITH_TORCH=ON)\n", exe);
    return kUnusable;
  }
  const std::string plan_text = plan.body.dump();
  std::vector<const char*> argv = {exe.c_str(), "--plan", plan_text.c_str()};
  if (args.json) argv.push_back("--json");
  argv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  ::execv(exe.c_str(), const_cast<char* const*>(argv.data()));
  fmt::print(stderr, "sla-ckpt regenerate: cannot run {}\n", exe);
  return kUnusable;
}

}  // namespace

Subcommand register_regenerate(CLI::App& parent) {
  auto args = std::make_shared<RegenerateArgs>();
  CLI::App* app = parent.add_subcommand("regenerate", "Rebuild a missing sla_attention.pt with one SLA training step");
  app->add_option("checkpoint_dir", args->folder, "the checkpoint or output folder to write sla_attention.pt into")
      ->required();
  app->add_option("--sla-config", args->sla_config, "SLA settings as JSON or a Python dict literal");
  app->add_option("--head-dim", args->head_dims, "attention head dim (repeatable); default: from the model config");
  app->add_option("--dtype", args->dtype, "query dtype of the state entries")->check(CLI::IsMember({"bf16", "fp16"}));
  app->add_option("--device", args->device, "where the step runs")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app->add_option("--calibration", args->calibration, "safetensors with q, k, v of shape (B, H, L, D)")
      ->check(CLI::ExistingFile);
  app->add_flag("--force", args->force, "Replace a valid sla_attention.pt");
  app->add_flag("--dry-run", args->dry_run, "Print the plan, write nothing");
  app->add_flag("--json", args->json, "Machine-readable output");
  app->footer("Example: sla-ckpt regenerate output/checkpoint-500 --sla-config \"{'topk': 0.2}\" --dry-run");
  return {app, [args] { return run_regenerate(*args); }};
}

}  // namespace sla::cli
