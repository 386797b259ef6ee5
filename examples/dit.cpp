#include "dit.h"

#include "sla/checkpoint/safetensors.h"
#include "sla/distributed.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/loss.h>
#include <torch/serialize.h>
#include <torch/utils.h>

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <functional>
#include <numeric>
#include <sstream>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>

namespace sla_dit {
namespace fs = std::filesystem;
namespace st = sla::checkpoint::safetensors;

namespace {

constexpr const char* kWeightsPath = "transformer/diffusion_pytorch_model.safetensors";
constexpr const char* kConfigPath = "transformer/config.json";
constexpr const char* kOptimizerName = "optimizer.pt";
constexpr const char* kStateName = "training_state.json";

// Writes text next to its target, fsyncs, then renames over it.
void write_text_atomically(const fs::path& path, const std::string& text) {
  const fs::path temp = path.string() + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) throw std::runtime_error("cannot write " + temp.string());
  }
  const int fd = ::open(temp.c_str(), O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    if (fd >= 0) ::close(fd);
    fs::remove(temp);
    throw std::runtime_error("cannot fsync " + temp.string());
  }
  ::close(fd);
  fs::rename(temp, path);
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path.string() + ": " + e.what());
  }
}

nlohmann::json model_json(const DitConfig& c) {
  nlohmann::json j = {{"_class_name", "SlaDiT"},
                      {"sample_size", c.image_size},
                      {"in_channels", c.channels},
                      {"patch_size", c.patch_size},
                      {"num_attention_heads", c.num_attention_heads},
                      {"attention_head_dim", c.attention_head_dim},
                      {"num_layers", c.depth},
                      {"mlp_ratio", c.mlp_ratio}};
  if (c.ffn_hidden > 0) j["ffn_hidden"] = c.ffn_hidden;  // absent: mlp_ratio * hidden
  return j;
}

DitConfig model_from_json(const nlohmann::json& j) {
  DitConfig c;
  c.image_size = j.at("sample_size").get<int64_t>();
  c.channels = j.at("in_channels").get<int64_t>();
  c.patch_size = j.at("patch_size").get<int64_t>();
  c.num_attention_heads = j.at("num_attention_heads").get<int64_t>();
  c.attention_head_dim = j.at("attention_head_dim").get<int64_t>();
  c.depth = j.at("num_layers").get<int64_t>();
  c.mlp_ratio = j.at("mlp_ratio").get<int64_t>();
  c.ffn_hidden = j.value("ffn_hidden", int64_t(0));
  return c;
}

// Sinusoidal embedding of t in [0, 1]: (B) -> (B, dim).
at::Tensor time_embedding(const at::Tensor& t, int64_t dim) {
  const int64_t half = dim / 2;
  const at::Tensor freqs = at::exp(at::arange(half, t.options()) * (-std::log(10000.0) / half));
  const at::Tensor args = (t * 1000.0).unsqueeze(1) * freqs.unsqueeze(0);
  return at::cat({at::cos(args), at::sin(args)}, 1);
}

// The batch of one step: clean images, noise and times, all from a generator seeded by (seed, step).
struct Batch {
  at::Tensor x1, x0, t;
};

Batch make_batch(const DitConfig& cfg, int64_t batch_size, uint64_t seed, int64_t step, const torch::Device& device) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed * 1000003ULL + static_cast<uint64_t>(step) * 7919ULL + 1);
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  Batch b;
  b.x1 = synthetic_images(cfg, batch_size, seed, step);
  b.x0 = at::randn(b.x1.sizes(), gen, opts);
  b.t = at::rand({batch_size}, gen, opts);
  b.x1 = b.x1.to(device);
  b.x0 = b.x0.to(device);
  b.t = b.t.to(device);
  return b;
}

// (B, C, G*P, G*P) images -> (B, G*G, C*P*P) patches, and back.
at::Tensor patchify(const at::Tensor& x, const DitConfig& cfg) {
  const int64_t B = x.size(0), C = cfg.channels, P = cfg.patch_size, G = cfg.image_size / P;
  return x.view({B, C, G, P, G, P}).permute({0, 2, 4, 1, 3, 5}).reshape({B, G * G, C * P * P});
}

at::Tensor unpatchify(const at::Tensor& patches, const DitConfig& cfg) {
  const int64_t B = patches.size(0), C = cfg.channels, P = cfg.patch_size, G = cfg.image_size / P;
  return patches.view({B, G, G, C, P, P}).permute({0, 3, 1, 4, 2, 5}).reshape({B, C, G * P, G * P});
}

}  // namespace

