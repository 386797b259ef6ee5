// The checks on a readable SLA file.
#include "verify_internal.h"

#include "mapped_file.h"
#include "safetensors.h"
#include "sla_state.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <unistd.h>

namespace sla::checkpoint::verify_detail {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- reading the SLA file -------------------------------------------------------------------------

LoadedSla load_any(const fs::path& p) {
  if (p.extension() == ".safetensors") {
    std::vector<Problem> problems;  // what the twin's reader read past, then the payload's problems
    SlaFile file = safetensors::from_sla_twin(safetensors::read_file(p.string()), p.string(), &problems);
    for (Problem& problem : check_sla_file(file)) problems.push_back(std::move(problem));
    return {file, problems};
  }
  SlaLoadResult result = load_sla_file(p.string());
  return {std::move(result.file), std::move(result.problems)};
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

void Verifier::add(const std::string& id, CheckStatus status, const std::string& message, const std::string& where) {
  report_.checks.push_back({id, status, message, where});
}

void Verifier::check_schema(const LoadedSla& sla, const std::string& where) {
  size_t count = 0, warnings = 0;
  for (const auto& p : sla.problems) {
    if (p.code == "E_VALUES") continue;  // the values check below reports these with more detail
    // Forward compatibility: SimpleTuner reads the file as it is; the message says what was ignored.
    const bool warning = is_warning(p);
    add("schema", warning ? CheckStatus::kWarn : CheckStatus::kFail, p.code + ": " + p.message,
        where + (p.where.empty() ? "" : ": " + p.where));
    ++(warning ? warnings : count);
  }
  if (count == 0)
    add("schema", CheckStatus::kOk,
        "settings, version and " + std::to_string(sla.file.entries.size()) + " state entries are well formed" +
            (warnings ? " (" + std::to_string(warnings) + " forward-compatibility warnings above)" : ""),
        where);
}

namespace {

// SimpleTuner runs SLA only for bf16/fp16 queries and looks up exactly "<D>:bf16" / "<D>:fp16".
bool consumer_token(const std::string& token) { return token == "bf16" || token == "fp16"; }

const char* const kConsumerLookup =
    "SimpleTuner runs SLA only for bf16/fp16 queries and looks up '<D>:bf16' / '<D>:fp16'";

}  // namespace

void Verifier::check_coverage(const SlaFile& file, const ModelShape& model, const std::string& where,
                              bool sla_claimed) {
  // A file whose entries no bf16/fp16 run can use (e.g. only "<D>:fp32", trained on CPU or in float32):
  // SimpleTuner finds no entry and runs every attention with a zero proj_l, silently.
  std::vector<std::string> keys, usable;
  for (const auto& e : file.entries) {
    keys.push_back(e.key);
    if (consumer_token(e.dtype_token)) usable.push_back(e.key);
  }
  if (!keys.empty() && usable.empty()) {
    add("coverage", sla_claimed ? CheckStatus::kFail : CheckStatus::kWarn,
        "entries " + join(keys, ", ") + " serve no bf16/fp16 run: " + kConsumerLookup +
            "; it finds none here and runs with a zero proj_l (untrained); fix: write the run's dtype "
            "(hooks state_dtype, or `sla-ckpt regenerate --dtype bf16`)",
        where);
    return;
  }
  if (model.head_dims.empty()) {
    add("coverage", CheckStatus::kOk,
        "not checked: no model config with the attention shape found (pass --model-config); SimpleTuner can apply " +
            join(usable, ", "),
        where);
    return;
  }
  for (int64_t d : model.head_dims) {
    const std::string dim = std::to_string(d);
    std::vector<std::string> same_dim, same_dim_usable;
    for (const auto& e : file.entries)
      if (e.head_dim == d) {
        same_dim.push_back(e.key);
        if (consumer_token(e.dtype_token)) same_dim_usable.push_back(e.key);
      }
    const std::string origin = "head_dim " + dim + " from " + model.config_path;
    if (same_dim_usable.empty()) {
      add("coverage", CheckStatus::kFail,
          "no " + dim + ":bf16 or " + dim + ":fp16 entry for " + origin +
              (same_dim.empty() ? "" : " (only " + join(same_dim, ", ") + ")") + ": " + kConsumerLookup +
              "; it runs that attention with a zero proj_l (untrained)",
          where);
      continue;
    }
    // fp32 weights: the query dtype is the run's mixed-precision dtype, not the weights'.
    if (model.dtype_token.empty() || !consumer_token(model.dtype_token)) {
      const std::string why = model.dtype_token.empty() ? "weights' dtype unknown"
                                                        : model.dtype_token + " weights; the run's dtype decides";
      add("coverage", CheckStatus::kOk,
          origin + ": SimpleTuner applies " + join(same_dim_usable, ", ") + " in a run of that dtype (" + why + ")",
          where);
      continue;
    }
    const std::string wanted = dim + kStateKeySeparator + model.dtype_token;
    const std::string dtype_origin = model.dtype_token + " weights in " + model.dtype_source;
    if (std::find(same_dim.begin(), same_dim.end(), wanted) != same_dim.end())
      add("coverage", CheckStatus::kOk,
          "SimpleTuner applies entry " + wanted + " to " + origin + " and " + dtype_origin, where);
    else
      add("coverage", CheckStatus::kWarn,
          "no entry " + wanted + " for " + dtype_origin + ": SimpleTuner looks up exactly '" + wanted +
              "' and runs a " + model.dtype_token + " run with a zero proj_l (untrained); " +
              join(same_dim_usable, ", ") + " serves only a run in that dtype (only our loader would apply it "
              "across dtypes)",
          where);
  }
}

void Verifier::check_settings(const SlaFile& file, const std::string& where) {
  const SlaSettings& s = file.settings;
  std::vector<std::string> unsupported;
  if (!topk_allowed(s.topk)) unsupported.push_back(std::string(kSettingTopk) + " " + std::to_string(s.topk) + " not in (0, 1]");
  if (!feature_map_allowed(s.feature_map))
    unsupported.push_back(std::string(kSettingFeatureMap) + " '" + s.feature_map + "' not " + feature_maps_text("|"));
  for (auto [name, block] : {std::pair<const char*, int64_t>{kSettingBlkq, s.blkq}, {kSettingBlkk, s.blkk}})
    if (!block_size_allowed(block)) unsupported.push_back(name + (" " + std::to_string(block)) + " not " + block_sizes_text("|"));
  const std::string summary = std::string(kSettingTopk) + " " + json(s.topk).dump() + ", " + s.feature_map + ", " +
                              kSettingBlkq + " " + std::to_string(s.blkq) + ", " + kSettingBlkk + " " + std::to_string(s.blkk) +
                              (s.tie_feature_map_qk ? ", tied" : ", untied");
  if (!unsupported.empty())
    add("settings", CheckStatus::kFail, "unsupported by our kernels: " + join(unsupported, "; "), where);
  else if (!reference_kernel_accepts(s.blkq, s.blkk))
    add("settings", CheckStatus::kWarn,
        summary + ": the public reference implementation (thu-ml/SLA) asserts blkq in {64, 128} and blkk == 64; "
                  "with these settings SimpleTuner silently falls back to dense attention (our kernels run them)",
        where);
  else
    add("settings", CheckStatus::kOk, summary, where);
}

void Verifier::check_variant(const SlaFile& file, const std::string& stated, const std::optional<LineageRecord>& lineage,
                             const std::string& where) {
  const bool recorded = file.has_extension && file.extension.contains("variant");
  if (!recorded && lineage && lineage->extension.contains("variant") && lineage->extension["variant"].is_string()) {
    const std::string inherited = lineage->extension["variant"].get<std::string>();
    const std::string source = "the run's earlier " + lineage->file.string() +
                               " records it (this file descends from it; SimpleTuner's save drops our key)";
    if (!stated.empty() && stated != inherited)
      add("variant", CheckStatus::kWarn, "variant '" + stated + "' as stated (--variant), but " + source + " as '" + inherited + "'",
          where);
    else
      add("variant", CheckStatus::kOk, "variant '" + inherited + "' inherited: " + source, where);
    return;
  }
  if (!recorded) {
    if (!stated.empty()) {
      add("variant", CheckStatus::kOk, "variant '" + stated + "' as stated (--variant); the file does not record it", where);
      return;
    }
    add("variant", CheckStatus::kWarn,
        "variant unknown: the file does not record it (SimpleTuner drops it on save); files SimpleTuner saved "
        "before 2025-12-15 used 'complement', later ones 'all', and a consumer running the other variant gets "
        "wrong outputs; state it with --variant all|complement",
        where);
    return;
  }
  const json& v = file.extension["variant"];
  if (v != "all" && v != "complement") {
    add("variant", CheckStatus::kFail, "unknown variant " + v.dump() + " (expected all | complement)", where);
    return;
  }
  const std::string value = v.get<std::string>();
  if (!stated.empty() && stated != value)
    add("variant", CheckStatus::kFail, "variant '" + value + "' recorded, but --variant " + stated + " was stated", where);
  else
    add("variant", CheckStatus::kOk, "variant '" + value + "' recorded", where);
}

void Verifier::check_values(const SlaFile& file, const std::string& where) {
  bool any = false;
  for (const auto& e : file.entries) {
    size_t non_finite = 0;
    bool all_zero = true;
    for (const auto* t : {&e.weight, &e.bias})
      for (float x : t->values) {
        if (!std::isfinite(x)) ++non_finite;
        if (x != 0.0f) all_zero = false;
      }
    if (non_finite > 0) {
      add("values", CheckStatus::kFail, std::to_string(non_finite) + " non-finite values in " + e.key, where + ": " + e.key);
      any = true;
    } else if (all_zero) {
      add("values", CheckStatus::kWarn, "untrained: freshly initialised (all-zero projection) in " + e.key,
          where + ": " + e.key);
      any = true;
    }
  }
  if (!any) add("values", CheckStatus::kOk, "all values finite, projections trained (non-zero)", where);
}

void Verifier::check_provenance(const SlaFile& file, const std::optional<LineageRecord>& lineage, const std::string& where) {
  const json& ext = file.extension;
  auto regenerated_from = [](const json& e) {
    return e.contains("regenerated_from") && e["regenerated_from"].is_string() ? " from " + e["regenerated_from"].get<std::string>()
                                                                               : std::string();
  };
  if (file.has_extension && ext.contains("regenerated") && ext["regenerated"] == true) {
    add("provenance", CheckStatus::kWarn, "regenerated" + regenerated_from(ext) + ", not trained with the model", where);
    return;
  }
  if (lineage && lineage->extension.contains("regenerated") && lineage->extension["regenerated"] == true) {
    const std::string origin = "the run's earlier " + lineage->file.string() + " was regenerated" +
                               regenerated_from(lineage->extension) + " (its record; SimpleTuner's save drops our key)";
    if (lineage->identical)
      add("provenance", CheckStatus::kWarn, "regenerated, not trained with the model: " + origin + ", and this file holds the same values",
          where);
    else
      add("provenance", CheckStatus::kOk, "trained further from a regenerated start: " + origin + "; the values have changed since",
          where);
    return;
  }
  if (lineage) {
    const json& rec = lineage->extension;
    add("provenance", CheckStatus::kOk,
        "trained with the model; descends from the run's earlier " + lineage->file.string() +
            (rec.contains("writer") && rec["writer"].is_string() ? " (written by " + rec["writer"].get<std::string>() + ")" : "") +
            ", not regenerated",
        where);
    return;
  }
  std::string writer = file.has_extension && ext.contains("writer") && ext["writer"].is_string()
                           ? "written by " + ext["writer"].get<std::string>()
                           : "no writer recorded";
  add("provenance", CheckStatus::kOk, "trained with the model (not marked regenerated); " + writer, where);
}

// The .pt and its safetensors twin must hold the same payload.
void Verifier::check_twin(const SlaFile& pt, const fs::path& twin_path) {
  const std::string where = twin_path.string();
  SlaFile twin;
  try {
    twin = load_any(twin_path).file;
  } catch (const std::exception& e) {
    add("twin", CheckStatus::kFail, std::string("the safetensors twin cannot be read: ") + e.what(), where);
    return;
  }
  std::vector<std::string> diffs;
  const SlaSettings &a = pt.settings, &b = twin.settings;
  if (a != b) diffs.push_back("settings differ");
  if (pt.version != twin.version) diffs.push_back("version differs");
  for (const auto& e : pt.entries) {
    const SlaEntry* o = twin.find(e.key);
    if (!o) {
      diffs.push_back(e.key + " missing in the twin");
      continue;
    }
    auto same = [](const Float32Tensor& x, const Float32Tensor& y) {
      return x.shape == y.shape && x.values.size() == y.values.size() &&
             std::memcmp(x.values.data(), y.values.data(), x.values.size() * sizeof(float)) == 0;
    };
    if (!same(e.weight, o->weight) || !same(e.bias, o->bias)) diffs.push_back(e.key + " tensors differ");
  }
  for (const auto& e : twin.entries)
    if (!pt.find(e.key)) diffs.push_back(e.key + " only in the twin");
  if (diffs.empty())
    add("twin", CheckStatus::kOk, "sla_attention.pt and its safetensors twin hold the same tensors", where);
  else
    add("twin", CheckStatus::kFail, "sla_attention.pt and its safetensors twin disagree: " + join(diffs, "; "), where);
}

}  // namespace sla::checkpoint::verify_detail
