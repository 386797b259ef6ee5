#include "sla_state_torch.h"

#include <cmath>
#include <cstring>

namespace sla {

std::string dtype_token(at::ScalarType dtype) {
  switch (dtype) {
    case at::kBFloat16: return "bf16";
    case at::kHalf: return "fp16";
    case at::kFloat: return "fp32";
    case at::kDouble: return "float64";
    default: {
      // Python's torch.<name>: c10 names are CamelCase ("ComplexFloat"); lower-case is close
      // enough for the rare dtypes that never reach SLA.
      std::string name = c10::toString(dtype);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return name;
    }
  }
}

std::optional<at::ScalarType> dtype_from_token(const std::string& token) {
  if (token == "bf16" || token == "bfloat16") return at::kBFloat16;
  if (token == "fp16" || token == "float16" || token == "half") return at::kHalf;
  if (token == "fp32" || token == "float32" || token == "float") return at::kFloat;
  if (token == "float64" || token == "double") return at::kDouble;
  return std::nullopt;
}

std::string state_key(int64_t head_dim, at::ScalarType dtype) {
  return sla::checkpoint::make_state_key(head_dim, dtype_token(dtype));
}

sla::checkpoint::Float32Tensor to_float32_tensor(const at::Tensor& t) {
  const at::Tensor cpu = t.detach().to(at::kCPU, at::kFloat).contiguous();
  sla::checkpoint::Float32Tensor out;
  out.shape.assign(cpu.sizes().begin(), cpu.sizes().end());
  out.values.resize(static_cast<size_t>(cpu.numel()));
  std::memcpy(out.values.data(), cpu.data_ptr<float>(), out.values.size() * sizeof(float));
  return out;
}

at::Tensor to_tensor(const sla::checkpoint::Float32Tensor& t) {
  int64_t numel = 1;
  for (int64_t d : t.shape) numel *= d;
  if (numel != static_cast<int64_t>(t.values.size()))
    throw std::invalid_argument("sla: tensor shape does not match its value count");
  at::Tensor out = at::empty(t.shape, at::TensorOptions().dtype(at::kFloat));
  std::memcpy(out.data_ptr<float>(), t.values.data(), t.values.size() * sizeof(float));
  return out;
}

sla::checkpoint::SlaEntry make_entry(int64_t head_dim, at::ScalarType dtype, const at::Tensor& weight,
                             const at::Tensor& bias) {
  sla::checkpoint::SlaEntry entry;
  entry.key = state_key(head_dim, dtype);
  entry.head_dim = head_dim;
  entry.dtype_token = dtype_token(dtype);
  entry.weight = to_float32_tensor(weight);
  entry.bias = to_float32_tensor(bias);
  return entry;
}

std::string entry_shape_problem(const sla::checkpoint::SlaEntry& entry) {
  const int64_t d = entry.head_dim;
  auto shape_ok = [](const sla::checkpoint::Float32Tensor& t, std::vector<int64_t> shape) {
    size_t numel = 1;
    for (int64_t s : shape) numel *= static_cast<size_t>(s);
    return t.shape == shape && t.values.size() == numel;
  };
  if (d <= 0) return "head_dim must be positive";
  if (!shape_ok(entry.weight, {d, d})) return "proj_l.weight is not float32 [" + std::to_string(d) + ", " + std::to_string(d) + "]";
  if (!shape_ok(entry.bias, {d})) return "proj_l.bias is not float32 [" + std::to_string(d) + "]";
  return "";
}

sla::checkpoint::SlaSettings to_settings(const SlaConfig& cfg) {
  sla::checkpoint::SlaSettings s;
  s.topk = cfg.topk;
  s.feature_map = to_string(cfg.feature_map);
  s.blkq = cfg.blkq;
  s.blkk = cfg.blkk;
  s.tie_feature_map_qk = cfg.tie_feature_map_qk;
  return s;
}

std::vector<std::string> differing_settings(const sla::checkpoint::SlaFile& file, const SlaConfig& runtime) {
  const sla::checkpoint::SlaSettings ours = to_settings(runtime);
  const sla::checkpoint::SlaSettings& theirs = file.settings;
  std::vector<std::string> keys;
  if (ours.topk != theirs.topk) keys.push_back(sla::checkpoint::kSettingTopk);
  if (ours.feature_map != theirs.feature_map) keys.push_back(sla::checkpoint::kSettingFeatureMap);
  if (ours.blkq != theirs.blkq) keys.push_back(sla::checkpoint::kSettingBlkq);
  if (ours.blkk != theirs.blkk) keys.push_back(sla::checkpoint::kSettingBlkk);
  if (ours.tie_feature_map_qk != theirs.tie_feature_map_qk) keys.push_back(sla::checkpoint::kSettingTieFeatureMapQk);
  if (file.variant() != to_string(runtime.variant)) keys.push_back(sla::checkpoint::kSettingVariant);
  return keys;
}

}  // namespace sla
