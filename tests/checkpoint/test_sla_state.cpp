#include "sla/checkpoint/crc32.h"
#include "sla/checkpoint/pt_reader.h"
#include "sla/checkpoint/sla_state.h"
#include "sla/checkpoint/tensor_stats.h"

#include "pt_builder.h"
#include "temp_dir.h"

#include <catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <unistd.h>

using namespace sla::checkpoint;
using sla::checkpoint::test::code_of;
using sla::checkpoint::test::error_of;
using sla::test::TempDir;

namespace {

SlaEntry entry(const std::string& key, int64_t d, float seed) {
  SlaEntry e;
  e.key = key;
  e.head_dim = d;
  e.dtype_token = key.substr(key.find(':') + 1);
  e.weight.shape = {d, d};
  e.bias.shape = {d};
  for (int64_t i = 0; i < d * d; ++i) e.weight.values.push_back(seed + 0.25f * float(i));
  for (int64_t i = 0; i < d; ++i) e.bias.values.push_back(-seed - float(i));
  return e;
}

SlaFile sample() {
  SlaFile f;
  f.settings.topk = 0.15;
  f.settings.blkq = 128;
  f.settings.tie_feature_map_qk = false;
  f.entries = {entry("4:bf16", 4, 1.0f), entry("2:fp16", 2, 2.0f)};
  return f;
}

std::vector<std::string> codes(const std::vector<Problem>& problems) {
  std::vector<std::string> out;
  for (const auto& p : problems) out.push_back(p.code + " " + p.where);
  return out;
}
std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

TEST_CASE("write_sla_file -> read_sla_file round trip") {
  TempDir dir;
  std::string path = dir.path + "/sla_attention.pt";
  SlaFile f = sample();
  f.extension = {{"variant", "complement"}, {"writer", "sla-toolkit test"}, {"regenerated", true}, {"steps", 12}};
  write_sla_file(path, f);
  SlaFile back = read_sla_file(path);
  CHECK(back.settings.topk == 0.15);
  CHECK(back.settings.feature_map == "softmax");
  CHECK(back.settings.blkq == 128);
  CHECK(back.settings.blkk == 64);
  CHECK_FALSE(back.settings.tie_feature_map_qk);
  CHECK(back.version == 1);
  REQUIRE(back.entries.size() == 2);
  CHECK(back.entries[0].key == "4:bf16");
  CHECK(back.entries[0].head_dim == 4);
  CHECK(back.entries[0].dtype_token == "bf16");
  CHECK(back.entries[0].weight.values == f.entries[0].weight.values);
  CHECK(back.entries[1].bias.values == f.entries[1].bias.values);
  CHECK(back.has_extension);
  CHECK(back.extension == f.extension);
  CHECK(back.variant() == "complement");
  CHECK(back.find("2:fp16") == &back.entries[1]);
  CHECK(back.find("2:bf16") == nullptr);

  // The archive prefix is the file's stem, as torch.save writes it.
  CHECK(pt::read_pt_file(path).prefix == "sla_attention");
}

TEST_CASE("a file without the extension reads as variant all, and writes no extension key") {
  TempDir dir;
  std::string path = dir.path + "/x.pt";
  write_sla_file(path, sample());
  SlaFile back = read_sla_file(path);
  CHECK_FALSE(back.has_extension);
  CHECK(back.variant() == "all");
  pt::PtFile raw = pt::read_pt_file(path);
  CHECK(raw.root->get(kExtensionKey) == nullptr);
  CHECK(raw.root->entries.size() == 3);
}

TEST_CASE("writing over the file that was read works (temp + rename)") {
  TempDir dir;
  std::string path = dir.path + "/sla_attention.pt";
  write_sla_file(path, sample());
  SlaFile f = read_sla_file(path);
  f.entries[0].bias.values[0] = 42.0f;
  write_sla_file(path, f);
  CHECK(read_sla_file(path).entries[0].bias.values[0] == 42.0f);
}

TEST_CASE("check_sla_file reports every problem with its location") {
  SlaFile f = sample();
  CHECK(check_sla_file(f).empty());
  f.settings.topk = 0;
  f.settings.feature_map = "gelu";
  f.settings.blkq = 48;
  f.settings.blkk = 256;
  f.version = 2;
  f.entries[0].weight.values[3] = NAN;
  f.entries[1].bias.shape = {3};
  f.entries.push_back(entry("abc", 1, 0));
  f.entries.push_back(entry("4:bf16", 4, 0));
  std::vector<std::string> expected = {"E_SCHEMA settings/topk", "E_SCHEMA settings/feature_map", "E_SCHEMA settings/blkq",
                                       "E_SCHEMA settings/blkk", "W_COMPAT version", "E_VALUES state/4:bf16/proj_l.weight",
                                       "E_SCHEMA state/2:fp16/proj_l.bias", "E_SCHEMA state/abc", "E_SCHEMA state/4:bf16"};
  CHECK(codes(check_sla_file(f)) == expected);
  f = sample();
  f.settings.topk = 1.5;
  f.extension = {{"variant", "some"}};
  CHECK(codes(check_sla_file(f)) == std::vector<std::string>{"E_SCHEMA settings/topk", "E_SCHEMA sla_toolkit/variant"});
  f = sample();
  f.entries[0].key = "0:bf16";
  f.entries[1].key = "2:";
  CHECK(codes(check_sla_file(f)) == std::vector<std::string>{"E_SCHEMA state/0:bf16", "E_SCHEMA state/2:"});
}

TEST_CASE("write_sla_file refuses an invalid file and leaves the target untouched") {
  TempDir dir;
  std::string path = dir.path + "/sla_attention.pt";
  std::ofstream(path) << "keep";
  SlaFile f = sample();
  f.entries[0].bias.values.push_back(1.0f);  // 5 values for shape [4]
  CHECK(code_of([&] { write_sla_file(path, f); }) == "E_SCHEMA");
  f = sample();
  f.entries[1].weight.values[0] = INFINITY;
  CHECK(error_of([&] { write_sla_file(path, f); }) == "E_VALUES: 1 of 4 values are NaN or Inf in state/2:fp16/proj_l.weight");
  std::ifstream in(path);
  std::string content;
  in >> content;
  CHECK(content == "keep");
}

TEST_CASE("load and inspect report schema problems of a readable file") {
  TempDir dir;
  std::string path = dir.path + "/sla_attention.pt";
  SlaFile f = sample();
  f.entries[0].weight.values[5] = NAN;
  f.entries[0].weight.values[6] = INFINITY;
  // write through the generic writer: write_sla_file would refuse non-finite values
  auto storage = [](const std::vector<float>& v) {
    auto s = std::make_shared<pt::Storage>();
    s->numel = v.size();
    s->bytes = reinterpret_cast<const uint8_t*>(v.data());
    return s;
  };
  auto t = std::make_shared<pt::Tensor>();
  t->storage = storage(f.entries[0].weight.values);
  t->shape = {4, 4};
  t->strides = {4, 1};
  auto root = pt::Value::dict();
  auto settings = pt::Value::dict();
  settings->set("topk", pt::Value::from_double(0.2));
  root->set("settings", settings);
  auto state = pt::Value::dict();
  auto tensors = pt::Value::dict();
  tensors->set("proj_l.weight", pt::Value::from_tensor(t));
  state->set("4:bf16", tensors);
  root->set("state", state);
  root->set("version", pt::Value::from_int(1));
  std::vector<uint8_t> bytes = pt::encode_pt(*root, "sla_attention");
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));

  SlaLoadResult loaded = load_sla_buffer(bytes.data(), bytes.size(), "mem");
  std::vector<std::string> expected = {"E_SCHEMA settings/feature_map", "E_SCHEMA settings/blkq", "E_SCHEMA settings/blkk",
                                       "E_SCHEMA state/4:bf16/proj_l.bias", "E_VALUES state/4:bf16/proj_l.weight"};
  std::vector<std::string> with_warning = expected;
  with_warning.push_back("W_COMPAT settings/tie_feature_map_qk");  // a default applies (SimpleTuner's test payload)
  CHECK(sorted(codes(loaded.problems)) == sorted(with_warning));
  CHECK(code_of([&] { read_sla_file(path); }) == "E_SCHEMA");

  SlaInspection seen = inspect_sla_file(path);
  CHECK(sorted(codes(seen.problems)) == sorted(expected));
  CHECK(codes(seen.compat) == std::vector<std::string>{"W_COMPAT settings/tie_feature_map_qk"});
  REQUIRE(seen.entries.size() == 1);
  REQUIRE(seen.entries[0].tensors.size() == 1);
  const TensorSummary& w = seen.entries[0].tensors[0];
  CHECK(w.dtype == "float32");
  CHECK_FALSE(w.finite);
  CHECK(w.nonfinite == 2);
  double sum = 0, lo = INFINITY, hi = -INFINITY;
  for (float v : f.entries[0].weight.values)
    if (std::isfinite(v)) sum += v, lo = std::min(lo, double(v)), hi = std::max(hi, double(v));
  CHECK(w.sum == Approx(sum));
  CHECK(w.min == lo);
  CHECK(w.max == hi);
  CHECK(w.abs_max == std::max(std::fabs(lo), std::fabs(hi)));
}

