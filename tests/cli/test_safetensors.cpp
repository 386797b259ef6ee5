// The strict safetensors reader and the writer: every validation rule with its message, the
// round trip, the SLA twin mapping, and the atomic write leaving no temp behind.
#include "catch.hpp"

#include "sla/checkpoint/errors.h"
#include "sla/checkpoint/safetensors.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

using namespace sla::checkpoint;
using namespace sla::checkpoint::safetensors;

namespace {

// A file from a header text and a data buffer, the length prefix computed.
std::vector<uint8_t> make_file(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> out;
  out.reserve(8 + header.size() + data_bytes);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t(n >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 0x11);
  return out;
}

std::string error_of(const std::vector<uint8_t>& bytes) {
  try {
    parse_buffer(bytes.data(), bytes.size(), "t.safetensors");
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

Tensor f32(const std::string& name, std::vector<int64_t> shape, std::vector<float> values) {
  Tensor t;
  t.name = name;
  t.dtype = Dtype::kF32;
  t.shape = std::move(shape);
  t.bytes.resize(values.size() * 4);
  std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  return t;
}

std::string twin_error(const File& f) {
  try {
    from_sla_twin(f, "t");
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a valid file parses with metadata, offsets and dtypes") {
  auto bytes = make_file(
      R"({"__metadata__":{"a":"b"},"x":{"dtype":"BF16","shape":[2,3],"data_offsets":[8,20]},)"
      R"("y":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}  )",
      20);
  File f = parse_buffer(bytes.data(), bytes.size(), "t");
  REQUIRE(f.metadata.at("a") == "b");
  REQUIRE(f.tensors.size() == 2);
  CHECK(f.tensors[0].name == "y");  // data order
  CHECK(f.tensors[1].dtype == Dtype::kBF16);
  CHECK(f.tensors[1].shape == std::vector<int64_t>{2, 3});
  CHECK(f.tensors[1].bytes.size() == 12);
}

TEST_CASE("every header rule is enforced with a message naming the problem") {
  struct Case {
    std::string header;
    size_t data;
    std::string expected;
  };
  const Case cases[] = {
      {R"([1,2])", 0, "does not start with '{'"},
      {R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8,
       "duplicate key 'x'"},
      {R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"dtype":"F32"}})", 4, "duplicate key 'dtype'"},
      {R"({"x":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}})", 4, "unsupported dtype 'Q4'"},
      {R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4, "non-negative integers"},
      {R"({"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4, "non-negative integers"},
      {R"({"x":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", 4, "overflows"},
      {R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4, "shape and dtype need 8"},
      {R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, "expected 0 (hole)"},
      {R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8,
       "(overlap)"},
      {R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8, "data buffer holds 8 bytes"},
      {R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 2, "data buffer holds 2 bytes"},
      {R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4, "[begin, end]"},
      {R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}})", 4, "unknown field 'extra'"},
      {R"({"x":{"dtype":"F32","shape":[1]}})", 4, "needs dtype, shape and data_offsets"},
      {R"({"__metadata__":{"a":1}})", 0, "is not a string"},
      {R"({"__metadata__":["a"]})", 0, "not an object"},
      {R"({"x":[[[[[[[[[[]]]]]]]]]]})", 0, "nests deeper"},
      {"{\"x\":\"\xff\"}", 0, "not valid JSON"},
      {R"({"x":)", 0, "not valid JSON"},
  };
  for (const auto& c : cases) {
    INFO(c.header);
    const std::string message = error_of(make_file(c.header, c.data));
    CHECK(contains(message, "E_SAFETENSORS"));
    CHECK(contains(message, c.expected));
    CHECK(contains(message, "t.safetensors"));
  }
}

