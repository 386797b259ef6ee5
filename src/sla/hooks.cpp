#include "hooks.h"

#include "sla_kernels.h"
#include "sla/checkpoint/mapped_file.h"
#include "sla/checkpoint/sla_state.h"
#include "sla_state_torch.h"

#include <ATen/core/grad_mode.h>

#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <unordered_set>

#ifndef SLA_TOOLKIT_VERSION
#error "SLA_TOOLKIT_VERSION must be defined by the build"
#endif

namespace sla {
namespace fs = std::filesystem;

const char* describe(Fallback reason) {
  switch (reason) {
    case Fallback::kNot4d: return "inputs are not 4-D (B, H, L, D)";
    case Fallback::kAttentionMask: return "an attention mask is given";
    case Fallback::kDropout: return "dropout_p > 0";
    case Fallback::kCausal: return "causal attention";
    case Fallback::kGroupedQueryAttention: return "grouped-query attention (query heads != key/value heads)";
    case Fallback::kLengthMismatch: return "query length != key length";
    case Fallback::kValueHeadDim: return "value head_dim != query head_dim";
    case Fallback::kNotFloatingPoint: return "inputs are not floating point";
    case Fallback::kFloat32OnCuda: return "float32 inputs on CUDA (SLA runs in bf16/fp16 there)";
  }
  return "?";
}

namespace {

std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : sep) + item;
  return out;
}

std::string show_settings(const sla::checkpoint::SlaSettings& s, const std::string& variant) {
  std::ostringstream out;
  out << "topk=" << s.topk << " feature_map=" << s.feature_map << " blkq=" << s.blkq << " blkk=" << s.blkk
      << " tie_feature_map_qk=" << (s.tie_feature_map_qk ? "true" : "false") << " variant=" << variant;
  return out.str();
}

}  // namespace

AttentionBackend::AttentionBackend(BackendOptions options)
    : options_(std::move(options)),
      group_(options_.process_group ? options_.process_group : options_.sequence_parallel_group),
      cfg_(SlaConfig::parse(options_.sla_config)),
      config_warnings_(SlaConfig::simpletuner_rejects(options_.sla_config)) {
  if (options_.attention_mechanism == "sla") {
    use_sla_ = true;
  } else if (options_.attention_mechanism == "sdpa") {
    use_sla_ = false;
  } else {
    throw std::invalid_argument("attention_mechanism must be one of sla, sdpa, got '" +
                                options_.attention_mechanism + "'");
  }
  const std::string& sd = options_.state_dtype;
  if (sd == "auto" || sd == "bf16") {
    state_token_ = "bf16";
  } else if (sd == "fp16" || sd.empty()) {
    state_token_ = sd;
  } else {
    throw std::invalid_argument("state_dtype must be one of bf16, fp16, auto or empty, got '" + sd + "'");
  }
}

std::optional<Fallback> AttentionBackend::fallback_reason(const at::Tensor& q, const at::Tensor& k,
                                                          const at::Tensor& v,
                                                          const std::optional<at::Tensor>& attn_mask,
                                                          double dropout_p, bool is_causal, bool enable_gqa) const {
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return Fallback::kNot4d;
  if (!at::isFloatingType(q.scalar_type())) return Fallback::kNotFloatingPoint;
  if (attn_mask.has_value() && attn_mask->defined()) return Fallback::kAttentionMask;
  if (dropout_p > 0.0) return Fallback::kDropout;
  if (is_causal) return Fallback::kCausal;
  if (q.size(1) != k.size(1) || q.size(1) != v.size(1)) return Fallback::kGroupedQueryAttention;
  if (q.size(2) != k.size(2)) return Fallback::kLengthMismatch;
  if (v.size(3) != q.size(3)) return Fallback::kValueHeadDim;
  if (q.is_cuda() && q.scalar_type() == at::kFloat) return Fallback::kFloat32OnCuda;
  return std::nullopt;
}

