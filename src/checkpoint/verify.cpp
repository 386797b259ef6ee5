#include "verify.h"

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

namespace slackpt {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr uintmax_t kMaxTextFileBytes = 4u << 20;  // configs and model cards; larger files are not configs
constexpr size_t kMaxFilesScanned = 256;             // per folder, so a verify next to $HOME stays quick
// The weights' dtype needs only their headers, and a few MB of headers decide it; a folder whose
// headers add up to more is not read further (the majority so far stands).
constexpr uint64_t kMaxWeightsHeaderBytes = 64u << 20;
constexpr size_t kMaxHeadDims = 64;  // distinct head dims taken from a config

// ---- small helpers ------------------------------------------------------------------------------

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool is_folder(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

// The content of a regular file of at most kMaxTextFileBytes (never blocks on a FIFO or device).
std::optional<std::string> read_small_text(const fs::path& p) {
  uint64_t size = 0;
  int fd = -1;
  try {
    fd = open_regular_file(p.string(), &size);
  } catch (const CheckpointError&) {
    return std::nullopt;
  }
  std::string text;
  if (size <= kMaxTextFileBytes) {
    text.resize(size_t(size));
    size_t got = 0;
    while (got < text.size()) {
      ssize_t n = ::read(fd, text.data() + got, text.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += size_t(n);
    }
    text.resize(got);
  }
  ::close(fd);
  if (size > kMaxTextFileBytes) return std::nullopt;
  return text;
}

std::vector<fs::path> files_in(const fs::path& folder) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end && out.size() < kMaxFilesScanned; it.increment(ec))
    if (is_file(it->path())) out.push_back(it->path());
  std::sort(out.begin(), out.end());
  return out;
}

// The step of a checkpoint-<step> name; -1 for any other name.
long long checkpoint_step(const fs::path& p) {
  const std::string name = p.filename().string();
  if (name.rfind("checkpoint-", 0) != 0) return -1;
  const std::string step = name.substr(std::strlen("checkpoint-"));
  if (step.empty() || step.size() > 15 || !std::all_of(step.begin(), step.end(), ::isdigit)) return -1;
  return std::stoll(step);
}

// checkpoint-<step> folders under `folder` that hold an sla_attention.pt, newest (highest step) first.
std::vector<fs::path> checkpoint_files_under(const fs::path& folder, const fs::path& except) {
  std::vector<std::pair<long long, fs::path>> found;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const long long step = checkpoint_step(it->path());
    if (step < 0 || !is_folder(it->path())) continue;
    std::error_code same_ec;
    if (!except.empty() && fs::equivalent(it->path(), except, same_ec)) continue;
    fs::path file = it->path() / kSlaFileName;
    if (is_file(file)) found.emplace_back(step, file);
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

bool is_checkpoint_name(const fs::path& folder) {
  return folder.filename().string().rfind("checkpoint-", 0) == 0;
}

// ---- evidence that the model was trained with SLA --------------------------------------------------

// True when `text` sets attention_mechanism to sla in JSON ("--attention_mechanism": "sla"),
// YAML (attention_mechanism: sla) or TOML (attention_mechanism = "sla").
bool sets_attention_mechanism_sla(const std::string& text) {
  static const std::string key = "attention_mechanism";
  for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + 1)) {
    size_t i = at + key.size();
    while (i < text.size() && (text[i] == '"' || text[i] == '\'' || text[i] == ' ' || text[i] == '\t')) ++i;
    if (i >= text.size() || (text[i] != ':' && text[i] != '=')) continue;
    ++i;
    while (i < text.size() && (text[i] == '"' || text[i] == '\'' || text[i] == ' ' || text[i] == '\t')) ++i;
    size_t start = i;
    while (i < text.size() && (std::isalnum(static_cast<unsigned char>(text[i])) || text[i] == '_' || text[i] == '-')) ++i;
    if (lower(text.substr(start, i - start)) == "sla") return true;
  }
  return false;
}

// A model-card line saying SLA is on, e.g. SimpleTuner's
// "SLA: Enabled (you MUST use SLA for inference; sla_attention.pt contains attention weights)".
std::optional<std::string> model_card_sla_line(const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    size_t pos = line.find("SLA");
    bool word = pos != std::string::npos &&
                (pos == 0 || !std::isalpha(static_cast<unsigned char>(line[pos - 1]))) &&
                (pos + 3 >= line.size() || !std::isalpha(static_cast<unsigned char>(line[pos + 3])));
    if (!word) continue;
    const std::string l = lower(line);
    if (l.find("disabled") != std::string::npos || l.find("not enabled") != std::string::npos) continue;
    if (l.find("enabled") != std::string::npos || l.find("required") != std::string::npos ||
        l.find("must use") != std::string::npos)
      return line;
  }
  return std::nullopt;
}

