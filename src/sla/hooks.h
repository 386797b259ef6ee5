// The trainer hooks: an attention backend any LibTorch model can call in place of
// at::scaled_dot_product_attention, and the checkpoint hooks that carry the learned SLA state
// (sla_attention.pt, ../shared/docs/sla-format.md) through save and resume.
//
// Usage in a trainer:
//   auto backend = std::make_shared<sla::AttentionBackend>(sla::BackendOptions{"sla", "{'topk': 0.2}"});
//   model->register_module("attention_backend", backend);  // train()/eval() of the model reach it
//   ... in the model: o = (*backend)(q, k, v);             // same arguments as SDPA
//   each step: loss.backward(); backend->register_with(optimizer); optimizer.step();
//   checkpoint: backend->on_save_checkpoint(dir);
//   resume:     backend->on_load_checkpoint(dir); backend->materialize_loaded(device);
//               backend->register_with(optimizer); then load the optimizer state.
//
// Parameter groups: one group per SLA module, added by register_with in ascending key order
// ("<head_dim>:<dtype>", then device) and each module at most once per optimizer. A resumed run
// rebuilds the same groups because materialize_loaded creates every module the checkpoint holds
// before register_with. Models that create several modules at different steps should call
// materialize() for each (head_dim, dtype) up front so both runs register them in one batch.
//
// Several processes (torch.distributed; distributed.h): set BackendOptions::process_group to the
// group of ranks that train one model (data parallelism), and sequence_parallel_group for Ulysses.
//   - Every SLA module is created identically on every rank: zero proj_l, then rank 0's values
//     broadcast; its settings, head dim and dtype are checked against every rank's first (the first
//     forward of a rank with other settings throws DistributedError on every rank, naming both).
//   - Gradients: the trainer calls sync_gradients() after backward, before the optimizer step (an
//     explicit call, not a hook: one all-reduce per step for all SLA parameters, at a point the
//     trainer chooses, e.g. with its own gradient all-reduce).
//   - Only rank 0 of the group (and only when is_main_process) writes sla_attention.pt; every rank
//     loads it from the same folder, checks that all ranks found the same entries, and takes rank
//     0's values (broadcast after the load).
//   Each of these is a collective: every rank of the group calls it in the same order, as every
//   rank of a data-parallel trainer runs the same model.
#pragma once

#include "distributed.h"
#include "sla_config.h"
#include "sparse_linear_attention.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace sla {

struct BackendOptions {
  std::string attention_mechanism = "sla";  // "sla" or "sdpa" (plain scaled_dot_product_attention)
  std::string sla_config;                   // JSON or Python-dict literal; empty = defaults
  bool is_main_process = true;              // only the main process writes sla_attention.pt
  // The dtype the model will run in, for the saved state. SimpleTuner runs SLA only for bf16/fp16
  // queries and looks up exactly "<D>:bf16" / "<D>:fp16", so a run on CPU or in float32 writes
  // "<D>:fp32" entries it never applies (it runs with a zero proj_l). "bf16" or "fp16" (the
  // mixed-precision dtype of the run): every module whose queries are not bf16/fp16 is also written
  // as "<D>:<state_dtype>" (proj_l is float32 either way), unless a module of that dtype exists;
  // the "<D>:fp32" entry stays, so this run resumes exactly (the copies are marked in our extension
  // key and not materialised on resume). "auto": bf16 (SimpleTuner's default mixed precision).
  // Empty (the default): entries only in the dtypes the run used.
  std::string state_dtype;
  // The ranks that train this model together (data parallelism, and the sequence-parallel ranks):
  // modules, settings and loads are kept identical over it, sync_gradients averages over it, and
  // only its rank 0 writes the file. Empty: one process (or the sequence-parallel group, if set).
  ProcessGroupPtr process_group;
  // Ulysses: q, k, v passed to operator() are this rank's shards of the sequence (shard_lengths'
  // rule); attention (SLA, or the SDPA fallback) runs on the whole sequence for H/P heads and the
  // output is this rank's shard again (ulysses_attention). Its ranks must belong to process_group.
  ProcessGroupPtr sequence_parallel_group;
};

// Why a call went to plain SDPA instead of SLA.
enum class Fallback {
  kNot4d,
  kAttentionMask,
  kDropout,
  kCausal,
  kGroupedQueryAttention,
  kLengthMismatch,
  kValueHeadDim,
  kNotFloatingPoint,
  kFloat32OnCuda,
};
const char* describe(Fallback reason);

