#include "sla_state.h"

#include "crc32.h"
#include "durable_file.h"
#include "pt_reader.h"
#include "pt_writer.h"
#include "tensor_stats.h"

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <unordered_set>

namespace sla::checkpoint {

// ---- forward compatibility: one wording for the .pt and its twin (sla_state.h) ----

Problem compat_missing_version() {
  return {kCompatWarning, "no version: read as version 1 (SimpleTuner does not check the version)", "version"};
}

Problem compat_missing_tie_feature_map_qk() {
  return {kCompatWarning,
          std::string("no ") + kSettingTieFeatureMapQk + " (SimpleTuner's test payload has four settings): the default " +
              (kDefaultTieFeatureMapQk ? "True" : "False") +
              " applies, which changes nothing for the parameter-free feature maps; SimpleTuner compares the "
              "settings dict with its runtime one, so it warns on load and the runtime settings win",
          std::string("settings/") + kSettingTieFeatureMapQk};
}

Problem compat_unknown_setting(const std::string& name) {
  return {kCompatWarning,
          "unknown setting " + name + " ignored (a newer writer's?); SimpleTuner compares the settings dict with "
          "its runtime one, so it warns on load and the runtime settings win",
          "settings/" + name};
}

Problem compat_unknown_entry_item(const std::string& entry_key, const std::string& name) {
  return {kCompatWarning,
          "unknown entry item " + name + " ignored (SimpleTuner loads the state with strict=False, which skips it; "
          "only proj_l.weight and proj_l.bias are read)",
          "state/" + entry_key + "/" + name};
}

namespace {

using pt::Value;
using Kind = pt::Value::Kind;

constexpr const char* kWeight = "proj_l.weight";
constexpr const char* kBias = "proj_l.bias";

std::string type_of(const Value& v) {
  if (v.kind == Kind::Tensor) return "tensor";
  return std::string(pt::kind_name(v.kind));
}

// What walking the value tree of a payload finds: the typed file without tensor values, the
// tensors it would read them from, and the structural problems.
struct Payload {
  SlaFile file;
  bool has_version = false;
  bool has_settings = false;
  std::vector<std::vector<std::pair<std::string, std::shared_ptr<const pt::Tensor>>>> tensors;  // per entry
  std::vector<Problem> problems;

