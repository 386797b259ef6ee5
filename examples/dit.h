// A small diffusion transformer (DiT) trained with SLA by flow matching on synthetic images: the
// model of the example, the demo and `sla-ckpt regenerate`.
//
// Model: 4x4 patches of 3x32x32 images (64 tokens), a learned position embedding, a time
// embedding added to every token, `depth` pre-norm transformer blocks whose self-attention goes
// through the SLA attention backend, then a linear head back to pixels.
// Objective: x0 ~ N(0, 1), x1 = a synthetic image, t ~ U(0, 1), x_t = (1 - t) x0 + t x1; the model
// predicts the velocity x1 - x0 (mean squared error).
// Determinism: the weights come from the seed; the batch of step s from a generator seeded with
// (seed, s), so a resumed run sees exactly the batches of an uninterrupted one.
//
// A checkpoint folder checkpoint-<step>/ holds (diffusers-like layout, so tools can read the
// attention shape):
//   transformer/config.json                             model shape (attention_head_dim, ...)
//   transformer/diffusion_pytorch_model.safetensors     float32 weights
//   optimizer.pt                                        torch::save of the AdamW optimizer
//   training_state.json                                 step, seed, losses, settings
//   sla_attention.pt                                    the SLA state (when SLA ran)
//
// Several processes (TrainOptions::world_group, torch.distributed): every rank builds the same
// model (rank 0's weights broadcast), step s's batch is split over the data-parallel ranks
// (torch.tensor_split's rule), and with a sequence-parallel group of P ranks the 64 tokens are split
// over those P ranks, attention running through Ulysses (sla/distributed.h). Each rank's loss is
// its share of the global mean (sum of its squared errors x world size / all elements), so the
// gradients averaged over the world are exactly the single-process gradients of the whole batch;
// the reported loss is the mean over ranks. Rank 0 writes the one checkpoint folder; every rank
// resumes from it, on any number of ranks (the batches do not depend on the world size).
#pragma once

#include "sla/hooks.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/optim/adamw.h>

#include <memory>
#include <string>
#include <vector>

namespace sla_dit {

struct DitConfig {
  int64_t image_size = 32;
  int64_t channels = 3;
  int64_t patch_size = 4;
  int64_t num_attention_heads = 2;
  int64_t attention_head_dim = 32;
  int64_t depth = 2;
  int64_t mlp_ratio = 4;
  int64_t ffn_hidden = 0;        // FFN width; 0: mlp_ratio * hidden (widths such as Wan's 8960 need it)
  bool cross_attention = false;  // blocks attend to a context (B, Lc, hidden) after self-attention,
                                 // as text-conditioned models do; the image DiT has no context,
                                 // so only TransformerBlock used directly takes it (sla-train-bench)

  int64_t hidden_size() const { return num_attention_heads * attention_head_dim; }
  int64_t ffn_size() const { return ffn_hidden > 0 ? ffn_hidden : mlp_ratio * hidden_size(); }
  int64_t tokens() const { return (image_size / patch_size) * (image_size / patch_size); }
};

class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(const DitConfig& cfg, std::shared_ptr<sla::AttentionBackend> backend);
  // x: (B, L, hidden); context: (B, Lc, hidden), given exactly when cfg.cross_attention.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context = {});

 private:
  DitConfig cfg_;
  std::shared_ptr<sla::AttentionBackend> backend_;
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Linear qkv{nullptr}, out{nullptr}, fc1{nullptr}, fc2{nullptr};
  // Cross-attention (cfg.cross_attention only): plain SDPA, as SLA trainers leave it.
  torch::nn::LayerNorm norm_cross{nullptr};
  torch::nn::Linear cross_q{nullptr}, cross_kv{nullptr}, cross_out{nullptr};
};
TORCH_MODULE(TransformerBlock);

