// The validator's parts, one file per concern (internal to src/checkpoint; verify.h is the API):
//   verify_folders.cpp   folder kinds and the file-system helpers (bounded reads, checkpoint-* folders)
//   verify_evidence.cpp  SLA evidence (model card, training config, checkpoint files)
//   verify_model.cpp     model discovery (attention head dims, the weights' dtype)
//   verify_checks.cpp    the checks on a readable file (schema, coverage, settings, ..., twin)
//   verify_lineage.cpp   the record a file without our extension key inherits from its run
//   verify.cpp           verify_path: the order of the checks and the report
#pragma once

#include "sla_state.h"
#include "verify.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace sla::checkpoint::verify_detail {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- folders (verify_folders.cpp) ----

std::string lower(std::string s);

bool is_file(const fs::path& p);

bool is_folder(const fs::path& p);

// The content of a regular file of at most kMaxTextFileBytes (never blocks on a FIFO or device).
std::optional<std::string> read_small_text(const fs::path& p);

std::vector<fs::path> files_in(const fs::path& folder);

// The step of a checkpoint-<step> name; -1 for any other name.
long long checkpoint_step(const fs::path& p);

// checkpoint-<step> folders under `folder` that hold an sla_attention.pt, newest (highest step) first.
std::vector<fs::path> checkpoint_files_under(const fs::path& folder, const fs::path& except);

bool is_checkpoint_name(const fs::path& folder);

// The folder kind: sla-file, sla-twin, snapshot, checkpoint, pipeline-output, lora-output or folder.
std::string classify(const fs::path& path, const fs::path& folder, bool path_is_file);

// ---- evidence (verify_evidence.cpp) ----

// True when `text` sets attention_mechanism to sla in JSON ("--attention_mechanism": "sla"),
// YAML (attention_mechanism: sla) or TOML (attention_mechanism = "sla").
bool sets_attention_mechanism_sla(const std::string& text);

// A model-card line saying SLA is on, e.g. SimpleTuner's
// "SLA: Enabled (you MUST use SLA for inference; sla_attention.pt contains attention weights)".
std::optional<std::string> model_card_sla_line(const std::string& text);

bool is_config_name(const fs::path& p);

struct Evidence {
  std::vector<std::string> reasons;  // "model card README.md", ...
  std::vector<fs::path> sibling_files;  // checkpoint-*/sla_attention.pt, newest first
};

Evidence gather_evidence(const fs::path& folder, bool file_present, const VerifyOptions& options);

// ---- model (verify_model.cpp) ----

std::vector<int64_t> head_dims_from_config(const json& config);

std::optional<json> read_json(const fs::path& p);

// The float dtype holding most weight elements, from the safetensors headers only.
void find_weights_dtype(const fs::path& folder, ModelShape& shape);

// ---- checks (verify_checks.cpp) ----

struct LoadedSla {
  SlaFile file;
  std::vector<Problem> problems;
};

LoadedSla load_any(const fs::path& p);

std::string join(const std::vector<std::string>& parts, const std::string& sep);

// ---- lineage (verify_lineage.cpp) ----

// The extension key of the earlier checkpoint of the same run that a file without one descends
// from (same settings, all of its entries present with the same shapes), newest first.
struct LineageRecord {
  fs::path file;    // that checkpoint's sla_attention.pt
  json extension;   // its record
  bool identical;   // its entries' values are bit-identical in the file (re-saved, not trained further)
};
std::optional<LineageRecord> find_lineage_record(const fs::path& target, const SlaFile& file);

// The checks; each adds its lines to the report.
class Verifier {
 public:
  explicit Verifier(VerifyReport& report) : report_(report) {}
  void add(const std::string& id, CheckStatus status, const std::string& message, const std::string& where);
  void check_schema(const LoadedSla& sla, const std::string& where);
  // sla_claimed: evidence beyond the file itself (model card, training config, --expect-sla, a
  // checkpoint's file); a file no bf16/fp16 run can use is then a failure, else a warning.
  void check_coverage(const SlaFile& file, const ModelShape& model, const std::string& where, bool sla_claimed);
  void check_settings(const SlaFile& file, const std::string& where);
  // lineage: what a file without our key inherits from its run (find_lineage_record).
  void check_variant(const SlaFile& file, const std::string& stated, const std::optional<LineageRecord>& lineage,
                     const std::string& where);
  void check_values(const SlaFile& file, const std::string& where);
  void check_provenance(const SlaFile& file, const std::optional<LineageRecord>& lineage, const std::string& where);
  // The .pt and its safetensors twin must hold the same payload.
  void check_twin(const SlaFile& pt, const fs::path& twin_path);

 private:
  VerifyReport& report_;
};

}  // namespace sla::checkpoint::verify_detail
