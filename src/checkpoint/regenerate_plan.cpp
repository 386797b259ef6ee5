#include "regenerate_plan.h"

#include "errors.h"
#include "mapped_file.h"
#include "safetensors.h"
#include "settings_literal.h"
#include "sla_state.h"
#include "verify.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <utility>

namespace sla::checkpoint {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// sla_config text (JSON or a Python-dict literal) as an object; CheckpointError names `where`.
json parse_settings_text(const std::string& text, const std::string& where) {
  json parsed;
  try {
    parsed = json::parse(settings_literal_to_json(text));
  } catch (const std::exception&) {  // a malformed literal (invalid_argument) or JSON (json::exception)
    throw CheckpointError("E_CONFIG", "SLA settings are neither JSON nor a Python dict: " + text, where);
  }
  if (!parsed.is_object()) throw CheckpointError("E_CONFIG", "SLA settings are not an object: " + text, where);
  return parsed;
}

// Defaults overlaid with `given`; unknown keys and bad values are errors.
json resolve_settings(const json& given, const std::string& where) {
  json s = settings_to_json(SlaSettings{});
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

// The head dim of a calibration file's q, k, v (one shape (B, H, L, D), float tensors).
int64_t calibration_head_dim(const std::string& path) {
  const auto header = safetensors::read_header(path);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& t : header.tensors)
    if (t.name == "q" || t.name == "k" || t.name == "v") {
      if (!safetensors::is_float(t.dtype))
        throw CheckpointError("E_CONFIG", "calibration tensor " + t.name + " is not a float tensor", path);
      shapes[t.name] = t.shape;
    }
  if (shapes.size() != 3 || shapes["q"].size() != 4 || shapes["k"] != shapes["q"] || shapes["v"] != shapes["q"])
    throw CheckpointError("E_CONFIG", "calibration needs tensors q, k, v of one shape (B, H, L, D)", path);
  const auto& shape = shapes["q"];
  if (std::any_of(shape.begin(), shape.end(), [](int64_t n) { return n <= 0; }))
    throw CheckpointError("E_CONFIG", fmt::format("calibration q, k, v are empty (shape [{}])", fmt::join(shape, ", ")), path);
  return shape[3];
}

FoundSettings found(const json& resolved, std::string source) {
  FoundSettings f;
  f.settings.topk = resolved[kSettingTopk].get<double>();
  f.settings.feature_map = resolved[kSettingFeatureMap].get<std::string>();
  f.settings.blkq = resolved[kSettingBlkq].get<int64_t>();
  f.settings.blkk = resolved[kSettingBlkk].get<int64_t>();
  f.settings.tie_feature_map_qk = resolved[kSettingTieFeatureMapQk].get<bool>();
  f.variant = resolved[kSettingVariant].get<std::string>();
  f.source = std::move(source);
  return f;
}

}  // namespace

RegeneratePlan make_regenerate_plan(const RegenerateRequest& request) {
  const fs::path folder(request.folder);
  RegeneratePlan plan;
  plan.checkpoint_dir = request.folder;
  plan.output = (folder / kSlaFileName).string();
  plan.device = request.device;

  FoundSettings settings = find_regenerate_settings(request.folder, request.sla_config);
  plan.settings = settings.settings;
  plan.variant = settings.variant;
  plan.settings_source = settings.source;

  // Inputs: calibration q/k/v, else standard-normal samples.
  int64_t calibration_dim = 0;
  if (!request.calibration.empty()) {
    calibration_dim = calibration_head_dim(request.calibration);
    plan.calibration = request.calibration;
    plan.inputs = "calibration " + request.calibration;
  } else {
    plan.inputs = "random normal";
  }

  // (head_dim, dtype) entries: flags, else the model config and the weights, else the calibration.
  const ModelShape hints = find_model_shape(request.folder);
  std::vector<int64_t> dims = request.head_dims;
  std::string dims_source = "--head-dim";
  if (dims.empty()) dims = hints.head_dims, dims_source = hints.config_path;
  if (dims.empty() && calibration_dim > 0) dims = {calibration_dim}, dims_source = "calibration";
  if (dims.empty())
    throw CheckpointError("E_CONFIG", "no attention head_dim found (no transformer/config.json): pass --head-dim",
                          request.folder);
  std::string dtype = !request.dtype.empty() ? request.dtype : hints.dtype_token;
  if (dtype != "bf16" && dtype != "fp16") dtype = "bf16";  // SLA runs in half precision; fp32 inputs fall back to SDPA
  for (int64_t d : std::set<int64_t>(dims.begin(), dims.end())) {
    if (d <= 0 || d > 512) throw CheckpointError("E_CONFIG", "head_dim " + std::to_string(d) + " out of range", dims_source);
    if (calibration_dim > 0 && d != calibration_dim)
      throw CheckpointError("E_CONFIG",
                            "calibration head_dim " + std::to_string(calibration_dim) + " differs from the model's " +
                                std::to_string(d),
                            request.calibration);
    plan.entries.push_back({d, dtype, make_state_key(d, dtype)});
  }
  plan.entries_source = dims_source + (request.dtype.empty() && !hints.dtype_token.empty() ? " + weights dtype" : "");

  if (entry_exists(plan.output)) {  // a dangling link too: the plan says it replaces a broken file
    plan.existing_valid = valid_sla_file_at(plan.output);
    plan.replaces = plan.existing_valid ? "a valid sla_attention.pt" : "an unreadable or invalid sla_attention.pt";
  }
  return plan;
}

FoundSettings find_regenerate_settings(const std::string& folder_name, const std::string& sla_config) {
  const fs::path folder(folder_name);
  if (!sla_config.empty())
    return found(resolve_settings(parse_settings_text(sla_config, "--sla-config"), "--sla-config"), "--sla-config");
  if (auto config = settings_from_training_config(folder))
    return found(resolve_settings(config->first, config->second), config->second);
  if (auto sibling = settings_from_sibling_checkpoint(folder))
    return found(resolve_settings(sibling->first, sibling->second), sibling->second);
  return found(resolve_settings(json::object(), "defaults"), "defaults");
}

bool valid_sla_file_at(const std::string& path) {
  try {
    return load_sla_file(path).problems.empty();
  } catch (const CheckpointError&) {
    return false;
  }
}

json to_json(const RegeneratePlan& plan) {
  json settings = settings_to_json(plan.settings);
  settings[kSettingVariant] = plan.variant;
  json entries = json::array();
  for (const auto& e : plan.entries) entries.push_back({{"head_dim", e.head_dim}, {"dtype", e.dtype_token}, {"key", e.key}});
  json out = {{"checkpoint_dir", plan.checkpoint_dir}, {"output", plan.output},
              {"mode", "dense-distillation"},          {"settings", settings},
              {"settings_source", plan.settings_source}, {"inputs", plan.inputs},
              {"entries", entries},                     {"entries_source", plan.entries_source},
              {"device", plan.device}};
  if (!plan.calibration.empty()) out["calibration"] = plan.calibration;
  if (!plan.replaces.empty()) out["replaces"] = plan.replaces;
  return out;
}

}  // namespace sla::checkpoint