  void problem(const char* code, std::string message, std::string where) {
    problems.push_back({code, std::move(message), std::move(where)});
  }
};

// "<digits>:<token>" -> head_dim and token; head_dim 0 when it does not parse.
void parse_key(SlaEntry& entry) {
  StateKey parsed = parse_state_key(entry.key);
  entry.head_dim = parsed.head_dim;
  entry.dtype_token = std::move(parsed.dtype_token);
}

void read_settings(const Value& v, Payload& p) {
  if (v.kind != Kind::Dict) return p.problem("E_SCHEMA", "settings is a " + type_of(v) + ", expected a dict", "settings");
  p.has_settings = true;
  SlaSettings& s = p.file.settings;
  for (const char* key : kSettingKeys) {
    if (v.get(key)) continue;
    if (std::string(key) == kSettingTieFeatureMapQk)  // SimpleTuner's own test payload has only the other four
      p.problems.push_back(compat_missing_tie_feature_map_qk());
    else
      p.problem("E_SCHEMA", std::string("missing setting ") + key, std::string("settings/") + key);
  }
  for (const auto& entry : v.entries) {
    const auto& k = entry.first;
    const auto& value = entry.second;  // not a structured binding: lambdas capture it (C++17)
    std::string name = k->kind == Kind::String ? k->text : "<" + type_of(*k) + " key>";
    std::string where = "settings/" + name;
    auto wrong = [&](const char* expected) { p.problem("E_SCHEMA", name + " is a " + type_of(*value) + ", expected " + expected, where); };
    if (name == kSettingTopk) {
      if (value->kind == Kind::Float) s.topk = value->real;
      else if (value->kind == Kind::Int) s.topk = double(value->integer);
      else wrong("a float");
    } else if (name == kSettingFeatureMap) {
      if (value->kind == Kind::String) s.feature_map = value->text;
      else wrong("a str");
    } else if (name == kSettingBlkq || name == kSettingBlkk) {
      if (value->kind == Kind::Int) (name == kSettingBlkq ? s.blkq : s.blkk) = value->integer;
      else wrong("an int");
    } else if (name == kSettingTieFeatureMapQk) {
      if (value->kind == Kind::Bool) s.tie_feature_map_qk = value->boolean;
      else wrong("a bool");
    } else {
      p.problems.push_back(compat_unknown_setting(name));
    }
  }
}

void read_entry(const std::string& key, const Value& v, Payload& p) {
  SlaEntry entry;
  entry.key = key;
  parse_key(entry);
  std::vector<std::pair<std::string, std::shared_ptr<const pt::Tensor>>> tensors;
  std::string where = "state/" + key;
  if (v.kind != Kind::Dict) {
    p.problem("E_SCHEMA", "entry is a " + type_of(v) + ", expected a dict of tensors", where);
  } else {
    for (const auto& [k, value] : v.entries) {
      std::string name = k->kind == Kind::String ? k->text : "<" + type_of(*k) + " key>";
      std::string at = where + "/" + name;
      if (name != kWeight && name != kBias) {
        // Ignored, not judged: SimpleTuner applies the state with load_state_dict(strict=False), which skips it.
        p.problems.push_back(compat_unknown_entry_item(key, name));
        if (value->kind == Kind::Tensor) tensors.emplace_back(name, value->tensor);  // summarised by inspect
        continue;
      }
      if (value->kind != Kind::Tensor) {
        p.problem("E_SCHEMA", name + " is a " + type_of(*value) + ", expected a tensor", at);
        continue;
      }
      const pt::Tensor& t = *value->tensor;
      if (t.dtype != pt::DType::Float32)
        p.problem("E_SCHEMA", name + " is " + std::string(pt::dtype_info(t.dtype).name) + ", expected float32", at);
      if (t.requires_grad) p.problem("E_VALUES", name + " has requires_grad=True (save .detach() tensors)", at);
      if (name == kWeight) entry.weight.shape = t.shape;
      if (name == kBias) entry.bias.shape = t.shape;
      tensors.emplace_back(name, value->tensor);
    }
  }
  p.file.entries.push_back(std::move(entry));
  p.tensors.push_back(std::move(tensors));
}

void read_extension(const Value& v, Payload& p) {
  p.file.has_extension = true;
  if (v.kind != Kind::Dict) return p.problem("E_SCHEMA", std::string(kExtensionKey) + " is a " + type_of(v) + ", expected a dict", kExtensionKey);
  for (const auto& [k, value] : v.entries) {
    if (k->kind != Kind::String) {
      p.problem("E_SCHEMA", "non-string key", kExtensionKey);
      continue;
    }
    std::string where = std::string(kExtensionKey) + "/" + k->text;
    switch (value->kind) {
      case Kind::String: p.file.extension[k->text] = value->text; break;
      case Kind::Int: p.file.extension[k->text] = value->integer; break;
      case Kind::Float: p.file.extension[k->text] = value->real; break;
      case Kind::Bool: p.file.extension[k->text] = value->boolean; break;
      case Kind::None: p.file.extension[k->text] = nullptr; break;
      default: p.problem("E_SCHEMA", "value is a " + type_of(*value) + " (the extension is flat: str, int, float, bool)", where);
    }
  }
}

Payload read_payload(const Value& root) {
  Payload p;
  if (root.kind != Kind::Dict) {
    p.problem("E_SCHEMA", "top level is a " + type_of(root) + ", expected a dict {settings, state, version}", "/");
    return p;
  }
  for (const char* key : {"settings", "state"})
    if (!root.get(key)) p.problem("E_SCHEMA", std::string("missing top-level key ") + key, key);
  if (!root.get("version")) p.problems.push_back(compat_missing_version());
  for (const auto& [k, value] : root.entries) {
    std::string name = k->kind == Kind::String ? k->text : "<" + type_of(*k) + " key>";
    if (name == "settings") {
      read_settings(*value, p);
    } else if (name == "version") {
      if (value->kind == Kind::Int) {
        p.file.version = value->integer;
        p.has_version = true;
      } else {
        p.problem("E_SCHEMA", "version is a " + type_of(*value) + ", expected an int", "version");
      }
    } else if (name == "state") {
      if (value->kind != Kind::Dict) {
        p.problem("E_SCHEMA", "state is a " + type_of(*value) + ", expected a dict", "state");
        continue;
      }
      if (value->entries.size() > kMaxStateEntries)
        throw CheckpointError("E_LIMIT", "state has " + std::to_string(value->entries.size()) + " entries, cap is " +
                                             std::to_string(kMaxStateEntries) + " (a model has a few head_dim:dtype pairs)",
                              "state");
      for (const auto& [key, entry] : value->entries) {
        if (key->kind != Kind::String) p.problem("E_SCHEMA", "state key is a " + type_of(*key) + ", expected a str", "state");
        else read_entry(key->text, *entry, p);
      }
    } else if (name == kExtensionKey) {
      read_extension(*value, p);
    } else {
      p.problem("E_SCHEMA", "unexpected top-level key " + name, name);
    }
  }
  return p;
}

// Row-major float32 copy of a tensor (any strides).
TensorSummary tensor_summary(const std::string& name, pt::DType dtype, const std::vector<int64_t>& shape,
                             uint64_t numel, const pt::TensorStats& stats) {
  TensorSummary t;
  t.name = name;
  t.dtype = std::string(pt::dtype_info(dtype).name);
  t.shape = shape;
  t.numel = numel;
  t.sum = stats.sum;
  t.min = stats.min;
  t.max = stats.max;
  t.abs_max = stats.abs_max;
  t.nonfinite = stats.nonfinite;
  t.finite = stats.nonfinite == 0;
  return t;
}

bool is_floating(pt::DType dtype) {
  return dtype == pt::DType::Float32 || dtype == pt::DType::Float64 || dtype == pt::DType::Float16 ||
         dtype == pt::DType::BFloat16;
}

// The tensor's values as float (float32 copied as stored, other floating dtypes converted).
std::vector<float> float32_values(const pt::Tensor& t) {
  std::vector<float> out(t.numel());
  if (out.empty()) return out;  // a zero-size dim: nothing to copy (and memcpy may not see null)
  if (t.dtype == pt::DType::Float32 && t.is_contiguous()) {
    std::memcpy(out.data(), t.storage->bytes + uint64_t(t.storage_offset) * sizeof(float), out.size() * sizeof(float));
  } else {
    for (uint64_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(t.element(i));
  }
  return out;
}

Problem nonfinite_problem(const std::string& where, uint64_t count, uint64_t numel) {
  return {"E_VALUES", std::to_string(count) + " of " + std::to_string(numel) + " values are NaN or Inf", where};
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

uint64_t product(const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) n *= d < 0 ? 0 : uint64_t(d);
  return n;
}

pt::ValuePtr tensor_value(const Float32Tensor& t) {
  auto storage = std::make_shared<pt::Storage>();
  storage->dtype = pt::DType::Float32;
  storage->numel = t.values.size();
  storage->bytes = reinterpret_cast<const uint8_t*>(t.values.data());
  auto tensor = std::make_shared<pt::Tensor>();
  tensor->shape = t.shape;
  tensor->strides.assign(t.shape.size(), 1);
  for (size_t i = t.shape.size(); i-- > 1;) tensor->strides[i - 1] = tensor->strides[i] * t.shape[i];
  tensor->storage = std::move(storage);
  return Value::from_tensor(std::move(tensor));
}

// The payload exactly as SimpleTuner builds it, plus our extension key when it has content.
pt::ValuePtr to_value(const SlaFile& file) {
  auto settings = Value::dict();
  settings->set(kSettingTopk, Value::from_double(file.settings.topk));
  settings->set(kSettingFeatureMap, Value::from_string(file.settings.feature_map));
  settings->set(kSettingBlkq, Value::from_int(file.settings.blkq));
  settings->set(kSettingBlkk, Value::from_int(file.settings.blkk));
  settings->set(kSettingTieFeatureMapQk, Value::from_bool(file.settings.tie_feature_map_qk));
  auto state = Value::dict();
  for (const SlaEntry& e : file.entries) {
    auto tensors = Value::dict();
    tensors->set(kWeight, tensor_value(e.weight));
    tensors->set(kBias, tensor_value(e.bias));
    state->set(e.key, tensors);
  }
  auto root = Value::dict();
  root->set("settings", settings);
  root->set("state", state);
  root->set("version", Value::from_int(file.version));
  if (!file.extension.empty()) {
    auto extension = Value::dict();
    for (const auto& [key, v] : file.extension.items()) {
      if (v.is_string()) extension->set(key, Value::from_string(v.get<std::string>()));
      else if (v.is_boolean()) extension->set(key, Value::from_bool(v.get<bool>()));
      else if (v.is_number_integer()) extension->set(key, Value::from_int(v.get<int64_t>()));
      else if (v.is_number_float()) extension->set(key, Value::from_double(v.get<double>()));
      else if (v.is_null()) extension->set(key, Value::none());
      else throw CheckpointError("E_SCHEMA", "extension value is not a str, int, float or bool", std::string(kExtensionKey) + "/" + key);
    }
    root->set(kExtensionKey, extension);
  }
  return root;
}

// The archive prefix torch.save would use: the file's stem, or "archive" when the stem does not
// fit the name grammar.
std::string archive_prefix_for(const std::string& path) {
  size_t slash = path.find_last_of('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  size_t dot = base.find_last_of('.');
  std::string stem = dot == std::string::npos || dot == 0 ? base : base.substr(0, dot);
  bool ok = !stem.empty() && stem != "." && stem != ".." && stem.size() <= 200;
  for (unsigned char c : stem) ok &= c >= 0x20 && c < 0x7f && c != '\\' && c != ':';
  return ok ? stem : "archive";
}

// Throws the first problem that is not a warning (the writer passes none at all: see write_sla_file).
void throw_first(const std::vector<Problem>& all, bool warnings_too = false) {
  std::vector<Problem> problems;
  for (const Problem& p : all)
    if (warnings_too || !is_warning(p)) problems.push_back(p);
  if (problems.empty()) return;
  const Problem& p = problems.front();
  std::string more = problems.size() > 1 ? " (and " + std::to_string(problems.size() - 1) + " more problems)" : "";
  throw CheckpointError(p.code, p.message + more, p.where);
}

SlaLoadResult load_payload(const pt::PtFile& pt) {
  Payload p = read_payload(*pt.root);
  for (size_t i = 0; i < p.file.entries.size(); ++i) {
    SlaEntry& entry = p.file.entries[i];
    for (const auto& [name, tensor] : p.tensors[i]) {
      // Only the two known tensors carry values; any other name is already a reported problem. A
      // floating dtype other than float32 (also a reported problem) is read as float, so that its
      // values are still judged (a trained bf16 projection is not "all zero").
      if (!is_floating(tensor->dtype) || (name != kWeight && name != kBias)) continue;
      (name == kWeight ? entry.weight : entry.bias).values = float32_values(*tensor);
    }
  }
  SlaLoadResult result;
  result.problems = std::move(p.problems);
  for (Problem& problem : check_sla_file(p.file)) result.problems.push_back(std::move(problem));
  result.file = std::move(p.file);
  return result;
}

SlaLoadResult load_from(const pt::PtFile& pt) {
  return pt.read_unchanged([&] { return load_payload(pt); });  // the values are copies of the file's bytes
}

}  // namespace

std::string SlaFile::variant() const {
  auto it = extension.find("variant");
  return it != extension.end() && it->is_string() ? it->get<std::string>() : "all";
}

const SlaEntry* SlaFile::find(const std::string& key) const {
  for (const SlaEntry& e : entries)
    if (e.key == key) return &e;
  return nullptr;
}

std::string dtype_token_for(const std::string& torch_dtype_name) {
  std::string name = torch_dtype_name.compare(0, 6, "torch.") == 0 ? torch_dtype_name.substr(6) : torch_dtype_name;
  if (name == "bfloat16") return "bf16";
  if (name == "float16" || name == "half") return "fp16";
  if (name == "float32" || name == "float") return "fp32";
  return name;
}

std::vector<Problem> check_sla_file(const SlaFile& file) {
  std::vector<Problem> problems;
  auto problem = [&](const char* code, std::string message, std::string where) {
    problems.push_back({code, std::move(message), std::move(where)});
  };
  const SlaSettings& s = file.settings;
  const std::string at = "settings/";
  if (!topk_allowed(s.topk))
    problem("E_SCHEMA", std::string(kSettingTopk) + " " + std::to_string(s.topk) + " outside (0, 1]", at + kSettingTopk);
  if (!feature_map_allowed(s.feature_map))
    problem("E_SCHEMA", std::string(kSettingFeatureMap) + " \"" + s.feature_map.substr(0, 40) + "\" is not " + feature_maps_text(),
            at + kSettingFeatureMap);
  for (auto [name, block] : {std::pair<const char*, int64_t>{kSettingBlkq, s.blkq}, {kSettingBlkk, s.blkk}})
    if (!block_size_allowed(block))
      problem("E_SCHEMA", std::string(name) + " " + std::to_string(block) + " is not " + block_sizes_text(), at + name);
  if (file.version != kSlaFormatVersion)
    problem(kCompatWarning,
            "payload version " + std::to_string(file.version) +
                " is not 1: read as version 1, anything this toolkit does not know is reported (SimpleTuner does not "
                "check the version)",
            "version");

  std::unordered_set<std::string_view> keys;
  for (size_t i = 0; i < file.entries.size(); ++i) {
    const SlaEntry& e = file.entries[i];
    std::string where = "state/" + e.key;
    if (!keys.insert(e.key).second) problem("E_SCHEMA", "duplicate state key", where);
    // "<head_dim>:<token>": decimal head_dim > 0, token [a-z0-9_]+ (SimpleTuner skips other keys).
    const StateKey parsed = parse_state_key(e.key);
    int64_t d = parsed.well_formed ? parsed.head_dim : 0;
    if (d <= 0) {
      problem("E_SCHEMA", "state key \"" + e.key.substr(0, 60) + "\" does not match <head_dim>:<dtype> (SimpleTuner skips it)", where);
      continue;
    }
    if (e.head_dim != d) problem("E_SCHEMA", "head_dim " + std::to_string(e.head_dim) + " disagrees with the key", where);
    if (d > kMaxHeadDim) {
      problem("E_SCHEMA", "head_dim " + std::to_string(d) + " is above " + std::to_string(kMaxHeadDim) + " (no attention is that wide)", where);
      continue;
    }
    struct Expected {
      const char* name;
      const Float32Tensor& tensor;
      std::vector<int64_t> shape;
    };
    for (const Expected& x : {Expected{kWeight, e.weight, {d, d}}, Expected{kBias, e.bias, {d}}}) {
      std::string at = where + "/" + x.name;
      if (x.tensor.shape.empty() && x.tensor.values.empty()) {
        problem("E_SCHEMA", std::string("missing ") + x.name, at);
        continue;
      }
      if (x.tensor.shape != x.shape) {
        problem("E_SCHEMA", std::string(x.name) + " has shape " + shape_text(x.tensor.shape) + ", expected " + shape_text(x.shape) + " for head_dim " + std::to_string(d), at);
        continue;
      }
      uint64_t numel = x.name == std::string(kWeight) ? uint64_t(d) * uint64_t(d) : uint64_t(d);
      if (x.tensor.values.empty()) continue;  // not loaded (a wrong dtype was reported already)
      if (x.tensor.values.size() != numel) {
        problem("E_SCHEMA", std::string(x.name) + " holds " + std::to_string(x.tensor.values.size()) + " values for shape " + shape_text(x.shape), at);
        continue;
      }
      uint64_t bad = 0;
      for (float v : x.tensor.values) bad += !std::isfinite(v);
      if (bad) problems.push_back(nonfinite_problem(at, bad, numel));
    }
  }
  for (const auto& [key, v] : file.extension.items()) {
    if (v.is_object() || v.is_array()) problem("E_SCHEMA", "extension values are flat (str, int, float, bool)", std::string(kExtensionKey) + "/" + key);
    if (key == "variant" && (!v.is_string() || (v != "all" && v != "complement")))
      problem("E_SCHEMA", "variant is not \"all\" or \"complement\"", std::string(kExtensionKey) + "/variant");
  }
  return problems;
}

SlaLoadResult load_sla_file(const std::string& path) { return load_from(pt::read_pt_file(path)); }

SlaLoadResult load_sla_buffer(const uint8_t* data, size_t size, const std::string& name) {
  return load_from(pt::read_pt_buffer(data, size, name));
}

SlaFile read_sla_file(const std::string& path) {
  SlaLoadResult result = load_sla_file(path);
  throw_first(result.problems);
  return std::move(result.file);
}

namespace {

// Moves the forward-compatibility warnings out of the problems.
void split_warnings(SlaInspection& out) {
  std::vector<Problem> problems;
  for (Problem& p : out.problems) (is_warning(p) ? out.compat : problems).push_back(std::move(p));
  out.problems = std::move(problems);
}

// The inspection of a read file: payload, schema problems and the statistics of every tensor.
SlaInspection summarise(const pt::PtFile& pt) {
  std::map<std::string, const pt::DeferredCrc*> unchecked;  // storage key -> record
  for (const pt::DeferredCrc& d : pt.deferred_crcs) unchecked[d.storage_key] = &d;

  Payload p = read_payload(*pt.root);
  SlaInspection out;
  out.prefix = pt.prefix;
  out.container_version = pt.version;
  out.has_payload_version = p.has_version;
  out.has_settings = p.has_settings;
  out.warnings = pt.warnings;
  out.problems = std::move(p.problems);
  for (Problem& problem : check_sla_file(p.file)) out.problems.push_back(std::move(problem));
  for (size_t i = 0; i < p.file.entries.size(); ++i) {
    const SlaEntry& e = p.file.entries[i];
    EntrySummary summary{e.key, e.head_dim, e.dtype_token, {}};
    for (const auto& [name, tensor] : p.tensors[i]) {
      pt::TensorStats stats;
      auto deferred = unchecked.find(tensor->storage->key);
      if (deferred != unchecked.end()) {
        uint32_t crc = 0;
        stats = pt::tensor_stats_with_storage_crc(*tensor, &crc);
        pt::check_deferred_crc(*deferred->second, crc);
        unchecked.erase(deferred);
      } else {
        stats = pt::tensor_stats(*tensor);
      }
      TensorSummary t = tensor_summary(name, tensor->dtype, tensor->shape, tensor->numel(), stats);
      if (stats.nonfinite && tensor->dtype == pt::DType::Float32 && (name == kWeight || name == kBias))
        out.problems.push_back(nonfinite_problem("state/" + e.key + "/" + name, stats.nonfinite, t.numel));
      summary.tensors.push_back(std::move(t));
    }
    out.entries.push_back(std::move(summary));
  }
  // Storages no summarised tensor used: checked on their own before anything is reported.
  for (const auto& [key, deferred] : unchecked)
    pt::check_deferred_crc(*deferred, crc32_update(0, deferred->entry.data, static_cast<size_t>(deferred->entry.size)));
  out.file = std::move(p.file);
  split_warnings(out);
  return out;
}

}  // namespace

SlaInspection inspect_sla_file(const std::string& path) {
  // Large storage records get their CRC checked in the same pass as their statistics.
  pt::ReadOptions options;
  options.zip.defer_crc_at_least = uint64_t(1) << 20;
  pt::PtFile pt = pt::read_pt_file(path, options);
  return pt.read_unchanged([&] { return summarise(pt); });  // statistics of the file's bytes
}

SlaInspection inspect_sla_payload(const SlaFile& file, const std::string& format, std::vector<Problem> reader_warnings) {
  SlaInspection out;
  out.format = format;
  // The caller's reader refuses a payload without settings, and reads one without a version as
  // version 1 with a warning at "version" (compat_missing_version).
  out.has_payload_version = std::none_of(reader_warnings.begin(), reader_warnings.end(),
                                         [](const Problem& p) { return p.where == "version"; });
  out.has_settings = true;
  out.problems = std::move(reader_warnings);
  for (Problem& p : check_sla_file(file)) out.problems.push_back(std::move(p));
  for (const SlaEntry& e : file.entries) {
    EntrySummary summary{e.key, e.head_dim, e.dtype_token, {}};
    for (const auto& [name, tensor] : {std::pair<const char*, const Float32Tensor*>{kWeight, &e.weight}, {kBias, &e.bias}}) {
      if (tensor->values.size() != product(tensor->shape)) continue;  // reported by check_sla_file
      const pt::ValuePtr value = tensor_value(*tensor);             // a view of the values, no copy
      const pt::TensorStats stats = pt::tensor_stats(*value->tensor);
      TensorSummary t = tensor_summary(name, pt::DType::Float32, tensor->shape, tensor->values.size(), stats);
      summary.tensors.push_back(std::move(t));
    }
    out.entries.push_back(std::move(summary));
  }
  out.file = file;
  for (SlaEntry& e : out.file.entries) e.weight.values.clear(), e.bias.values.clear();  // entries without values
  split_warnings(out);
  return out;
}

void write_sla_file(const std::string& path, const SlaFile& file) {
  std::vector<Problem> problems = check_sla_file(file);
  for (const SlaEntry& e : file.entries)
    for (const Float32Tensor* t : {&e.weight, &e.bias})
      if (t->values.size() != product(t->shape))
        problems.push_back({"E_SCHEMA", "tensor of shape " + shape_text(t->shape) + " holds " + std::to_string(t->values.size()) + " values", "state/" + e.key});
  throw_first(problems, /*warnings_too=*/true);  // this writer writes version 1 and nothing unknown

  std::vector<uint8_t> bytes = pt::encode_pt(*to_value(file), archive_prefix_for(path));
  write_file_durably(path, bytes.data(), bytes.size(), [&](const std::string& temp) {
    SlaLoadResult back = load_sla_file(temp);
    throw_first(back.problems, /*warnings_too=*/true);
    bool same = back.file.entries.size() == file.entries.size() && back.file.version == file.version &&
                back.file.extension == file.extension;
    for (size_t i = 0; same && i < file.entries.size(); ++i) {
      const SlaEntry& a = file.entries[i];
      const SlaEntry& b = back.file.entries[i];
      same = a.key == b.key && a.weight.values.size() == b.weight.values.size() && a.bias.values.size() == b.bias.values.size() &&
             std::memcmp(a.weight.values.data(), b.weight.values.data(), a.weight.values.size() * sizeof(float)) == 0 &&
             std::memcmp(a.bias.values.data(), b.bias.values.data(), a.bias.values.size() * sizeof(float)) == 0;
    }
    if (!same) throw CheckpointError("E_WRITE", "the file read back differs from what was written", temp);
  });
}

}  // namespace sla::checkpoint