void AttentionBackend::log_once(Fallback reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (logged_.insert(reason).second) {
    emit(std::string("falling back to scaled_dot_product_attention: ") + describe(reason) +
        " (said once; later calls for this reason fall back silently)");
  }
}

at::Tensor AttentionBackend::operator()(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                        const std::optional<at::Tensor>& attn_mask, double dropout_p,
                                        bool is_causal, std::optional<double> scale, bool enable_gqa) {
  const AttentionFn sdpa_fn = [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    return at::scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa);
  };
  // With a sequence-parallel group, q, k, v are shards: whatever runs, runs on the whole sequence.
  const ProcessGroupPtr& sp = options_.sequence_parallel_group;
  auto whole_sequence = [&](const AttentionFn& attention) {
    return sp ? ulysses_attention(query, key, value, attention, sp) : attention(query, key, value);
  };
  if (sp && attn_mask.has_value() && attn_mask->defined())
    throw DistributedError("AttentionBackend: an attention mask of a sequence shard cannot be used with sequence "
                           "parallelism (sequence_parallel_group is set)");
  auto sdpa = [&] { return whole_sequence(sdpa_fn); };
  if (!use_sla_) return sdpa();
  if (const auto reason = fallback_reason(query, key, value, attn_mask, dropout_p, is_causal, enable_gqa)) {
    log_once(*reason);
    return sdpa();
  }
#ifdef SLA_HAVE_CUDA_KERNELS
  // SLA still runs, through the reference (slow on long sequences): say why, once per reason.
  if (query.is_cuda()) {
    std::string why;
    if (!cuda_kernels_support(query, key, value, cfg_, &why)) log_once_kernels(why);
  }
#endif
  SparseLinearAttention module = materialize(query.size(3), query.device(), query.scalar_type());
  return whole_sequence([&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    return module->forward(q, k, v, scale.value_or(0.0));
  });
}

void AttentionBackend::log_once_kernels(const std::string& why) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (logged_kernels_.insert(why).second) {
    emit("the fused kernels do not run these inputs (" + why +
        "); SLA runs through the reference (said once per reason)");
  }
}

SparseLinearAttention AttentionBackend::materialize(int64_t head_dim, at::Device device, at::ScalarType dtype) {
  std::lock_guard<std::mutex> lock(mutex_);
  const ModuleKey key{head_dim, dtype_token(dtype), device.str()};
  if (auto found = modules_.find(key); found != modules_.end()) return found->second;
  if (modules_.empty())
    for (const auto& w : config_warnings_) emit("warning: " + w);
  // Every rank creates this module now (the same forward): first agree on what it is.
  if (group_) check_same_on_all_ranks(group_, "SLA settings or modules", module_signature(key));
  SparseLinearAttention module(head_dim, cfg_);
  module->to(device);
  module->train(is_training());
  restore(key, module);
  if (group_) broadcast_from_rank0(group_, module->parameters());
  modules_.emplace(key, module);
  return module;
}

std::string AttentionBackend::module_signature(const ModuleKey& key) const {
  const auto& [head_dim, token, device] = key;
  // The device index may differ between ranks (a GPU each), its type may not.
  return "(" + show_settings(to_settings(cfg_), to_string(cfg_.variant)) + "; module " +
         sla::checkpoint::make_state_key(head_dim, token) + " on " +
         c10::DeviceTypeName(at::Device(device).type(), /*lower_case=*/true) + ")";
}

void AttentionBackend::materialize_loaded(at::Device device) {
  std::vector<std::pair<int64_t, at::ScalarType>> wanted;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& state_key_name : loaded_order_) {
      const sla::checkpoint::StateKey parsed = sla::checkpoint::parse_state_key(state_key_name);
      const auto dtype = dtype_from_token(parsed.dtype_token);
      if (loaded_copies_.count(state_key_name)) continue;  // a state_dtype copy: no module of its own
      if (dtype && parsed.head_dim > 0) wanted.emplace_back(parsed.head_dim, *dtype);
    }
  }
  for (const auto& [head_dim, dtype] : wanted) materialize(head_dim, device, dtype);
}