TEST_CASE("length prefix: short files, caps and lengths past EOF are refused before allocating") {
  std::vector<uint8_t> tiny = {1, 2, 3};
  CHECK(contains(error_of(tiny), "shorter than the 8-byte"));
  std::vector<uint8_t> huge(16, 0);
  huge[7] = 0x01;  // 2^56
  CHECK(contains(error_of(huge), "exceeds the 100 MB cap"));
  std::vector<uint8_t> past(16, 0);
  past[0] = 100;
  CHECK(contains(error_of(past), "runs past the end"));
}

TEST_CASE("serialize and parse round trip, header padded to 8, empty tensors allowed") {
  File f;
  f.metadata["format"] = "x";
  f.tensors.push_back(f32("w", {2, 2}, {1, 2, 3, 4}));
  f.tensors.push_back(f32("empty", {0, 3}, {}));
  Tensor b;
  b.name = "b";
  b.dtype = Dtype::kBool;
  b.shape = {3};
  b.bytes = {0, 1, 0};
  f.tensors.push_back(b);
  auto bytes = serialize(f);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  File back = parse_buffer(bytes.data(), bytes.size(), "t");
  REQUIRE(back.tensors.size() == 3);
  CHECK(back.find("w")->bytes == f.tensors[0].bytes);
  CHECK(back.find("empty")->bytes.empty());
  CHECK(back.find("b")->bytes == b.bytes);
  CHECK(serialize(back) == bytes);
}

TEST_CASE("serialize refuses inconsistent tensors and duplicate names") {
  File f;
  f.tensors.push_back(f32("w", {3}, {1, 2}));
  CHECK_THROWS_AS(serialize(f), CheckpointError);
  File g;
  g.tensors.push_back(f32("w", {1}, {1}));
  g.tensors.push_back(f32("w", {1}, {2}));
  CHECK_THROWS_AS(serialize(g), CheckpointError);
}

TEST_CASE("write_file is atomic: the target appears complete and no temp stays behind") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("st_write_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  File f;
  f.tensors.push_back(f32("w", {2}, {1.5f, -2.0f}));
  const std::string target = (dir / "a.safetensors").string();
  write_file(target, f);
  CHECK(read_file(target).find("w")->bytes == f.tensors[0].bytes);
  CHECK(read_header(target).tensors.at(0).numel() == 2);
  size_t entries = 0;
  for (auto& e : fs::directory_iterator(dir)) (void)e, ++entries;
  CHECK(entries == 1);

  // A failing write (folder missing) leaves nothing and throws E_WRITE.
  try {
    write_file((dir / "missing" / "b.safetensors").string(), f);
    FAIL("expected E_WRITE");
  } catch (const CheckpointError& e) {
    CHECK(e.code() == "E_WRITE");
  }
  fs::remove_all(dir);
}

TEST_CASE("read_file refuses files over the cap before reading them") {
  namespace fs = std::filesystem;
  fs::path p = fs::temp_directory_path() / ("st_cap_" + std::to_string(::getpid()) + ".safetensors");
  File f;
  f.tensors.push_back(f32("w", {4}, {1, 2, 3, 4}));
  write_file(p.string(), f);
  try {
    read_file(p.string(), 16);
    FAIL("expected E_LIMIT");
  } catch (const CheckpointError& e) {
    CHECK(e.code() == "E_LIMIT");
  }
  fs::remove(p);
}