bool is_config_name(const fs::path& p) {
  const std::string ext = lower(p.extension().string());
  return ext == ".json" || ext == ".yaml" || ext == ".yml" || ext == ".toml";
}

struct Evidence {
  std::vector<std::string> reasons;  // "model card README.md", ...
  std::vector<fs::path> sibling_files;  // checkpoint-*/sla_attention.pt, newest first
};

Evidence gather_evidence(const fs::path& folder, bool file_present, const VerifyOptions& options) {
  Evidence ev;
  if (file_present) ev.reasons.push_back("the SLA file is present");
  if (options.expect_sla) ev.reasons.push_back("--expect-sla");

  std::vector<fs::path> folders = {folder};
  if (folder.has_parent_path() && folder.parent_path() != folder) folders.push_back(folder.parent_path());
  for (const auto& f : folders) {
    if (auto card = read_small_text(f / "README.md"); card && model_card_sla_line(*card))
      ev.reasons.push_back("model card " + (f / "README.md").string());
    for (const auto& p : files_in(f)) {
      if (!is_config_name(p)) continue;
      if (auto text = read_small_text(p); text && sets_attention_mechanism_sla(*text))
        ev.reasons.push_back("training config " + p.string() + " (attention_mechanism = sla)");
    }
  }
  ev.sibling_files = checkpoint_files_under(folder, {});
  if (is_checkpoint_name(folder) && folder.has_parent_path()) {
    auto more = checkpoint_files_under(folder.parent_path(), folder);
    ev.sibling_files.insert(ev.sibling_files.end(), more.begin(), more.end());
  }
  if (!ev.sibling_files.empty()) ev.reasons.push_back("checkpoint file " + ev.sibling_files.front().string());
  return ev;
}

// ---- the model: attention head dims and the weights' dtype --------------------------------------

std::vector<int64_t> head_dims_from_config(const json& config) {
  std::set<int64_t> dims;
  auto add_one = [&](const json& x) {
    if (x.is_number_integer() && x.get<int64_t>() > 0 && x.get<int64_t>() <= kMaxHeadDim && dims.size() < kMaxHeadDims)
      dims.insert(x.get<int64_t>());
  };
  auto add = [&](const json& v) {
    add_one(v);
    if (v.is_array())
      for (const auto& x : v) add_one(x);
  };
  if (config.contains("attention_head_dim")) add(config["attention_head_dim"]);
  if (config.contains("head_dim")) add(config["head_dim"]);
  if (dims.empty() && config.contains("hidden_size") && config.contains("num_attention_heads")) {
    const json &h = config["hidden_size"], &n = config["num_attention_heads"];
    if (h.is_number_integer() && n.is_number_integer() && n.get<int64_t>() > 0 &&
        h.get<int64_t>() % n.get<int64_t>() == 0)
      add_one(h.get<int64_t>() / n.get<int64_t>());
  }
  return {dims.begin(), dims.end()};
}