TEST_CASE("a payload that is not an SLA dict is readable with schema problems") {
  std::vector<uint8_t> bytes = pt::encode_pt(*pt::Value::list({pt::Value::from_int(1)}), "archive");
  SlaLoadResult r = load_sla_buffer(bytes.data(), bytes.size(), "mem");
  CHECK(codes(r.problems) == std::vector<std::string>{"E_SCHEMA /"});
}

TEST_CASE("dtype tokens are SimpleTuner's") {
  CHECK(dtype_token_for("torch.bfloat16") == "bf16");
  CHECK(dtype_token_for("float16") == "fp16");
  CHECK(dtype_token_for("torch.float32") == "fp32");
  CHECK(dtype_token_for("torch.float64") == "float64");
  CHECK(dtype_token_for("torch.float8_e4m3fn") == "float8_e4m3fn");
}

TEST_CASE("inspect checks large records' CRCs in the statistics pass") {
  TempDir dir;
  std::string path = dir.path + "/sla_attention.pt";
  SlaFile f;
  f.entries = {entry("600:bf16", 600, -40.0f)};  // a 1.4 MB weight: its CRC is deferred to the stats pass
  for (size_t i = 0; i < f.entries[0].weight.values.size(); i += 7919) f.entries[0].weight.values[i] *= -1.0f;
  write_sla_file(path, f);

  SlaInspection seen = inspect_sla_file(path);
  CHECK(seen.problems.empty());
  const TensorSummary& w = seen.entries[0].tensors[0];
  double sum = 0, lo = INFINITY, hi = -INFINITY;
  for (float v : f.entries[0].weight.values) sum += v, lo = std::min(lo, double(v)), hi = std::max(hi, double(v));
  CHECK(w.sum == Approx(sum).epsilon(1e-6));
  CHECK(w.min == lo);
  CHECK(w.max == hi);

  // One flipped bit inside the weight's record: found by the fused pass.
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  std::vector<char> all((std::istreambuf_iterator<char>(file)), {});
  std::string needle(reinterpret_cast<const char*>(f.entries[0].weight.values.data()), 64);
  size_t offset = std::string(all.begin(), all.end()).find(needle);
  REQUIRE(offset != std::string::npos);
  file.seekp(std::streamoff(offset + 1000 * 4 + 1));
  file.put(char(all[offset + 1000 * 4 + 1] ^ 0x10));
  file.close();
  std::string e = error_of([&] { inspect_sla_file(path); });
  CHECK(e.rfind("E_CRC: crc mismatch", 0) == 0);
  CHECK(e.find("in sla_attention/data/0") != std::string::npos);
  CHECK(code_of([&] { load_sla_file(path); }) == "E_CRC");
}

