// Conversion between the LibTorch-free SLA file model (sla::checkpoint::SlaFile, src/checkpoint) and
// torch: proj_l tensors, dtype tokens of state keys, settings.
#pragma once

#include "sla_config.h"
#include "sla/checkpoint/sla_state.h"

#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <vector>

namespace sla {

// The token SimpleTuner puts in state keys for a query dtype: bf16, fp16, fp32, else the torch
// name without "torch." (float64, ...).
std::string dtype_token(at::ScalarType dtype);
// The inverse for the floating dtypes; nullopt for a token we cannot map.
std::optional<at::ScalarType> dtype_from_token(const std::string& token);

// "<head_dim>:<token>", e.g. "128:bf16".
std::string state_key(int64_t head_dim, at::ScalarType dtype);

sla::checkpoint::Float32Tensor to_float32_tensor(const at::Tensor& t);  // any device/dtype -> CPU float32 copy
at::Tensor to_tensor(const sla::checkpoint::Float32Tensor& t);           // CPU float32 tensor (a copy)

// An entry from a module's proj_l parameters.
sla::checkpoint::SlaEntry make_entry(int64_t head_dim, at::ScalarType dtype, const at::Tensor& weight, const at::Tensor& bias);

// Empty when the entry's tensors have the shapes [D, D] and [D] for its head_dim; else the reason.
std::string entry_shape_problem(const sla::checkpoint::SlaEntry& entry);

// The five SimpleTuner settings of a config (variant is ours and lives in the extension key).
sla::checkpoint::SlaSettings to_settings(const SlaConfig& cfg);

// Names of the settings that differ between a file and the runtime config, SimpleTuner's five
// keys in their order, then "variant" (the file's variant is "all" when it does not record one).
std::vector<std::string> differing_settings(const sla::checkpoint::SlaFile& file, const SlaConfig& runtime);

}  // namespace sla
