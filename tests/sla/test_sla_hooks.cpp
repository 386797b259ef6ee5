// The attention backend and its checkpoint hooks: every SDPA fallback (said once), SLA where it
// applies, parameter groups registered once in key order, train/eval following the model, and
// sla_attention.pt save -> load (identical weights, settings mismatch, another dtype's state).
#include "sla/hooks.h"
#include "sla/reference.h"
#include "sla/checkpoint/sla_state.h"

#include <catch.hpp>

#include <ATen/core/grad_mode.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using sla::AttentionBackend;
using sla::BackendOptions;

namespace {

// A backend whose log lines are kept for the test.
struct Captured {
  std::shared_ptr<AttentionBackend> backend;
  std::shared_ptr<std::vector<std::string>> lines = std::make_shared<std::vector<std::string>>();

  explicit Captured(const std::string& config = "{'topk': 0.5, 'blkq': 32, 'blkk': 32}",
                    const std::string& mechanism = "sla", bool main_process = true) {
    BackendOptions options;
    options.attention_mechanism = mechanism;
    options.sla_config = config;
    options.is_main_process = main_process;
    backend = std::make_shared<AttentionBackend>(options);
    auto sink = lines;
    backend->log = [sink](const std::string& line) { sink->push_back(line); };
  }
  size_t count(const std::string& needle) const {
    size_t n = 0;
    for (const auto& line : *lines) n += line.find(needle) != std::string::npos;
    return n;
  }
};

at::Tensor randn(std::vector<int64_t> shape, at::ScalarType dtype = at::kFloat) {
  return at::randn(shape, at::TensorOptions().dtype(at::kFloat)).to(dtype);
}

// A fresh temporary folder per test, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("sla_hooks_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

void set_weights(sla::SparseLinearAttention& m, double seed) {
  at::NoGradGuard no_grad;
  const int64_t d = m->head_dim();
  m->proj_l->weight.copy_(at::sin(at::arange(d * d, at::kFloat) * seed).view({d, d}));
  m->proj_l->bias.copy_(at::cos(at::arange(d, at::kFloat) * seed));
}

}  // namespace

TEST_CASE("every fallback reason goes to plain SDPA and is said once", "[hooks]") {
  Captured c;
  AttentionBackend& sdpa_like = *c.backend;
  const at::Tensor q = randn({1, 2, 64, 16}), k = randn({1, 2, 64, 16}), v = randn({1, 2, 64, 16});
  struct Case {
    std::string reason;
    std::function<at::Tensor()> ours;
    std::function<at::Tensor()> sdpa;
  };
  const at::Tensor mask = at::ones({64, 64}, at::kBool).tril();
  const at::Tensor k_gqa = randn({1, 1, 64, 16}), v_gqa = randn({1, 1, 64, 16});
  const at::Tensor k_long = randn({1, 2, 80, 16}), v_long = randn({1, 2, 80, 16});
  const at::Tensor v_wide = randn({1, 2, 64, 24});
  const at::Tensor q3 = randn({2, 64, 16}), k3 = randn({2, 64, 16}), v3 = randn({2, 64, 16});
  const std::vector<Case> cases = {
      {"an attention mask is given", [&] { return sdpa_like(q, k, v, mask); },
       [&] { return at::scaled_dot_product_attention(q, k, v, mask); }},
      {"dropout_p > 0", [&] { at::manual_seed(5); return sdpa_like(q, k, v, std::nullopt, 0.5); },
       [&] { at::manual_seed(5); return at::scaled_dot_product_attention(q, k, v, std::nullopt, 0.5); }},
      {"causal attention", [&] { return sdpa_like(q, k, v, std::nullopt, 0.0, true); },
       [&] { return at::scaled_dot_product_attention(q, k, v, std::nullopt, 0.0, true); }},
      {"grouped-query attention", [&] { return sdpa_like(q, k_gqa, v_gqa, std::nullopt, 0.0, false, std::nullopt, true); },
       [&] { return at::scaled_dot_product_attention(q, k_gqa, v_gqa, std::nullopt, 0.0, false, std::nullopt, true); }},
      {"query length != key length", [&] { return sdpa_like(q, k_long, v_long); },
       [&] { return at::scaled_dot_product_attention(q, k_long, v_long); }},
      {"value head_dim != query head_dim", [&] { return sdpa_like(q, k, v_wide); },
       [&] { return at::scaled_dot_product_attention(q, k, v_wide); }},
      {"inputs are not 4-D", [&] { return sdpa_like(q3, k3, v3); },
       [&] { return at::scaled_dot_product_attention(q3, k3, v3); }},
  };
  for (const Case& fallback : cases) {
    INFO(fallback.reason);
    for (int call = 0; call < 3; ++call) CHECK(at::equal(fallback.ours(), fallback.sdpa()));
    CHECK(c.count(fallback.reason) == 1);
  }
  CHECK(c.lines->size() == cases.size());
  CHECK(c.backend->modules().empty());  // no fallback creates an SLA module
}