std::optional<json> read_json(const fs::path& p) {
  auto text = read_small_text(p);
  if (!text) return std::nullopt;
  try {
    return json::parse(*text);
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

// The float dtype holding most weight elements, from the safetensors headers only.
void find_weights_dtype(const fs::path& folder, ModelShape& shape) {
  std::map<std::string, uint64_t> elements_per_token;
  std::vector<std::string> sources;
  uint64_t header_budget = kMaxWeightsHeaderBytes;
  for (const fs::path& f : {folder / "transformer", folder}) {
    for (const auto& p : files_in(f)) {
      if (p.extension() != ".safetensors" || p.filename() == kSlaTwinName || header_budget == 0) continue;
      try {
        const safetensors::Header header = safetensors::read_header(p.string(), header_budget);
        header_budget -= std::min(header_budget, header.data_start - 8);
        for (const auto& t : header.tensors)
          if (safetensors::is_float(t.dtype)) elements_per_token[safetensors::dtype_token(t.dtype)] += t.numel();
        sources.push_back(p.filename().string());
      } catch (const CheckpointError&) {
        // An unreadable weights file says nothing about the dtype; other tools report it.
      }
    }
    if (!sources.empty()) break;  // transformer/ weights win over top-level ones
  }
  uint64_t best = 0;
  for (const auto& [token, count] : elements_per_token)
    if (count > best) best = count, shape.dtype_token = token;
  if (!shape.dtype_token.empty()) {
    shape.dtype_source = sources.front();
    if (sources.size() > 1) shape.dtype_source += " and " + std::to_string(sources.size() - 1) + " more";
  }
}

}  // namespace

ModelShape find_model_shape(const std::string& folder_text, const std::string& model_config) {
  const fs::path folder(folder_text);
  ModelShape shape;
  if (!model_config.empty()) {
    auto config = read_json(model_config);
    if (!config || !config->is_object())
      throw CheckpointError("E_CONFIG", "cannot read the model config as a JSON object", model_config);
    shape.config_path = model_config;
    shape.head_dims = head_dims_from_config(*config);
    if (shape.head_dims.empty())
      throw CheckpointError("E_CONFIG",
                            "model config has no attention_head_dim, head_dim or hidden_size / num_attention_heads",
                            model_config);
  } else {
    for (const fs::path& p : {folder / "transformer" / "config.json", folder / "config.json"}) {
      auto config = read_json(p);
      if (!config || !config->is_object()) continue;
      auto dims = head_dims_from_config(*config);
      if (dims.empty()) continue;
      shape.config_path = p.string();
      shape.head_dims = dims;
      break;
    }
  }
  if (shape.head_dims.empty() && model_config.empty()) {
    const std::string newest = newest_checkpoint_folder(folder_text);
    if (!newest.empty()) return find_model_shape(newest);
  }
  find_weights_dtype(folder, shape);
  return shape;
}

std::string newest_checkpoint_folder(const std::string& folder) {
  std::string best;
  long long best_step = -1;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const long long step = checkpoint_step(it->path());
    if (step > best_step && is_folder(it->path())) best_step = step, best = it->path().string();
  }
  return best;
}