// What on_load_checkpoint found (also logged).
struct LoadReport {
  bool found = false;                        // sla_attention.pt existed
  std::vector<std::string> differing_keys;   // settings that differ from the runtime ones
  std::vector<std::string> skipped_entries;  // state keys that could not be used, with the reason
  std::vector<std::string> loaded_keys;      // state keys kept for restoring, file order
};

class AttentionBackend : public torch::nn::Module {
 public:
  explicit AttentionBackend(BackendOptions options);

  // Drop-in for at::scaled_dot_product_attention. q, k, v: (B, H, L, D).
  at::Tensor operator()(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                        const std::optional<at::Tensor>& attn_mask = std::nullopt, double dropout_p = 0.0,
                        bool is_causal = false, std::optional<double> scale = std::nullopt,
                        bool enable_gqa = false);

  // The SLA module for (head_dim, device, dtype), created (and restored from a loaded state) on
  // first use.
  SparseLinearAttention materialize(int64_t head_dim, at::Device device, at::ScalarType dtype);
  // Creates a module for every state key of the loaded checkpoint with a known dtype.
  void materialize_loaded(at::Device device);

  // Adds one parameter group per module whose parameters this optimizer does not hold yet, in key
  // order; calling it again adds nothing.
  void register_with(torch::optim::Optimizer& optimizer);

  // Averages the gradients of every SLA parameter over process_group (after backward, before the
  // optimizer step; nothing without a group). A parameter without a gradient counts as zero.
  void sync_gradients();
  // The group sync_gradients and the checks use (process_group, else sequence_parallel_group; may be empty).
  const ProcessGroupPtr& group() const { return group_; }

  // Follows the trainer: also sets the mode of every SLA module, present and future.
  void train(bool on = true) override;

  void on_save_checkpoint(const std::string& dir) const;
  LoadReport on_load_checkpoint(const std::string& dir);

  const SlaConfig& config() const { return cfg_; }
  // SlaConfig::simpletuner_rejects of options.sla_config: also logged as a warning when the first
  // SLA module is created (a config copied to SimpleTuner would not parse there).
  const std::vector<std::string>& config_warnings() const { return config_warnings_; }
  bool uses_sla() const { return use_sla_; }
  std::vector<SparseLinearAttention> modules() const;  // key order

  // Where log lines go; empty (the default): nowhere. The library never prints: the caller
  // decides (the example DiT prints them on stderr with a "sla: " prefix; tests capture them).
  std::function<void(const std::string&)> log;

 private:
  using ModuleKey = std::tuple<int64_t, std::string, std::string>;  // head_dim, dtype token, device
  struct LoadedState {
    at::Tensor weight, bias;  // CPU float32
  };

  std::optional<Fallback> fallback_reason(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                          const std::optional<at::Tensor>& attn_mask, double dropout_p,
                                          bool is_causal, bool enable_gqa) const;
  void emit(const std::string& line) const {  // to log, when set
    if (log) log(line);
  }
  void log_once(Fallback reason);
  // On CUDA with the kernels built: why they refuse (kernels::why_not via cuda_kernels_support).
  void log_once_kernels(const std::string& why);
  void restore(const ModuleKey& key, SparseLinearAttention& module);
  LoadReport load_file(const std::string& dir);  // on_load_checkpoint on this rank alone

  // The description ranks must agree on for one module: settings, head dim, dtype, device type.
  std::string module_signature(const ModuleKey& key) const;

  BackendOptions options_;
  ProcessGroupPtr group_;
  SlaConfig cfg_;
  bool use_sla_;

  mutable std::mutex mutex_;
  std::map<ModuleKey, SparseLinearAttention> modules_;
  std::set<Fallback> logged_;
  std::set<std::string> logged_kernels_;
  std::map<std::string, LoadedState> loaded_;  // state key -> tensors
  std::vector<std::string> loaded_order_;      // file order, for the other-dtype choice
  std::set<std::string> loaded_copies_;        // keys written as state_dtype copies: not materialised
  std::string state_token_;                    // "bf16" | "fp16" | "" (from options_.state_dtype)
  std::vector<std::string> config_warnings_;
};

}  // namespace sla
