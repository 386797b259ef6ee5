// Registers the file operators of sla_attention.pt (and its safetensors twin) in namespace `sla`,
// so that Python reads and writes SimpleTuner's payload through this project's hardened reader and
// durable writer (src/checkpoint) instead of pickle:
//   sla::save_state(path, topk, feature_map, blkq, blkk, tie_feature_map_qk, keys, weights, biases,
//                   extension_json) -> ()
//   sla::load_state(path) -> (topk, feature_map, blkq, blkk, tie_feature_map_qk, version,
//                             extension_json, keys, weights, biases)
// keys are state keys "<head_dim>:<dtype token>"; weights[i] is proj_l.weight [D, D] and biases[i]
// proj_l.bias [D] of keys[i] (any dtype and device on save; CPU float32 on load). extension_json is
// our top-level key as a JSON object, or "" for none. A path ending in ".safetensors" is the twin.
// Every failure is one CheckpointError line ("E_CRC: crc mismatch in ...").
// Python: sla_toolkit.save_sla_state / load_sla_state (python/sla_toolkit/state.py).
#include "sla/checkpoint/errors.h"
#include "sla/checkpoint/safetensors.h"
#include "sla/checkpoint/sla_state.h"
#include "sla/sla_state_torch.h"

#include <nlohmann/json.hpp>
#include <torch/library.h>

#include <string>
#include <tuple>
#include <vector>

namespace sla {
namespace {

namespace ckpt = sla::checkpoint;

bool is_twin_path(const std::string& path) {
  static const std::string suffix = ".safetensors";
  return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void save_state(const std::string& path, double topk, const std::string& feature_map, int64_t blkq, int64_t blkk,
                bool tie_feature_map_qk, const std::vector<std::string>& keys, const std::vector<at::Tensor>& weights,
                const std::vector<at::Tensor>& biases, const std::string& extension_json) {
  if (keys.size() != weights.size() || keys.size() != biases.size())
    throw ckpt::CheckpointError("E_SCHEMA", std::to_string(keys.size()) + " keys but " + std::to_string(weights.size()) +
                                                " weights and " + std::to_string(biases.size()) + " biases",
                                path);
  ckpt::SlaFile file;
  file.settings = {topk, feature_map, blkq, blkk, tie_feature_map_qk};
  for (size_t i = 0; i < keys.size(); ++i) {
    const ckpt::StateKey parsed = ckpt::parse_state_key(keys[i]);
    if (!parsed.well_formed)
      throw ckpt::CheckpointError("E_SCHEMA", "state key '" + keys[i] + "' is not '<head_dim>:<dtype token>'", path);
    ckpt::SlaEntry entry;
    entry.key = keys[i];
    entry.head_dim = parsed.head_dim;
    entry.dtype_token = parsed.dtype_token;
    entry.weight = to_float32_tensor(weights[i]);
    entry.bias = to_float32_tensor(biases[i]);
    file.entries.push_back(std::move(entry));
  }
  if (!extension_json.empty()) {
    try {
      file.extension = nlohmann::json::parse(extension_json);
    } catch (const nlohmann::json::exception&) {
      throw ckpt::CheckpointError("E_SCHEMA", "the extension is not JSON", path);
    }
    if (!file.extension.is_object()) throw ckpt::CheckpointError("E_SCHEMA", "the extension is not a JSON object", path);
    file.has_extension = true;
  }
  // Both writers check the payload first (schema, shapes, values; a problem throws) and write
  // through a temp file, fsync, re-read and rename.
  if (is_twin_path(path)) {
    if (const auto problems = ckpt::check_sla_file(file); !problems.empty())
      throw ckpt::CheckpointError(problems.front().code, problems.front().message, problems.front().where);
    ckpt::safetensors::write_file(path, ckpt::safetensors::to_sla_twin(file));
  } else {
    ckpt::write_sla_file(path, file);
  }
}

using LoadedState = std::tuple<double, std::string, int64_t, int64_t, bool, int64_t, std::string, std::vector<std::string>,
                               std::vector<at::Tensor>, std::vector<at::Tensor>>;

// Forward-compatible extras (no version, an unknown setting or tensor) are read past, as for the .pt.
ckpt::SlaFile read_twin(const std::string& path) {
  ckpt::SlaFile file = ckpt::safetensors::from_sla_twin(ckpt::safetensors::read_file(path), path);
  for (const ckpt::Problem& p : ckpt::check_sla_file(file))
    if (!ckpt::is_warning(p)) throw ckpt::CheckpointError(p.code, p.message, p.where);
  return file;
}

LoadedState load_state(const std::string& path) {
  const ckpt::SlaFile file = is_twin_path(path) ? read_twin(path) : ckpt::read_sla_file(path);
  std::vector<std::string> keys;
  std::vector<at::Tensor> weights, biases;
  for (const ckpt::SlaEntry& entry : file.entries) {
    keys.push_back(entry.key);
    weights.push_back(to_tensor(entry.weight));
    biases.push_back(to_tensor(entry.bias));
  }
  const ckpt::SlaSettings& s = file.settings;
  return {s.topk, s.feature_map, s.blkq, s.blkk, s.tie_feature_map_qk, file.version,
          file.has_extension ? file.extension.dump() : std::string(), keys, weights, biases};
}

}  // namespace

// Plain functions on CPU-side data: no dispatch key, so one CompositeExplicitAutograd kernel
// serves every call (they are not traced: torch.compile sees them as opaque).
TORCH_LIBRARY_FRAGMENT(sla, m) {
  m.def("save_state(str path, float topk, str feature_map, int blkq, int blkk, bool tie_feature_map_qk, str[] keys, "
        "Tensor[] weights, Tensor[] biases, str extension_json) -> ()");
  m.def("load_state(str path) -> (float, str, int, int, bool, int, str, str[], Tensor[], Tensor[])");
  m.impl("save_state", c10::DispatchKey::CompositeExplicitAutograd, TORCH_FN(save_state));
  m.impl("load_state", c10::DispatchKey::CompositeExplicitAutograd, TORCH_FN(load_state));
}

}  // namespace sla