namespace {

// ---- reading the SLA file -------------------------------------------------------------------------

struct LoadedSla {
  SlaFile file;
  std::vector<Problem> problems;
};

LoadedSla load_any(const fs::path& p) {
  if (p.extension() == ".safetensors") {
    SlaFile file = safetensors::from_sla_twin(safetensors::read_file(p.string()), p.string());
    return {file, check_sla_file(file)};
  }
  SlaLoadResult result = load_sla_file(p.string());
  return {std::move(result.file), std::move(result.problems)};
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

// ---- the checks on a readable file --------------------------------------------------------------

class Verifier {
 public:
  Verifier(VerifyReport& report) : report_(report) {}

  void add(const std::string& id, CheckStatus status, const std::string& message, const std::string& where) {
    report_.checks.push_back({id, status, message, where});
  }

  void check_schema(const LoadedSla& sla, const std::string& where) {
    size_t count = 0;
    for (const auto& p : sla.problems) {
      if (p.code == "E_VALUES") continue;  // the values check below reports these with more detail
      add("schema", CheckStatus::kFail, p.code + ": " + p.message, where + (p.where.empty() ? "" : ": " + p.where));
      ++count;
    }
    if (count == 0)
      add("schema", CheckStatus::kOk,
          "settings, version 1 and " + std::to_string(sla.file.entries.size()) + " state entries are well formed", where);
  }

  void check_coverage(const SlaFile& file, const ModelShape& model, const std::string& where) {
    if (model.head_dims.empty()) {
      add("coverage", CheckStatus::kOk,
          "not checked: no model config with the attention shape found (pass --model-config)", where);
      return;
    }
    for (int64_t d : model.head_dims) {
      const std::string dim = std::to_string(d);
      std::vector<std::string> same_dim;
      for (const auto& e : file.entries)
        if (e.head_dim == d) same_dim.push_back(e.key);
      const std::string origin = "head_dim " + dim + " from " + model.config_path;
      if (model.dtype_token.empty()) {
        if (same_dim.empty())
          add("coverage", CheckStatus::kFail, "no state entry for " + origin + " (weights' dtype unknown)", where);
        else
          add("coverage", CheckStatus::kOk,
              origin + " covered by " + join(same_dim, ", ") + " (weights' dtype unknown)", where);
        continue;
      }
      const std::string wanted = dim + kStateKeySeparator + model.dtype_token;
      const std::string dtype_origin = model.dtype_token + " weights in " + model.dtype_source;
      if (std::find(same_dim.begin(), same_dim.end(), wanted) != same_dim.end())
        add("coverage", CheckStatus::kOk, "entry " + wanted + " covers " + origin + " and " + dtype_origin, where);
      else if (!same_dim.empty())
        add("coverage", CheckStatus::kWarn,
            "no entry " + wanted + " for " + dtype_origin + "; " + join(same_dim, ", ") +
                " would be applied across dtypes",
            where);
      else
        add("coverage", CheckStatus::kFail,
            "no state entry for " + origin + " (expected " + wanted + "); that attention would run untrained", where);
    }
  }

  void check_settings(const SlaFile& file, const std::string& where) {
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

  void check_variant(const SlaFile& file, const std::string& where) {
    if (!file.has_extension || !file.extension.contains("variant")) {
      add("variant", CheckStatus::kWarn, "variant not recorded; assumed 'all' (linear branch over all keys)", where);
      return;
    }
    const json& v = file.extension["variant"];
    if (v == "all" || v == "complement")
      add("variant", CheckStatus::kOk, "variant '" + v.get<std::string>() + "' recorded", where);
    else
      add("variant", CheckStatus::kFail, "unknown variant " + v.dump() + " (expected all | complement)", where);
  }

  void check_values(const SlaFile& file, const std::string& where) {
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

  void check_provenance(const SlaFile& file, const std::string& where) {
    const json& ext = file.extension;
    if (file.has_extension && ext.contains("regenerated") && ext["regenerated"] == true) {
      std::string from = ext.contains("regenerated_from") && ext["regenerated_from"].is_string()
                             ? " from " + ext["regenerated_from"].get<std::string>()
                             : "";
      add("provenance", CheckStatus::kWarn, "regenerated" + from + ", not trained with the model", where);
      return;
    }
    std::string writer = file.has_extension && ext.contains("writer") && ext["writer"].is_string()
                             ? "written by " + ext["writer"].get<std::string>()
                             : "no writer recorded";
    add("provenance", CheckStatus::kOk, "trained with the model (not marked regenerated); " + writer, where);
  }

  // The .pt and its safetensors twin must hold the same payload.
  void check_twin(const SlaFile& pt, const fs::path& twin_path) {
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

 private:
  VerifyReport& report_;
};

std::string classify(const fs::path& path, const fs::path& folder, bool path_is_file) {
  if (path_is_file) return path.extension() == ".safetensors" ? "sla-twin" : "sla-file";
  const std::string text = fs::absolute(folder).lexically_normal().string();
  if (text.find("/snapshots/") != std::string::npos || is_folder(folder / ".cache" / "huggingface")) return "snapshot";
  if (is_checkpoint_name(folder) || is_file(folder / "training_state.json")) return "checkpoint";
  if (is_file(folder / "transformer" / "config.json") || is_file(folder / "model_index.json")) return "pipeline-output";
  if (is_file(folder / "pytorch_lora_weights.safetensors")) return "lora-output";
  return "folder";
}

}  // namespace

const char* to_string(CheckStatus status) {
  switch (status) {
    case CheckStatus::kOk: return "ok";
    case CheckStatus::kWarn: return "warn";
    case CheckStatus::kFail: return "fail";
  }
  return "fail";
}

bool reference_kernel_accepts(int64_t blkq, int64_t blkk) {
  // thu-ml/SLA sparse_linear_attention/kernel.py, _attention.forward:
  //   assert BLOCK_M == 64 or BLOCK_M == 128
  //   assert BLOCK_N == 64
  // (BLOCK_M = BLKQ, BLOCK_N = BLKK). SimpleTuner catches the AssertionError and runs SDPA instead.
  return (blkq == 64 || blkq == 128) && blkk == 64;
}

bool VerifyReport::has_failure() const {
  return std::any_of(checks.begin(), checks.end(), [](const Check& c) { return c.status == CheckStatus::kFail; });
}

json VerifyReport::to_json() const {
  json list = json::array();
  for (const auto& c : checks)
    list.push_back({{"id", c.id}, {"status", slackpt::to_string(c.status)}, {"message", c.message}, {"where", c.where}});
  return {{"path", path}, {"kind", kind}, {"sla_expected", sla_expected}, {"checks", list}, {"ok", ok}};
}

VerifyReport verify_path(const std::string& path_text, const VerifyOptions& options) {
  const fs::path path(path_text);
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) throw CheckpointError("E_IO", "no such file or folder", path_text);
  const bool path_is_file = !fs::is_directory(status);
  if (path_is_file) {
    const std::string ext = path.extension().string();
    uint64_t size = 0;
    ::close(open_regular_file(path_text, &size));  // names a FIFO, socket or device; never blocks
    if (ext != ".pt" && ext != ".safetensors")
      throw CheckpointError("E_IO", "expected an sla_attention.pt, its .safetensors twin or a folder", path_text);
  } else {
    fs::directory_iterator probe(path, ec);
    if (ec) throw CheckpointError("E_IO", "cannot list folder: " + ec.message(), path_text);
  }

  const fs::path folder = path_is_file ? (path.has_parent_path() ? path.parent_path() : fs::path(".")) : path;
  VerifyReport report;
  report.path = path_text;
  report.kind = classify(path, folder, path_is_file);
  Verifier v(report);

  // The file to verify: the one named, else the .pt of the folder, else its twin.
  const fs::path pt_path = folder / kSlaFileName, twin_path = folder / kSlaTwinName;
  fs::path target = path_is_file ? path : (is_file(pt_path) ? pt_path : (is_file(twin_path) ? twin_path : fs::path()));

  const ModelShape model = find_model_shape(folder.string(), options.model_config);
  const Evidence evidence = gather_evidence(folder, !target.empty(), options);
  report.sla_expected = !evidence.reasons.empty();

  if (!report.sla_expected) {
    v.add("evidence", CheckStatus::kOk,
          "no SLA evidence (no sla_attention.pt, model-card line, training config or checkpoint file); "
          "nothing to verify; pass --expect-sla if this model was trained with SLA",
          folder.string());
    report.ok = true;
    return report;
  }
  v.add("evidence", CheckStatus::kOk, "SLA model: " + join(evidence.reasons, "; "), folder.string());

  if (target.empty()) {
    std::string fix = evidence.sibling_files.empty()
                          ? "run `sla-ckpt regenerate " + folder.string() + "` to rebuild it"
                          : "copy " + evidence.sibling_files.front().string() + " (the newest checkpoint's) to " +
                                pt_path.string() + ", or run `sla-ckpt regenerate " + folder.string() + "`";
    v.add("file", CheckStatus::kFail, "SLA expected but sla_attention.pt is missing: the model would run untrained; fix: " + fix,
          pt_path.string());
  } else {
    const bool only_twin = target.extension() == ".safetensors" && !is_file(pt_path);
    if (only_twin)
      v.add("file", CheckStatus::kWarn,
            "only the safetensors twin is present; SimpleTuner reads sla_attention.pt: run `sla-ckpt convert " +
                target.string() + " " + pt_path.string() + "`",
            target.string());
    else
      v.add("file", CheckStatus::kOk, "present", target.string());

    const std::string where = target.string();
    std::optional<LoadedSla> sla;
    try {
      sla = load_any(target);
      v.add("read", CheckStatus::kOk, "reads cleanly", where);
    } catch (const std::exception& e) {
      v.add("read", CheckStatus::kFail, e.what(), where);
    }
    if (sla) {
      v.check_schema(*sla, where);
      v.check_coverage(sla->file, model, where);
      v.check_settings(sla->file, where);
      v.check_variant(sla->file, where);
      v.check_values(sla->file, where);
      v.check_provenance(sla->file, where);
      const fs::path other = target.extension() == ".safetensors" ? pt_path : twin_path;
      if (is_file(other) && !(target.extension() == ".safetensors" && only_twin)) {
        if (target.extension() == ".safetensors") {
          try {
            v.check_twin(load_any(other).file, target);
          } catch (const std::exception& e) {
            v.add("twin", CheckStatus::kFail, std::string("sla_attention.pt cannot be read: ") + e.what(), other.string());
          }
        } else {
          v.check_twin(sla->file, other);
        }
      }
    }
  }

  const bool any_warning = std::any_of(report.checks.begin(), report.checks.end(),
                                       [](const Check& c) { return c.status == CheckStatus::kWarn; });
  report.ok = !report.has_failure() && !(options.strict && any_warning);
  return report;
}

}  // namespace slackpt