class DitImpl : public torch::nn::Module {
 public:
  DitImpl(const DitConfig& cfg, std::shared_ptr<sla::AttentionBackend> backend);
  // x: (B, C, H, W) noisy images, t: (B) times in [0, 1] -> predicted velocity (B, C, H, W).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& t);
  // The same prediction as patches, for the tokens [start, start + count) only (the sequence
  // shard of a rank; its attention backend exchanges the rest): (B, count, C * patch^2).
  at::Tensor forward_patches(const at::Tensor& x, const at::Tensor& t, int64_t start, int64_t count);
  const DitConfig& config() const { return cfg_; }

 private:
  DitConfig cfg_;
  torch::nn::Linear patch_embed{nullptr}, time_fc1{nullptr}, time_fc2{nullptr}, head{nullptr};
  at::Tensor position;  // (1, L, hidden)
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm final_norm{nullptr};
};
TORCH_MODULE(Dit);

struct TrainOptions {
  DitConfig model;
  std::string attention_mechanism = "sla";  // sla | sdpa
  std::string sla_config;                   // JSON or Python-dict literal
  // sla::BackendOptions::state_dtype: the saved file also holds "<D>:bf16" entries (the dtype a
  // consumer such as SimpleTuner runs SLA in) when this run's queries are float32 (CPU). "" = off.
  std::string state_dtype = "auto";
  uint64_t seed = 0;
  // torch.distributed: the ranks training this model (empty: one process), and the Ulysses group of
  // this rank (ranks [k P, (k + 1) P) of the world; empty: no sequence parallelism).
  sla::ProcessGroupPtr world_group;
  sla::ProcessGroupPtr sequence_group;
  std::string device = "cpu";
  int64_t batch_size = 8;
  double learning_rate = 1e-3;
};

// One synthetic batch (deterministic in seed and step): clean images x1 (B, C, H, W) in [-1, 1].
at::Tensor synthetic_images(const DitConfig& cfg, int64_t batch_size, uint64_t seed, int64_t step);

class Trainer {
 public:
  explicit Trainer(TrainOptions options);
  // A trainer in the state saved in a checkpoint folder: options (model shape, seed, SLA
  // settings) from its training_state.json unless `overrides` gives them, weights, optimizer and
  // SLA state from its files.
  static std::unique_ptr<Trainer> from_checkpoint(const std::string& dir, const TrainOptions* overrides = nullptr);
  // The options a checkpoint folder's training_state.json records (model shape, seed, SLA settings, ...).
  static TrainOptions options_from_checkpoint(const std::string& dir);

  // Loads only the model weights of a checkpoint folder (no optimizer, no SLA state).
  void load_weights(const std::string& dir);
  // The flow-matching loss of the model on the batch of `step` (with autograd graph); with a
  // world group, this rank's share of it (the mean over ranks is the loss of the whole batch).
  at::Tensor loss_on_batch(int64_t step);

  // Runs step() + 1: forward, backward, optimizer step. Returns the loss.
  double train_step();
  // Rank 0 writes the folder; every rank returns once it is complete.
  void save_checkpoint(const std::string& dir) const;
  // Rank and size of the world (0 and 1 for one process).
  int rank() const;
  int world_size() const;
  // A digest of this rank's SLA parameters' bytes (equal on two ranks iff bit-identical, up to hash collisions).
  std::string sla_digest() const;

  // Only the SLA projections learn from now on (what `sla-ckpt regenerate` needs).
  void freeze_all_but_sla();

  int64_t step() const { return step_; }
  const std::vector<double>& losses() const { return losses_; }
  const TrainOptions& options() const { return options_; }
  Dit& model() { return model_; }
  sla::AttentionBackend& backend() { return *backend_; }

 private:
  void load_state(const std::string& dir);
  // The data-parallel shard of this rank: (index, count) over world / P ranks.
  std::pair<int64_t, int64_t> data_shard() const;

  TrainOptions options_;
  torch::Device device_;
  std::shared_ptr<sla::AttentionBackend> backend_;
  Dit model_{nullptr};
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  int64_t step_ = 0;
  std::vector<double> losses_;
};

}  // namespace sla_dit