TEST_CASE("the SLA twin maps entries, settings, version and extension both ways") {
  SlaFile sla;
  sla.settings.topk = 0.15;
  sla.settings.blkq = 128;
  sla.settings.tie_feature_map_qk = false;
  SlaEntry e;
  e.key = "2:bf16";
  e.head_dim = 2;
  e.dtype_token = "bf16";
  e.weight = {{2, 2}, {0.1f, -0.0f, 3e-38f, 1.0f}};
  e.bias = {{2}, {1.0f, 2.0f}};
  sla.entries.push_back(e);
  sla.extension = {{"variant", "complement"}, {"writer", "test 1"}};
  sla.has_extension = true;

  File twin = to_sla_twin(sla);
  CHECK(twin.metadata.at("format") == "sla_attention");
  CHECK(twin.metadata.at("version") == "1");
  REQUIRE(twin.find("2:bf16/proj_l.weight"));
  REQUIRE(twin.find("2:bf16/proj_l.bias"));
  auto bytes = serialize(twin);
  SlaFile back = from_sla_twin(parse_buffer(bytes.data(), bytes.size(), "t"), "t");
  CHECK(back.settings.topk == 0.15);
  CHECK(back.settings.blkq == 128);
  CHECK_FALSE(back.settings.tie_feature_map_qk);
  CHECK(back.extension == sla.extension);
  CHECK(back.has_extension);
  REQUIRE(back.entries.size() == 1);
  CHECK(back.entries[0].head_dim == 2);
  CHECK(back.entries[0].dtype_token == "bf16");
  CHECK(std::memcmp(back.entries[0].weight.values.data(), e.weight.values.data(), 16) == 0);
  CHECK(back.entries[0].bias.values == e.bias.values);
}

TEST_CASE("from_sla_twin refuses files that are not twins") {
  File f;
  f.tensors.push_back(f32("2:bf16/proj_l.weight", {2, 2}, {1, 2, 3, 4}));
  CHECK(contains(twin_error(f), "'format'"));
  f.metadata = {{"format", "sla_attention"}, {"version", "1"},
                {"settings", R"({"topk":0.2,"feature_map":"softmax","blkq":64,"blkk":64,"tie_feature_map_qk":true})"}};
  CHECK(contains(twin_error(f), "lacks proj_l.weight or proj_l.bias"));
  f.tensors.push_back(f32("abc/proj_l.bias", {2}, {1, 2}));
  CHECK(contains(twin_error(f), "'<head_dim>:<dtype>'"));
  f.tensors.pop_back();
  f.metadata["settings"] = R"({"topk":0.2})";
  CHECK(contains(twin_error(f), "settings lack 'feature_map'"));
  f.metadata["settings"] = R"({"topk":0.2,"feature_map":"softmax","blkq":"64","blkk":64})";
  CHECK(contains(twin_error(f), "wrong type"));
  f.metadata["settings"] = R"({"topk":0.2,"feature_map":"softmax","blkq":64,"blkk":64})";
  f.metadata["future"] = "1";  // like an unexpected top-level key of the .pt
  CHECK(contains(twin_error(f), "unknown __metadata__ key 'future'"));
}

TEST_CASE("from_sla_twin reads past what a newer writer adds, with the .pt reader's warnings") {
  File f;
  f.metadata = {{"format", "sla_attention"}, {"settings", R"({"topk":0.2,"feature_map":"softmax","blkq":64,"blkk":64,"x":1})"}};
  f.tensors.push_back(f32("2:bf16/proj_l.weight", {2, 2}, {1, 2, 3, 4}));
  f.tensors.push_back(f32("2:bf16/proj_l.bias", {2}, {1, 2}));
  f.tensors.push_back(f32("2:bf16/proj_x", {2}, {5, 6}));
  std::vector<Problem> warnings;
  const SlaFile sla = from_sla_twin(f, "t", &warnings);
  CHECK(sla.version == 1);
  CHECK(sla.settings.tie_feature_map_qk == kDefaultTieFeatureMapQk);
  REQUIRE(sla.entries.size() == 1);
  CHECK(sla.entries[0].bias.values == std::vector<float>{1, 2});
  std::vector<std::string> where;
  for (const Problem& p : warnings) {
    CHECK(is_warning(p));
    where.push_back(p.where);
  }
  CHECK(where == std::vector<std::string>{"version", "settings/tie_feature_map_qk", "settings/x", "state/2:bf16/proj_x"});
  CHECK(warnings[3].message == compat_unknown_entry_item("2:bf16", "proj_x").message);
}