at::Tensor synthetic_images(const DitConfig& cfg, int64_t batch_size, uint64_t seed, int64_t step) {
  // Three coloured Gaussian blobs per image: structure a small model can learn in a few steps.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed * 2654435761ULL + static_cast<uint64_t>(step));
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  const int64_t n = cfg.image_size;
  const at::Tensor coords = (at::arange(n, opts) + 0.5) / static_cast<double>(n);  // (n)
  const at::Tensor ys = coords.view({1, 1, n, 1});
  const at::Tensor xs = coords.view({1, 1, 1, n});
  at::Tensor images = at::zeros({batch_size, cfg.channels, n, n}, opts);
  for (int blob = 0; blob < 3; ++blob) {
    const at::Tensor cy = at::rand({batch_size, 1, 1, 1}, gen, opts);
    const at::Tensor cx = at::rand({batch_size, 1, 1, 1}, gen, opts);
    const at::Tensor width = at::rand({batch_size, 1, 1, 1}, gen, opts) * 0.15 + 0.05;
    const at::Tensor colour = at::rand({batch_size, cfg.channels, 1, 1}, gen, opts) * 2 - 1;
    images = images + colour * at::exp(-((ys - cy).pow(2) + (xs - cx).pow(2)) / (2 * width * width));
  }
  return images.clamp(-1, 1);
}

TransformerBlockImpl::TransformerBlockImpl(const DitConfig& cfg, std::shared_ptr<sla::AttentionBackend> backend)
    : cfg_(cfg), backend_(std::move(backend)) {
  const int64_t hidden = cfg.hidden_size();
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden})));
  qkv = register_module("qkv", torch::nn::Linear(hidden, 3 * hidden));
  out = register_module("out", torch::nn::Linear(hidden, hidden));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden})));
  fc1 = register_module("fc1", torch::nn::Linear(hidden, cfg.ffn_size()));
  fc2 = register_module("fc2", torch::nn::Linear(cfg.ffn_size(), hidden));
  if (cfg.cross_attention) {
    norm_cross = register_module("norm_cross", torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden})));
    cross_q = register_module("cross_q", torch::nn::Linear(hidden, hidden));
    cross_kv = register_module("cross_kv", torch::nn::Linear(hidden, 2 * hidden));
    cross_out = register_module("cross_out", torch::nn::Linear(hidden, hidden));
  }
}

at::Tensor TransformerBlockImpl::forward(const at::Tensor& x, const at::Tensor& context) {
  if (context.defined() != cfg_.cross_attention) {
    throw std::invalid_argument(cfg_.cross_attention ? "TransformerBlock: expected a context (cross_attention is on)"
                                                     : "TransformerBlock: got a context, but cross_attention is off");
  }
  const int64_t B = x.size(0), L = x.size(1), H = cfg_.num_attention_heads, D = cfg_.attention_head_dim;
  // (B, L, 3, H, D) -> three (B, H, L, D) strided views: the usual DiT layout, no copy.
  const at::Tensor packed = qkv(norm1(x)).view({B, L, 3, H, D});
  // Mixed precision as a trainer runs it: attention in bf16 on CUDA (float32 there would fall back
  // to SDPA), in float32 on CPU.
  const auto attention_dtype = x.is_cuda() ? at::kBFloat16 : x.scalar_type();
  auto head_view = [&](int64_t i) { return packed.select(2, i).transpose(1, 2).to(attention_dtype); };
  const at::Tensor attended = (*backend_)(head_view(0), head_view(1), head_view(2));  // (B, H, L, D)
  at::Tensor h = x + out(attended.transpose(1, 2).reshape({B, L, H * D}).to(x.scalar_type()));
  if (cfg_.cross_attention) {  // queries from the tokens, keys and values from the context
    const int64_t Lc = context.size(1);
    const at::Tensor cq = cross_q(norm_cross(h)).view({B, L, H, D}).transpose(1, 2).to(attention_dtype);
    const at::Tensor ckv = cross_kv(context).view({B, Lc, 2, H, D});
    const at::Tensor ck = ckv.select(2, 0).transpose(1, 2).to(attention_dtype);
    const at::Tensor cv = ckv.select(2, 1).transpose(1, 2).to(attention_dtype);
    const at::Tensor cross = at::scaled_dot_product_attention(cq, ck, cv);  // (B, H, L, D)
    h = h + cross_out(cross.transpose(1, 2).reshape({B, L, H * D}).to(x.scalar_type()));
  }
  return h + fc2(torch::nn::functional::gelu(fc1(norm2(h))));
}