void AttentionBackend::restore(const ModuleKey& key, SparseLinearAttention& module) {
  const auto& [head_dim, token, device] = key;
  const std::string exact = sla::checkpoint::make_state_key(head_dim, token);
  std::string source;
  if (loaded_.count(exact)) {
    source = exact;
  } else {
    for (const auto& candidate : loaded_order_) {
      if (candidate.rfind(sla::checkpoint::make_state_key(head_dim, ""), 0) == 0) {
        source = candidate;
        break;
      }
    }
    if (source.empty()) return;
    emit("notice: no state for " + exact + " in " + sla::checkpoint::kSlaFileName + "; applying the " + source +
        " projection instead (proj_l is float32, so it carries over between attention dtypes)");
  }
  at::NoGradGuard no_grad;
  const LoadedState& state = loaded_.at(source);
  module->proj_l->weight.copy_(state.weight);
  module->proj_l->bias.copy_(state.bias);
}

void AttentionBackend::register_with(torch::optim::Optimizer& optimizer) {
  std::unordered_set<const void*> held;
  for (const auto& group : optimizer.param_groups()) {
    for (const auto& p : group.params()) held.insert(p.unsafeGetTensorImpl());
  }
  for (const SparseLinearAttention& module : modules()) {
    std::vector<at::Tensor> params = module->parameters();
    if (held.count(params.front().unsafeGetTensorImpl())) continue;
    // A group with no options of its own takes the optimizer's defaults.
    optimizer.add_param_group(torch::optim::OptimizerParamGroup(params));
  }
}

void AttentionBackend::train(bool on) {
  torch::nn::Module::train(on);
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [key, module] : modules_) module->train(on);
}

std::vector<SparseLinearAttention> AttentionBackend::modules() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<SparseLinearAttention> out;
  for (const auto& [key, module] : modules_) out.push_back(module);
  return out;
}

void AttentionBackend::sync_gradients() {
  if (!group_) return;
  std::vector<at::Tensor> params;
  for (const SparseLinearAttention& module : modules())
    for (const at::Tensor& p : module->parameters()) params.push_back(p);
  average_gradients(group_, params);
}

void AttentionBackend::on_save_checkpoint(const std::string& dir) const {
  if (!options_.is_main_process || (group_ && group_->getRank() != 0)) return;
  sla::checkpoint::SlaFile file;
  std::vector<std::string> copies;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (modules_.empty()) return;
    file.settings = to_settings(cfg_);
    file.version = sla::checkpoint::kSlaFormatVersion;
    std::set<std::string> seen;
    for (const auto& [key, module] : modules_) {
      // One state per (head_dim, dtype): SimpleTuner's key has no device; the first device wins.
      const auto dtype = dtype_from_token(std::get<1>(key));
      const std::string name = sla::checkpoint::make_state_key(std::get<0>(key), std::get<1>(key));
      if (!seen.insert(name).second) continue;
      sla::checkpoint::SlaEntry entry = make_entry(std::get<0>(key), dtype.value_or(at::kFloat), module->proj_l->weight,
                                           module->proj_l->bias);
      entry.key = name;
      entry.dtype_token = std::get<1>(key);
      file.entries.push_back(std::move(entry));
    }
    // state_dtype: the entries the consumer will look up, for modules that ran in another dtype.
    if (!state_token_.empty()) {
      const size_t own = file.entries.size();
      for (size_t i = 0; i < own; ++i) {
        const sla::checkpoint::SlaEntry& source = file.entries[i];
        if (source.dtype_token == "bf16" || source.dtype_token == "fp16") continue;
        const std::string name = sla::checkpoint::make_state_key(source.head_dim, state_token_);
        if (!seen.insert(name).second) continue;  // a module of that dtype exists, or already copied
        sla::checkpoint::SlaEntry copy = source;
        copy.key = name;
        copy.dtype_token = state_token_;
        copies.push_back(name);
        file.entries.push_back(std::move(copy));
      }
    }
  }
  file.extension = {{"variant", to_string(cfg_.variant)}, {"writer", std::string("sla-toolkit ") + SLA_TOOLKIT_VERSION}};
  if (!copies.empty()) file.extension["state_dtype_copies"] = join(copies, ",");  // "16:bf16,32:bf16": the extension is flat
  file.has_extension = true;
  fs::create_directories(dir);
  const std::string path = (fs::path(dir) / sla::checkpoint::kSlaFileName).string();
  sla::checkpoint::write_sla_file(path, file);
  emit("wrote " + path + " (" + std::to_string(file.entries.size()) + " state" +
      (file.entries.size() == 1 ? "" : "s") + ")");
}