TEST_CASE("SLA applies to plain 4-D self-attention on CPU, any float dtype", "[hooks]") {
  Captured c;
  for (auto dtype : {at::kFloat, at::kBFloat16, at::kDouble}) {
    const at::Tensor q = randn({1, 2, 70, 16}, dtype), k = randn({1, 2, 70, 16}, dtype), v = randn({1, 2, 70, 16}, dtype);
    const at::Tensor o = (*c.backend)(q, k, v);
    CHECK(o.scalar_type() == dtype);
    CHECK(at::equal(o, sla::reference::attention(q, k, v, at::zeros({16, 16}), at::zeros({16}), c.backend->config())));
    CHECK_FALSE(at::allclose(o.to(at::kFloat), at::scaled_dot_product_attention(q, k, v).to(at::kFloat)));
  }
  CHECK(c.backend->modules().size() == 3);  // one per dtype
  CHECK(c.lines->empty());                  // no fallback said anything
}

TEST_CASE("attention_mechanism sdpa never builds SLA; unknown mechanisms are rejected", "[hooks]") {
  Captured c("", "sdpa");
  const at::Tensor q = randn({1, 2, 64, 16}), k = randn({1, 2, 64, 16}), v = randn({1, 2, 64, 16});
  CHECK(at::equal((*c.backend)(q, k, v), at::scaled_dot_product_attention(q, k, v)));
  CHECK(c.backend->modules().empty());
  CHECK_THROWS_WITH(AttentionBackend(BackendOptions{"flash", "", true, "", nullptr, nullptr}),
                    sla::test::contains_text("attention_mechanism must be one of sla, sdpa"));
  CHECK_THROWS_WITH(AttentionBackend(BackendOptions{"sla", "{'blkq': 16}", true, "", nullptr, nullptr}),
                    sla::test::contains_text("blkq must be one of 32, 64, 128"));
}

TEST_CASE("one module per (head_dim, dtype); parameters reach the optimizer once, in key order", "[hooks]") {
  Captured c;
  torch::nn::Linear model(4, 4);
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.1));
  // Created out of key order: 64 first, then 32.
  (*c.backend)(randn({1, 1, 64, 64}), randn({1, 1, 64, 64}), randn({1, 1, 64, 64}));
  (*c.backend)(randn({1, 1, 64, 32}), randn({1, 1, 64, 32}), randn({1, 1, 64, 32}));
  (*c.backend)(randn({1, 1, 64, 32}), randn({1, 1, 64, 32}), randn({1, 1, 64, 32}));
  REQUIRE(c.backend->modules().size() == 2);
  c.backend->register_with(optimizer);
  c.backend->register_with(optimizer);
  REQUIRE(optimizer.param_groups().size() == 3);
  CHECK(optimizer.param_groups()[1].params()[0].size(0) == 32);
  CHECK(optimizer.param_groups()[2].params()[0].size(0) == 64);
  CHECK(optimizer.param_groups()[1].params()[0].is_same(c.backend->modules()[0]->proj_l->weight));
  // A module created later is added once more, alone.
  (*c.backend)(randn({1, 1, 64, 32}, at::kBFloat16), randn({1, 1, 64, 32}, at::kBFloat16), randn({1, 1, 64, 32}, at::kBFloat16));
  c.backend->register_with(optimizer);
  c.backend->register_with(optimizer);
  CHECK(optimizer.param_groups().size() == 4);
  size_t total = 0;
  for (const auto& group : optimizer.param_groups()) total += group.params().size();
  CHECK(total == 2 + 3 * 2);
}

TEST_CASE("train/eval follows the model the backend is registered in", "[hooks]") {
  Captured c;
  torch::nn::Linear model(4, 4);
  model->register_module("attention_backend", c.backend);
  (*c.backend)(randn({1, 1, 64, 16}), randn({1, 1, 64, 16}), randn({1, 1, 64, 16}));
  model->eval();
  CHECK_FALSE(c.backend->modules()[0]->is_training());
  // A module born while the model is in eval mode starts in eval mode.
  (*c.backend)(randn({1, 1, 64, 8}), randn({1, 1, 64, 8}), randn({1, 1, 64, 8}));
  for (const auto& m : c.backend->modules()) CHECK_FALSE(m->is_training());
  model->train();
  for (const auto& m : c.backend->modules()) CHECK(m->is_training());
}