DitImpl::DitImpl(const DitConfig& cfg, std::shared_ptr<sla::AttentionBackend> backend) : cfg_(cfg) {
  if (cfg.image_size % cfg.patch_size != 0) throw std::invalid_argument("image_size must be a multiple of patch_size");
  if (cfg.cross_attention) throw std::invalid_argument("the image DiT has no context for cross_attention");
  const int64_t hidden = cfg.hidden_size();
  const int64_t patch_values = cfg.channels * cfg.patch_size * cfg.patch_size;
  patch_embed = register_module("patch_embed", torch::nn::Linear(patch_values, hidden));
  position = register_parameter("position", at::randn({1, cfg.tokens(), hidden}) * 0.02);
  time_fc1 = register_module("time_fc1", torch::nn::Linear(hidden, hidden));
  time_fc2 = register_module("time_fc2", torch::nn::Linear(hidden, hidden));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.depth; ++i) blocks->push_back(TransformerBlock(cfg, backend));
  final_norm = register_module("final_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden})));
  head = register_module("head", torch::nn::Linear(hidden, patch_values));
  // Registered so the model's train()/eval() reaches the SLA modules; it holds no parameters of
  // the model (its own go to the optimizer through register_with).
  register_module("attention_backend", backend);
}

at::Tensor DitImpl::forward(const at::Tensor& x, const at::Tensor& t) {
  return unpatchify(forward_patches(x, t, 0, cfg_.tokens()), cfg_);
}

at::Tensor DitImpl::forward_patches(const at::Tensor& x, const at::Tensor& t, int64_t start, int64_t count) {
  const at::Tensor patches = patchify(x, cfg_).narrow(1, start, count);  // (B, count, C*P*P)
  const at::Tensor temb = time_fc2(torch::nn::functional::silu(time_fc1(time_embedding(t, cfg_.hidden_size()))));
  at::Tensor h = patch_embed(patches) + position.narrow(1, start, count) + temb.unsqueeze(1);
  for (const auto& block : *blocks) h = block->as<TransformerBlock>()->forward(h);
  return head(final_norm(h));  // (B, count, C*P*P)
}

Trainer::Trainer(TrainOptions options) : options_(std::move(options)), device_(options_.device) {
  sla::BackendOptions backend_options;
  backend_options.attention_mechanism = options_.attention_mechanism;
  backend_options.sla_config = options_.sla_config;
  backend_options.state_dtype = options_.state_dtype;
  backend_options.process_group = options_.world_group;
  backend_options.sequence_parallel_group = options_.sequence_group;
  if (options_.sequence_group) {
    const int64_t P = options_.sequence_group->getSize();
    if (!options_.world_group || world_size() % P != 0 || options_.sequence_group->getRank() != rank() % P)
      throw std::invalid_argument("sequence parallelism over " + std::to_string(P) +
                                  " ranks needs a world of a multiple of " + std::to_string(P) +
                                  " ranks whose groups are the consecutive ranks [k P, (k + 1) P)");
    if (options_.model.num_attention_heads % P != 0)
      throw std::invalid_argument("sequence parallelism over " + std::to_string(P) + " ranks: the model's " +
                                  std::to_string(options_.model.num_attention_heads) +
                                  " attention heads are not divisible by " + std::to_string(P));
  }
  if (options_.batch_size < data_shard().second)
    throw std::invalid_argument("batch size " + std::to_string(options_.batch_size) + " is smaller than the " +
                                std::to_string(data_shard().second) + " data-parallel ranks");
  backend_ = std::make_shared<sla::AttentionBackend>(backend_options);
  // The library logs nowhere by default; the example shows its lines on stderr.
  backend_->log = [](const std::string& line) { std::cerr << "sla: " << line << std::endl; };
  torch::manual_seed(options_.seed);
  model_ = Dit(options_.model, backend_);
  model_->to(device_);
  // Seeded alike on every rank; rank 0's weights make sure of it.
  if (options_.world_group) sla::broadcast_from_rank0(options_.world_group, model_->parameters());
  optimizer_ = std::make_unique<torch::optim::AdamW>(
      model_->parameters(), torch::optim::AdamWOptions(options_.learning_rate).weight_decay(0.0));
}

