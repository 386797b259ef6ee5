// What `regenerate` will do for a checkpoint folder whose sla_attention.pt is missing: which
// settings, which (head_dim, dtype) entries, which inputs, where the file goes. Worked out here,
// LibTorch-free, from the folder (training config, sibling checkpoints, model config, weights) and
// the user's request; the step itself runs in the SLA library (sla/regenerate.h), which takes this
// plan as it is. Every field says where it came from, so a dry run can show the reasoning.
#pragma once

#include "sla_settings.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace sla::checkpoint {

// The user's request (the CLI's flags): empty fields mean "find it in the folder".
struct RegenerateRequest {
  std::string folder;                // the checkpoint or output folder
  std::string sla_config;            // JSON or a Python-dict literal
  std::vector<int64_t> head_dims;    // entries to write
  std::string dtype;                 // bf16 | fp16
  std::string device = "auto";       // auto | cpu | cuda
  std::string calibration;           // safetensors with q, k, v (B, H, L, D)
};

struct RegenerateEntry {
  int64_t head_dim = 0;
  std::string dtype_token;  // bf16 | fp16
  std::string key;          // make_state_key(head_dim, dtype_token)
};

struct RegeneratePlan {
  std::string checkpoint_dir;
  std::string output;              // <checkpoint_dir>/sla_attention.pt
  SlaSettings settings;
  std::string variant;             // kVariants
  std::string settings_source;     // --sla-config | a training config | a sibling checkpoint | defaults
  std::string calibration;         // empty: standard-normal samples
  std::string inputs;              // "random normal" | "calibration <path>" (recorded in the file)
  std::vector<RegenerateEntry> entries;
  std::string entries_source;      // --head-dim | the model config (+ weights dtype) | calibration
  std::string device = "auto";     // auto | cpu | cuda
  bool existing_valid = false;     // a valid sla_attention.pt is already there
  std::string replaces;            // what the write would replace; empty: nothing
};

// Throws CheckpointError (E_CONFIG) naming the flag or file that is wrong.
RegeneratePlan make_regenerate_plan(const RegenerateRequest& request);

// The settings part of the plan alone (for a trainer that takes its own step on its own model):
// `sla_config`, else the training config in the folder or its parent, else the newest sibling
// checkpoint's sla_attention.pt, else the defaults.
struct FoundSettings {
  SlaSettings settings;
  std::string variant;
  std::string source;
};
FoundSettings find_regenerate_settings(const std::string& folder, const std::string& sla_config);

// Whether `path` holds an sla_attention.pt that loads without problems.
bool valid_sla_file_at(const std::string& path);

// The plan as the dry run prints it.
nlohmann::json to_json(const RegeneratePlan& plan);

}  // namespace sla::checkpoint