TEST_CASE("save then load restores identical proj_l into existing and future modules", "[hooks]") {
  TempDir dir;
  Captured writer;
  auto m32 = writer.backend->materialize(32, at::kCPU, at::kBFloat16);
  auto m16 = writer.backend->materialize(16, at::kCPU, at::kHalf);
  set_weights(m32, 0.37);
  set_weights(m16, 1.3);
  writer.backend->on_save_checkpoint(dir.path.string());
  REQUIRE(fs::exists(dir.path / "sla_attention.pt"));

  const sla::checkpoint::SlaFile file = sla::checkpoint::read_sla_file((dir.path / "sla_attention.pt").string());
  CHECK(file.entries.size() == 2);
  CHECK(file.find("32:bf16"));
  CHECK(file.find("16:fp16"));
  CHECK(file.extension.at("variant") == "all");
  CHECK(file.extension.at("writer").get<std::string>().rfind("sla-toolkit ", 0) == 0);
  CHECK(file.settings.topk == 0.5);
  CHECK(file.settings.blkq == 32);

  Captured reader;
  auto existing = reader.backend->materialize(32, at::kCPU, at::kBFloat16);  // before the load
  const sla::LoadReport report = reader.backend->on_load_checkpoint(dir.path.string());
  CHECK(report.found);
  CHECK(report.differing_keys.empty());
  CHECK(at::equal(existing->proj_l->weight, m32->proj_l->weight));
  CHECK(at::equal(existing->proj_l->bias, m32->proj_l->bias));
  auto future = reader.backend->materialize(16, at::kCPU, at::kHalf);  // after the load
  CHECK(at::equal(future->proj_l->weight, m16->proj_l->weight));
  CHECK(at::equal(future->proj_l->bias, m16->proj_l->bias));
  CHECK(reader.count("notice") == 0);
}

TEST_CASE("nothing is written without a module or off the main process", "[hooks]") {
  TempDir dir;
  Captured none;
  none.backend->on_save_checkpoint(dir.path.string());
  CHECK_FALSE(fs::exists(dir.path / "sla_attention.pt"));
  Captured worker("", "sla", /*main_process=*/false);
  worker.backend->materialize(16, at::kCPU, at::kBFloat16);
  worker.backend->on_save_checkpoint(dir.path.string());
  CHECK_FALSE(fs::exists(dir.path / "sla_attention.pt"));
  // Loading a folder without the file is not an error: projections stay zero.
  Captured reader;
  CHECK_FALSE(reader.backend->on_load_checkpoint(dir.path.string()).found);
}

TEST_CASE("a dangling sla_attention.pt link is refused, not taken for a missing file", "[hooks]") {
  // A checkpoint whose file is a link to a missing blob: training must not resume from zero.
  TempDir dir;
  fs::create_symlink(dir.path / "blobs" / "missing", dir.path / "sla_attention.pt");
  Captured reader;
  CHECK_THROWS_WITH(reader.backend->on_load_checkpoint(dir.path.string()),
                    sla::test::contains_text("symbolic link to a missing file"));
  CHECK(reader.count("start from zero") == 0);
}

TEST_CASE("settings mismatch: warning names the differing keys, the trained projection is kept", "[hooks]") {
  TempDir dir;
  Captured writer("{'topk': 0.5, 'blkq': 32, 'blkk': 32}");
  auto trained = writer.backend->materialize(16, at::kCPU, at::kBFloat16);
  set_weights(trained, 0.9);
  writer.backend->on_save_checkpoint(dir.path.string());

  Captured reader("{'topk': 0.25, 'blkq': 32, 'blkk': 64, 'feature_map': 'elu'}");
  const sla::LoadReport report = reader.backend->on_load_checkpoint(dir.path.string());
  CHECK(report.differing_keys == std::vector<std::string>{"topk", "feature_map", "blkk"});
  REQUIRE(reader.count("differ from the runtime ones in topk, feature_map, blkk") == 1);
  CHECK(reader.count("the trained projection is kept") == 1);
  auto restored = reader.backend->materialize(16, at::kCPU, at::kBFloat16);
  CHECK(at::equal(restored->proj_l->weight, trained->proj_l->weight));
  CHECK(restored->config().topk == 0.25);  // the runtime settings win

  Captured complement("{'topk': 0.5, 'blkq': 32, 'blkk': 32, 'variant': 'complement'}");
  CHECK(complement.backend->on_load_checkpoint(dir.path.string()).differing_keys == std::vector<std::string>{"variant"});
}