int Trainer::rank() const { return options_.world_group ? options_.world_group->getRank() : 0; }

int Trainer::world_size() const { return options_.world_group ? options_.world_group->getSize() : 1; }

std::pair<int64_t, int64_t> Trainer::data_shard() const {
  const int64_t P = options_.sequence_group ? options_.sequence_group->getSize() : 1;
  return {rank() / P, world_size() / P};
}

at::Tensor Trainer::loss_on_batch(int64_t step) {
  const Batch batch = make_batch(options_.model, options_.batch_size, options_.seed, step, device_);
  if (!options_.world_group) {
    const at::Tensor t = batch.t.view({-1, 1, 1, 1});
    const at::Tensor noisy = (1 - t) * batch.x0 + t * batch.x1;
    const at::Tensor prediction = model_->forward(noisy, batch.t);
    return torch::nn::functional::mse_loss(prediction, batch.x1 - batch.x0);
  }
  // This rank's images (data parallelism) and tokens (sequence parallelism).
  const auto [index, count] = data_shard();
  auto mine = [&, index = index, count = count](const at::Tensor& x) { return x.tensor_split(count, 0)[index]; };
  const at::Tensor x1 = mine(batch.x1), x0 = mine(batch.x0), times = mine(batch.t);
  const at::Tensor t = times.view({-1, 1, 1, 1});
  const at::Tensor noisy = (1 - t) * x0 + t * x1;
  int64_t start = 0, tokens = options_.model.tokens();
  if (options_.sequence_group) {
    const std::vector<int64_t> lens = sla::shard_lengths(tokens, options_.sequence_group->getSize());
    const int64_t r = options_.sequence_group->getRank();
    start = std::accumulate(lens.begin(), lens.begin() + r, int64_t{0});
    tokens = lens[r];
  }
  const at::Tensor prediction = model_->forward_patches(noisy, times, start, tokens);
  const at::Tensor target = patchify(x1 - x0, options_.model).narrow(1, start, tokens);
  // Sum of this rank's squared errors over all the batch's elements, times the world size: the mean
  // over ranks is the whole batch's mean squared error, and so are the averaged gradients.
  const double elements = static_cast<double>(batch.x1.numel());
  return (prediction - target).pow(2).sum() * (world_size() / elements);
}

double Trainer::train_step() {
  model_->train();
  const at::Tensor loss = loss_on_batch(step_ + 1);
  optimizer_->zero_grad();
  loss.backward();
  backend_->register_with(*optimizer_);  // SLA modules appear during the first forward
  at::Tensor reported = loss.detach().to(at::kDouble);
  if (options_.world_group) {
    // The DDP rule for the model's parameters, the hooks' call for the SLA parameters.
    std::vector<at::Tensor> trained;
    for (const at::Tensor& p : model_->parameters())
      if (p.requires_grad()) trained.push_back(p);
    sla::average_gradients(options_.world_group, trained);
    backend_->sync_gradients();
    sla::all_reduce_mean(options_.world_group, {reported});
  }
  optimizer_->step();
  ++step_;
  losses_.push_back(reported.item<double>());
  return losses_.back();
}

void Trainer::freeze_all_but_sla() {
  for (auto& p : model_->parameters()) p.requires_grad_(false);
  optimizer_->zero_grad(/*set_to_none=*/true);
}

std::string Trainer::sla_digest() const {
  std::string bytes;
  for (const sla::SparseLinearAttention& module : backend_->modules()) {
    for (const at::Tensor& p : module->parameters()) {
      const at::Tensor cpu = p.detach().to(at::kCPU).contiguous();
      bytes.append(static_cast<const char*>(cpu.data_ptr()), cpu.nbytes());
    }
  }
  std::ostringstream out;
  out << std::hex << std::hash<std::string>{}(bytes);
  return out.str();
}