LoadReport AttentionBackend::on_load_checkpoint(const std::string& dir) {
  const LoadReport report = load_file(dir);
  if (group_) {
    // Every rank read the folder; a rank that found other entries (another folder, no file) would
    // restore other projections: refuse, then take rank 0's values for the modules that exist.
    const std::string found = report.found ? "entries " + join(report.loaded_keys)
                                           : "no " + std::string(sla::checkpoint::kSlaFileName);
    check_same_on_all_ranks(group_, "the SLA state loaded from the checkpoint", found);
    std::vector<at::Tensor> params;
    for (const SparseLinearAttention& module : modules())
      for (const at::Tensor& p : module->parameters()) params.push_back(p);
    broadcast_from_rank0(group_, params);
  }
  return report;
}

LoadReport AttentionBackend::load_file(const std::string& dir) {
  LoadReport report;
  const fs::path path = fs::path(dir) / sla::checkpoint::kSlaFileName;
  if (!sla::checkpoint::entry_exists(path.string())) {  // a dangling link is a broken file: read, and refused
    emit("no " + path.string() + "; SLA projections start from zero");
    return report;
  }
  report.found = true;
  const sla::checkpoint::SlaLoadResult result = sla::checkpoint::load_sla_file(path.string());
  for (const auto& problem : result.problems) {
    emit("warning: " + path.string() + ": " + problem.code + ": " + problem.message +
        (problem.where.empty() ? "" : " at " + problem.where));
  }
  const sla::checkpoint::SlaFile& file = result.file;

  report.differing_keys = differing_settings(file, cfg_);
  if (!report.differing_keys.empty()) {
    emit("warning: the settings in " + path.string() + " differ from the runtime ones in " +
        join(report.differing_keys) + " (file: " + show_settings(file.settings, file.variant()) +
        (file.has_extension ? "" : " (assumed)") + "; runtime: " + show_settings(to_settings(cfg_), to_string(cfg_.variant)) +
        "); the runtime settings are used and the trained projection is kept");
  }

  std::lock_guard<std::mutex> lock(mutex_);
  if (file.has_extension && file.extension.contains("state_dtype_copies") &&
      file.extension["state_dtype_copies"].is_string()) {
    std::stringstream list(file.extension["state_dtype_copies"].get<std::string>());
    for (std::string k; std::getline(list, k, ',');) loaded_copies_.insert(k);
  }
  for (const sla::checkpoint::SlaEntry& entry : file.entries) {
    const std::string problem = entry_shape_problem(entry);
    if (!problem.empty()) {
      report.skipped_entries.push_back(entry.key + ": " + problem);
      emit("warning: skipping state " + entry.key + " of " + path.string() + ": " + problem);
      continue;
    }
    if (!loaded_.count(entry.key)) loaded_order_.push_back(entry.key);
    loaded_[entry.key] = LoadedState{to_tensor(entry.weight), to_tensor(entry.bias)};
    report.loaded_keys.push_back(entry.key);
  }
  for (auto& [key, module] : modules_) restore(key, module);
  emit("loaded " + path.string() + " (" + join(report.loaded_keys) + ")");
  return report;
}

}  // namespace sla
