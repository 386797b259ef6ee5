// The checkpoint validator behind `sla-ckpt verify` (and `sla-ckpt push`, which refuses to upload a
// broken SLA model). LibTorch-free. Given a path - an sla_attention.pt or its safetensors twin, a
// SimpleTuner checkpoint-<step>/ folder, a training output folder (LoRA or full pipeline) or a
// downloaded repo snapshot - it answers: is this an SLA model, is its sla_attention.pt there, does
// it read cleanly, does it cover the model's attention shapes, are its settings and values sane.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace sla::checkpoint {

struct VerifyOptions {
  bool expect_sla = false;   // the caller knows the model was trained with SLA
  std::string model_config;  // a config.json giving the attention shape; empty = look for one
  bool strict = false;       // warnings count as failures in VerifyReport::ok
  // The linear-branch variant the user states ("all" | "complement"), for files that cannot record
  // it (SimpleTuner drops our extension key); empty: unknown unless the file records it.
  std::string variant;
};

enum class CheckStatus { kOk, kWarn, kFail };
const char* to_string(CheckStatus status);  // "ok" | "warn" | "fail"

struct Check {
  std::string id;  // evidence, file, read, schema, coverage, settings, variant, values, provenance, twin
  CheckStatus status = CheckStatus::kOk;
  std::string message;
  std::string where;  // the file or folder the check looked at
};

struct VerifyReport {
  std::string path;
  std::string kind;  // sla-file | sla-twin | checkpoint | lora-output | pipeline-output | snapshot | folder
  bool sla_expected = false;
  std::vector<Check> checks;
  bool ok = false;  // no failure (and, with strict, no warning)

  bool has_failure() const;
  nlohmann::json to_json() const;  // {"path", "kind", "sla_expected", "checks": [...], "ok"}
};

// Throws CheckpointError (E_IO) when the path does not exist or cannot be listed or opened, and
// E_CONFIG when --model-config cannot be read; every other problem is a check in the report.
VerifyReport verify_path(const std::string& path, const VerifyOptions& options);

// The attention shape of the model in a folder: head dims from `model_config` when given (E_CONFIG
// when it cannot be read or has none), else transformer/config.json or config.json
// (attention_head_dim, head_dim, or hidden_size / num_attention_heads), else those of the newest
// checkpoint-<step>/ inside the folder (a LoRA output has no config of its own); the dtype token (bf16,
// fp16, fp32, ...) of the float dtype holding most weight elements in the safetensors headers of
// transformer/*.safetensors, else *.safetensors (data never read). Shared with regenerate.
struct ModelShape {
  std::string config_path;  // empty = none found
  std::vector<int64_t> head_dims;
  std::string dtype_token;   // empty = no weights found
  std::string dtype_source;  // the weights file(s) it came from
};
ModelShape find_model_shape(const std::string& folder, const std::string& model_config = {});

// The checkpoint-<step>/ folder with the highest step directly inside `folder`; empty when none.
std::string newest_checkpoint_folder(const std::string& folder);

// The reference implementation (thu-ml/SLA) asserts these block sizes; SimpleTuner catches the
// assert and silently runs dense attention. Exposed for regenerate and inspect.
bool reference_kernel_accepts(int64_t blkq, int64_t blkk);

}  // namespace sla::checkpoint