void Trainer::save_checkpoint(const std::string& dir) const {
  if (rank() != 0) {  // rank 0 writes; the others wait until the folder is complete
    options_.world_group->barrier()->wait();
    return;
  }
  const fs::path root(dir);
  fs::create_directories(root / "transformer");

  st::File weights;
  weights.metadata["format"] = "pt";
  for (const auto& item : model_->named_parameters()) {
    const at::Tensor cpu = item.value().detach().to(at::kCPU, at::kFloat).contiguous();
    st::Tensor tensor;
    tensor.name = item.key();
    tensor.dtype = st::Dtype::kF32;
    tensor.shape.assign(cpu.sizes().begin(), cpu.sizes().end());
    tensor.bytes.resize(static_cast<size_t>(cpu.numel()) * sizeof(float));
    std::memcpy(tensor.bytes.data(), cpu.data_ptr<float>(), tensor.bytes.size());
    weights.tensors.push_back(std::move(tensor));
  }
  st::write_file((root / kWeightsPath).string(), weights);
  write_text_atomically(root / kConfigPath, model_json(options_.model).dump(2) + "\n");

  const fs::path optimizer_temp = root / (std::string(kOptimizerName) + ".tmp");
  torch::save(*optimizer_, optimizer_temp.string());
  fs::rename(optimizer_temp, root / kOptimizerName);

  backend_->on_save_checkpoint(dir);

  const nlohmann::json state = {{"step", step_},
                                {"seed", options_.seed},
                                {"losses", losses_},
                                {"attention_mechanism", options_.attention_mechanism},
                                {"sla_config", backend_->config().to_json()},
                                {"state_dtype", options_.state_dtype},
                                {"batch_size", options_.batch_size},
                                {"learning_rate", options_.learning_rate},
                                {"model", model_json(options_.model)}};
  // Written last: a folder with training_state.json is complete.
  write_text_atomically(root / kStateName, state.dump(2) + "\n");
  if (options_.world_group) options_.world_group->barrier()->wait();
}

std::unique_ptr<Trainer> Trainer::from_checkpoint(const std::string& dir, const TrainOptions* overrides) {
  auto trainer = std::make_unique<Trainer>(overrides ? *overrides : options_from_checkpoint(dir));
  trainer->load_state(dir);
  return trainer;
}

TrainOptions Trainer::options_from_checkpoint(const std::string& dir) {
  const nlohmann::json state = read_json(fs::path(dir) / kStateName);
  TrainOptions options;
  options.model = model_from_json(state.at("model"));
  options.seed = state.at("seed").get<uint64_t>();
  options.attention_mechanism = state.at("attention_mechanism").get<std::string>();
  options.sla_config = state.at("sla_config").get<std::string>();
  options.state_dtype = state.value("state_dtype", std::string("auto"));  // absent in older checkpoints
  options.batch_size = state.at("batch_size").get<int64_t>();
  options.learning_rate = state.at("learning_rate").get<double>();
  return options;
}

void Trainer::load_state(const std::string& dir) {
  const fs::path root(dir);
  const nlohmann::json state = read_json(root / kStateName);
  // Every rank must resume the same checkpoint (each reads the folder itself).
  if (options_.world_group) {
    sla::check_same_on_all_ranks(options_.world_group, "the checkpoints resumed from",
                                 fs::weakly_canonical(root).string() + " at step " +
                                     std::to_string(state.at("step").get<int64_t>()));
  }
  load_weights(dir);

  // SLA modules first, then the optimizer: its saved groups include theirs (register_with order).
  backend_->on_load_checkpoint(dir);
  backend_->materialize_loaded(device_);
  backend_->register_with(*optimizer_);
  torch::load(*optimizer_, (root / kOptimizerName).string());

  step_ = state.at("step").get<int64_t>();
  losses_ = state.at("losses").get<std::vector<double>>();
}

void Trainer::load_weights(const std::string& dir) {
  const fs::path root(dir);
  const DitConfig saved = model_from_json(read_json(root / kStateName).at("model"));
  if (model_json(saved) != model_json(options_.model))
    throw std::runtime_error(dir + ": the checkpoint's model shape " + model_json(saved).dump() +
                             " differs from this run's " + model_json(options_.model).dump());

  const st::File weights = st::read_file((root / kWeightsPath).string());
  at::NoGradGuard no_grad;
  for (auto& item : model_->named_parameters()) {
    const st::Tensor* tensor = weights.find(item.key());
    const std::vector<int64_t> expected(item.value().sizes().begin(), item.value().sizes().end());
    if (!tensor || tensor->dtype != st::Dtype::kF32 || tensor->shape != expected)
      throw std::runtime_error(dir + ": " + kWeightsPath + " lacks float32 " + item.key() + " of the model's shape");
    at::Tensor cpu = at::empty(expected, at::TensorOptions().dtype(at::kFloat));
    std::memcpy(cpu.data_ptr<float>(), tensor->bytes.data(), tensor->bytes.size());
    item.value().copy_(cpu);
  }
}

}  // namespace sla_dit