TEST_CASE("a bf16 state is applied to an fp16 run with a notice", "[hooks]") {
  TempDir dir;
  Captured writer;
  auto bf16 = writer.backend->materialize(16, at::kCPU, at::kBFloat16);
  set_weights(bf16, 2.1);
  writer.backend->on_save_checkpoint(dir.path.string());

  Captured reader;
  reader.backend->on_load_checkpoint(dir.path.string());
  const at::Tensor q = randn({1, 2, 64, 16}, at::kHalf), k = randn({1, 2, 64, 16}, at::kHalf), v = randn({1, 2, 64, 16}, at::kHalf);
  const at::Tensor o = (*reader.backend)(q, k, v);
  CHECK(o.scalar_type() == at::kHalf);
  REQUIRE(reader.backend->modules().size() == 1);
  CHECK(at::equal(reader.backend->modules()[0]->proj_l->weight, bf16->proj_l->weight));
  CHECK(reader.count("notice: no state for 16:fp16") == 1);
  CHECK(reader.count("applying the 16:bf16 projection") == 1);
  // Another head_dim gets nothing from it.
  CHECK(reader.backend->materialize(32, at::kCPU, at::kHalf)->proj_l->weight.abs().sum().item<double>() == 0);
}

TEST_CASE("state_dtype: a float32 run also writes the <D>:bf16 entry SimpleTuner looks up, and resumes exactly", "[hooks]") {
  TempDir dir;
  BackendOptions options;
  options.sla_config = "{'topk': 0.5}";
  options.state_dtype = "auto";  // bf16
  AttentionBackend writer(options);
  auto m32 = writer.materialize(32, at::kCPU, at::kFloat);   // a CPU / float32 run
  auto h16 = writer.materialize(16, at::kCPU, at::kHalf);    // already a consumer dtype: no copy
  auto f16 = writer.materialize(16, at::kCPU, at::kFloat);   // its bf16 copy, beside the fp16 module
  set_weights(m32, 0.37);
  set_weights(h16, 1.3);
  set_weights(f16, 2.1);
  writer.on_save_checkpoint(dir.path.string());
  const sla::checkpoint::SlaFile file = sla::checkpoint::read_sla_file((dir.path / "sla_attention.pt").string());
  std::vector<std::string> keys;
  for (const auto& e : file.entries) keys.push_back(e.key);
  CHECK(keys == std::vector<std::string>{"16:fp16", "16:fp32", "32:fp32", "16:bf16", "32:bf16"});
  const sla::checkpoint::SlaEntry* copy = file.find("32:bf16");
  const sla::checkpoint::SlaEntry* own = file.find("32:fp32");
  REQUIRE(copy);
  REQUIRE(own);
  CHECK(copy->dtype_token == "bf16");
  CHECK(copy->weight.values == own->weight.values);
  CHECK(copy->bias.values == own->bias.values);
  CHECK(file.find("16:bf16")->weight.values == file.find("16:fp32")->weight.values);
  CHECK(file.extension.at("state_dtype_copies") == "16:bf16,32:bf16");

  // Resume: the copies get no module of their own, so the optimizer sees the same groups.
  AttentionBackend reader(options);
  reader.on_load_checkpoint(dir.path.string());
  reader.materialize_loaded(at::kCPU);
  CHECK(reader.modules().size() == 3);
  auto again = reader.materialize(32, at::kCPU, at::kFloat);
  CHECK(at::equal(again->proj_l->weight, m32->proj_l->weight));

  // Off (the default): only the dtypes the run used; bad values are refused.
  BackendOptions off;
  off.sla_config = "{'topk': 0.5}";
  AttentionBackend plain(off);
  plain.materialize(32, at::kCPU, at::kFloat);
  TempDir other;
  plain.on_save_checkpoint(other.path.string());
  const sla::checkpoint::SlaFile only = sla::checkpoint::read_sla_file((other.path / "sla_attention.pt").string());
  CHECK(only.entries.size() == 1);
  CHECK(only.find("32:fp32"));
  CHECK_FALSE(only.extension.contains("state_dtype_copies"));
  BackendOptions bad;
  bad.state_dtype = "fp32";
  CHECK_THROWS_AS(AttentionBackend(bad), std::invalid_argument);
  BackendOptions half;
  half.state_dtype = "fp16";
  AttentionBackend fp16_writer(half);
  fp16_writer.materialize(32, at::kCPU, at::kFloat);
  TempDir third;
  fp16_writer.on_save_checkpoint(third.path.string());
  CHECK(sla::checkpoint::read_sla_file((third.path / "sla_attention.pt").string()).find("32:fp16"));
}

TEST_CASE("an sla_config SimpleTuner would reject is said once, when SLA first runs", "[hooks]") {
  Captured json_words("{\"topk\": 0.5, \"tie_feature_map_qk\": false}");
  CHECK(json_words.backend->config_warnings().size() == 1);
  json_words.backend->materialize(32, at::kCPU, at::kFloat);
  json_words.backend->materialize(16, at::kCPU, at::kFloat);
  CHECK(json_words.count("warning: sla_config would not parse in SimpleTuner") == 1);
  Captured python_words("{\"topk\": 0.5, \"tie_feature_map_qk\": False}");
  python_words.backend->materialize(32, at::kCPU, at::kFloat);
  CHECK(python_words.count("SimpleTuner") == 0);
}
