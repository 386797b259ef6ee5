// A typed view of sla_attention.pt (see ../shared/docs/sla-format.md):
//   {"settings": {topk, feature_map, blkq, blkk, tie_feature_map_qk},
//    "state": {"<head_dim>:<dtype token>": {"proj_l.weight": f32 [D, D], "proj_l.bias": f32 [D]}, ...},
//    "version": 1,
//    "sla_toolkit": {...}}            // our extension key; SimpleTuner ignores it
// The extension is a flat JSON object of str/int/float/bool values (variant, writer, regenerated, ...).
// This header is LibTorch-free; conversion to torch::Tensor lives in src/sla.
#pragma once

#include "errors.h"
#include "sla_settings.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace sla::checkpoint {

inline constexpr const char* kSlaFileName = "sla_attention.pt";
inline constexpr const char* kSlaTwinName = "sla_attention.safetensors";
inline constexpr const char* kExtensionKey = "sla_toolkit";
inline constexpr int64_t kSlaFormatVersion = 1;
// Bounds far beyond any real model, so that a hostile file is refused before it costs anything: a
// model has a handful of (head_dim, dtype) pairs, and attention head dims stay in the hundreds.
inline constexpr size_t kMaxStateEntries = 1024;  // E_LIMIT (thrown: the file is not read further)
inline constexpr int64_t kMaxHeadDim = 4096;      // E_SCHEMA (a problem: the entry's values are not checked)

// The settings as a JSON object of the five keys in file order (defined with the schema, sla_settings.cpp).
nlohmann::ordered_json settings_to_json(const SlaSettings& s);

// A contiguous row-major float32 tensor.
struct Float32Tensor {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

struct SlaEntry {
  std::string key;          // make_state_key(head_dim, dtype_token), e.g. "128:bf16"
  int64_t head_dim = 0;     // parse_state_key(key)
  std::string dtype_token;  // bf16 | fp16 | fp32 | another torch dtype name
  Float32Tensor weight;     // proj_l.weight [D, D]
  Float32Tensor bias;       // proj_l.bias   [D]
};

struct SlaFile {
  SlaSettings settings;
  int64_t version = kSlaFormatVersion;
  std::vector<SlaEntry> entries;                      // file order; keys unique
  nlohmann::json extension = nlohmann::json::object();  // our top-level key; empty when absent
  bool has_extension = false;                          // the file carried the key

  // Variant recorded in the extension, or "all" when absent (reports then say it was assumed).
  std::string variant() const;
  const SlaEntry* find(const std::string& key) const;
};

// One schema problem: a code (E_SCHEMA, E_VALUES, ...), a message, and where (key path).
struct Problem {
  std::string code;
  std::string message;
  std::string where;
};

// Forward compatibility: what SimpleTuner reads without complaint although this toolkit's format
// version 1 does not have it (a version other than 1 or none, an extra setting, an extra tensor in an
// entry, a missing tie_feature_map_qk) is a Problem with this code, a warning: the file is still
// valid, and the message says what was ignored or which default applies.
inline constexpr const char* kCompatWarning = "W_COMPAT";
inline bool is_warning(const Problem& p) { return p.code == kCompatWarning; }

// Those warnings, one wording for the .pt's reader and the twin's (safetensors::from_sla_twin).
Problem compat_missing_version();                  // "version"
Problem compat_missing_tie_feature_map_qk();       // "settings/tie_feature_map_qk"
Problem compat_unknown_setting(const std::string& name);                                   // "settings/<name>"
Problem compat_unknown_entry_item(const std::string& entry_key, const std::string& name);  // "state/<key>/<name>"

struct SlaLoadResult {
  SlaFile file;                   // best effort when problems exist
  std::vector<Problem> problems;  // schema and value problems; empty = valid
};

// Reads and schema-checks a .pt file. Throws CheckpointError when the container or pickle cannot
// be read at all; schema problems are listed instead.
SlaLoadResult load_sla_file(const std::string& path);

// The same from bytes in memory (the fuzz target's entry point). name is used in messages.
SlaLoadResult load_sla_buffer(const uint8_t* data, size_t size, const std::string& name);

// Reads a .pt file and throws CheckpointError on the first problem (warnings, is_warning, pass).
SlaFile read_sla_file(const std::string& path);

// Schema and value checks of an in-memory file (what load_sla_file reports).
std::vector<Problem> check_sla_file(const SlaFile& file);

// Writes the file atomically and durably (temp in the same folder, fsync, re-read and validate,
// rename, fsync folder). On any failure the target is untouched and the temp is gone.
// Python torch.load(weights_only=True) loads the result.
void write_sla_file(const std::string& path, const SlaFile& file);

// "bf16" for torch.bfloat16 etc.: the token SimpleTuner uses in state keys.
std::string dtype_token_for(const std::string& torch_dtype_name);

// ---- inspection: what `sla-ckpt inspect` reports, computed on the file's bytes without copies ----

// Statistics of one stored tensor over its finite elements; finite = no NaN or Inf at all.
struct TensorSummary {
  std::string name;   // "proj_l.weight"
  std::string dtype;  // as torch prints it without "torch.": float32, bfloat16, ...
  std::vector<int64_t> shape;
  uint64_t numel = 0;
  double sum = 0, min = 0, max = 0, abs_max = 0;  // 0 when there is no finite element
  bool finite = true;
  uint64_t nonfinite = 0;
};

struct EntrySummary {
  std::string key;
  int64_t head_dim = 0;     // 0 when the key does not parse
  std::string dtype_token;  // the part after ':'
  std::vector<TensorSummary> tensors;
};

struct SlaInspection {
  std::string format = "torch.save";
  std::string prefix;                 // the archive's top folder
  int64_t container_version = 0;      // the zip's "version" record
  bool has_payload_version = false;   // "version" key present and an int
  bool has_settings = false;          // "settings" present and a dict
  SlaFile file;                       // settings, version, extension; entries without values
  std::vector<EntrySummary> entries;  // file order
  std::vector<Problem> problems;      // schema and value problems; empty = valid
  std::vector<Problem> compat;        // forward-compatibility warnings (kCompatWarning), not problems
  std::vector<std::string> warnings;  // container warnings (e.g. misaligned records)
};

// Reads path like load_sla_file but summarises tensors instead of copying them. Throws
// CheckpointError when the container or pickle cannot be read at all.
SlaInspection inspect_sla_file(const std::string& path);

// The same report for a payload already in memory (the safetensors twin: safetensors::inspect_sla_twin):
// its schema problems and the statistics of its float32 values, computed as for a .pt's;
// reader_warnings are what its reader read past (kCompatWarning), reported first.
SlaInspection inspect_sla_payload(const SlaFile& file, const std::string& format, std::vector<Problem> reader_warnings = {});

}  // namespace sla::checkpoint