TEST_CASE("statistics skip NaN and Inf and count them, in every block") {
  std::vector<float> values(5000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(i % 97) - 48.0f;
  values[10] = NAN;
  values[2047] = INFINITY;
  values[4999] = -INFINITY;  // in the scalar tail
  auto storage = std::make_shared<pt::Storage>();
  storage->numel = values.size();
  storage->bytes = reinterpret_cast<const uint8_t*>(values.data());
  pt::Tensor t;
  t.storage = storage;
  t.shape = {int64_t(values.size())};
  t.strides = {1};
  double sum = 0, lo = INFINITY, hi = -INFINITY;
  for (float v : values)
    if (std::isfinite(v)) sum += v, lo = std::min(lo, double(v)), hi = std::max(hi, double(v));
  uint32_t crc = 0;
  for (const pt::TensorStats& s : {pt::tensor_stats(t), pt::tensor_stats_with_storage_crc(t, &crc)}) {
    CHECK(s.nonfinite == 3);
    CHECK(s.finite == values.size() - 3);
    CHECK(s.sum == Approx(sum));
    CHECK(s.min == lo);
    CHECK(s.max == hi);
  }
  CHECK(crc == crc32_update(0, storage->bytes, values.size() * 4));
  t.shape = {50, 40};  // a strided view takes the element-wise path
  t.strides = {1, 50};
  pt::TensorStats strided = pt::tensor_stats(t);
  CHECK(strided.nonfinite == 1);  // reaches elements 0..1999: the NaN at 10, not the Inf at 2047
}
