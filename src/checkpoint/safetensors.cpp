#include "safetensors.h"

#include "durable_file.h"
#include "mapped_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <unistd.h>
#include <unordered_map>
#include <unordered_set>

namespace sla::checkpoint::safetensors {
namespace {

using nlohmann::json;

constexpr const char* kCode = "E_SAFETENSORS";
constexpr const char* kMetadataKey = "__metadata__";
constexpr int kMaxJsonDepth = 8;  // the format nests 3 deep; a deeper header is hostile

struct DtypeRow {
  Dtype dtype;
  const char* name;
  size_t itemsize;
  bool is_float;
  const char* token;
};

// One table for names, sizes and SLA key tokens (sla-format.md: bf16/fp16/fp32, else the torch name).
constexpr DtypeRow kDtypes[] = {
    {Dtype::kF64, "F64", 8, true, "float64"},       {Dtype::kF32, "F32", 4, true, "fp32"},
    {Dtype::kF16, "F16", 2, true, "fp16"},          {Dtype::kBF16, "BF16", 2, true, "bf16"},
    {Dtype::kF8_E4M3, "F8_E4M3", 1, true, "float8_e4m3fn"},
    {Dtype::kF8_E5M2, "F8_E5M2", 1, true, "float8_e5m2"},
    {Dtype::kI64, "I64", 8, false, "int64"},        {Dtype::kI32, "I32", 4, false, "int32"},
    {Dtype::kI16, "I16", 2, false, "int16"},        {Dtype::kI8, "I8", 1, false, "int8"},
    {Dtype::kU8, "U8", 1, false, "uint8"},          {Dtype::kBool, "BOOL", 1, false, "bool"},
};

const DtypeRow& row(Dtype dtype) {
  for (const auto& r : kDtypes)
    if (r.dtype == dtype) return r;
  throw CheckpointError(kCode, "unknown dtype enum");
}

[[noreturn]] void fail(const std::string& message, const std::string& where) {
  throw CheckpointError(kCode, message, where);
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Reads exactly n bytes at offset; a file that ends early has shrunk since it was opened.
void read_exactly(int fd, uint8_t* out, uint64_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    ssize_t got = ::pread(fd, out, size_t(std::min<uint64_t>(n, 1u << 30)), off_t(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw CheckpointError("E_IO", std::string("cannot read: ") + std::strerror(errno), path);
    if (got == 0) throw_file_changed(path);
    out += got;
    n -= uint64_t(got);
    offset += uint64_t(got);
  }
}

// A descriptor that closes itself.
struct Fd {
  int fd;
  ~Fd() { ::close(fd); }
};

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return true;
  *out = a * b;
  return false;
}

// A SAX pass that only checks: nesting at most kMaxJsonDepth, no duplicate key in any object
// (nlohmann keeps the last duplicate silently; two readers could then disagree on the content).
// Linear in the text, unlike nlohmann's callback parser, which rescans the parent container for
// discarded values each time a child ends (quadratic: 40k tensors took 18 s).
struct StrictShape : nlohmann::json_sax<json> {
  std::vector<std::unordered_set<std::string>> keys;  // one set per open object
  int depth = 0;
  std::string problem;

  bool open() {
    if (++depth > kMaxJsonDepth) problem = "header JSON nests deeper than " + std::to_string(kMaxJsonDepth);
    return problem.empty();
  }
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    keys.emplace_back();
    return open();
  }
  bool key(string_t& k) override {
    if (!keys.back().insert(k).second) problem = "duplicate key '" + k.substr(0, 200) + "' in header";
    return problem.empty();
  }
  bool end_object() override {
    keys.pop_back();
    --depth;
    return true;
  }
  bool start_array(std::size_t) override { return open(); }
  bool end_array() override {
    --depth;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    problem = std::string("header is not valid JSON: ") + e.what();
    return false;
  }
};

json parse_json_strict(const std::string& text, const std::string& where) {
  StrictShape shape;
  json::sax_parse(text, &shape);
  if (!shape.problem.empty()) fail(shape.problem, where);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(std::string("header is not valid JSON: ") + e.what(), where);
  }
}

Dtype parse_dtype(const json& value, const std::string& where) {
  if (value.is_string()) {
    const auto& name = value.get_ref<const std::string&>();
    for (const auto& r : kDtypes)
      if (name == r.name) return r.dtype;
    fail("unsupported dtype '" + name + "'", where);
  }
  fail("dtype is not a string", where);
}

uint64_t parse_unsigned(const json& value, const std::string& field, const std::string& where) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() >= 0) return value.get<uint64_t>();
  fail(field + " must hold non-negative integers, got " + value.dump(), where);
}

TensorInfo parse_tensor_info(const std::string& name, const json& info, const std::string& where) {
  const std::string at = where + ": tensor '" + name + "'";
  if (!info.is_object()) fail("tensor entry is not an object", at);
  for (const auto& item : info.items())
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets")
      fail("unknown field '" + item.key() + "'", at);
  if (!info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
    fail("needs dtype, shape and data_offsets", at);

  TensorInfo t;
  t.name = name;
  t.dtype = parse_dtype(info["dtype"], at);
  const json& shape = info["shape"];
  if (!shape.is_array()) fail("shape is not an array", at);
  uint64_t bytes = row(t.dtype).itemsize;
  for (const auto& dim : shape) {
    uint64_t d = parse_unsigned(dim, "shape", at);
    if (d > uint64_t(std::numeric_limits<int64_t>::max()) || mul_overflows(bytes, d, &bytes))
      fail("shape " + shape.dump() + " overflows", at);
    t.shape.push_back(int64_t(d));
  }
  const json& offsets = info["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2) fail("data_offsets must be [begin, end]", at);
  t.begin = parse_unsigned(offsets[0], "data_offsets", at);
  t.end = parse_unsigned(offsets[1], "data_offsets", at);
  if (t.end < t.begin) fail("data_offsets end < begin", at);
  if (t.end - t.begin != bytes)
    fail("data_offsets span " + std::to_string(t.end - t.begin) + " bytes, shape and dtype need " +
             std::to_string(bytes),
         at);
  return t;
}

}  // namespace

const char* dtype_name(Dtype dtype) { return row(dtype).name; }
size_t dtype_itemsize(Dtype dtype) { return row(dtype).itemsize; }
bool is_float(Dtype dtype) { return row(dtype).is_float; }
std::string dtype_token(Dtype dtype) { return row(dtype).token; }

uint64_t TensorInfo::numel() const { return (end - begin) / dtype_itemsize(dtype); }

const Tensor* File::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

Header parse_header(const uint8_t* prefix, size_t prefix_size, uint64_t file_size, const std::string& where) {
  if (file_size < 8 || prefix_size < 8) fail("file is shorter than the 8-byte header length", where);
  const uint64_t n = read_le64(prefix);
  if (n > kMaxHeaderBytes) fail("header length " + std::to_string(n) + " exceeds the 100 MB cap", where);
  if (n > file_size - 8) fail("header length " + std::to_string(n) + " runs past the end of the file", where);
  if (n > prefix_size - 8) fail("header bytes not available", where);
  if (n < 2 || prefix[8] != '{') fail("header does not start with '{'", where);

  const json doc = parse_json_strict(std::string(reinterpret_cast<const char*>(prefix + 8), n), where);
  if (!doc.is_object()) fail("header is not a JSON object", where);

  Header header;
  header.data_start = 8 + n;
  for (const auto& item : doc.items()) {
    if (item.key() == kMetadataKey) {
      if (!item.value().is_object()) fail("__metadata__ is not an object", where);
      for (const auto& meta : item.value().items()) {
        if (!meta.value().is_string()) fail("__metadata__ value of '" + meta.key() + "' is not a string", where);
        header.metadata[meta.key()] = meta.value().get<std::string>();
      }
      continue;
    }
    header.tensors.push_back(parse_tensor_info(item.key(), item.value(), where));
  }
  // Ranges must tile the data buffer exactly: sorted, from 0, no hole, no overlap, up to EOF.
  std::stable_sort(header.tensors.begin(), header.tensors.end(),
                   [](const TensorInfo& a, const TensorInfo& b) { return a.begin < b.begin || (a.begin == b.begin && a.end < b.end); });
  uint64_t cursor = 0;
  for (const auto& t : header.tensors) {
    if (t.begin != cursor)
      fail("tensor '" + t.name + "' starts at " + std::to_string(t.begin) + ", expected " + std::to_string(cursor) +
               (t.begin < cursor ? " (overlap)" : " (hole)"),
           where);
    cursor = t.end;
  }
  const uint64_t data_size = file_size - header.data_start;
  if (cursor != data_size)
    fail("tensor data ends at " + std::to_string(cursor) + " but the data buffer holds " + std::to_string(data_size) +
             " bytes",
         where);
  return header;
}

Header read_header(const std::string& path, uint64_t max_header_bytes) {
  uint64_t file_size = 0;
  Fd file{open_regular_file(path, &file_size)};
  uint8_t length[8] = {};
  if (file_size < 8) fail("file is shorter than 8 bytes", path);
  read_exactly(file.fd, length, 8, 0, path);
  const uint64_t n = read_le64(length);
  if (n > kMaxHeaderBytes) fail("header length " + std::to_string(n) + " exceeds the 100 MB cap", path);
  if (n > max_header_bytes) fail("header length " + std::to_string(n) + " exceeds the " + std::to_string(max_header_bytes) + " bytes asked for", path);
  if (n > file_size - 8) fail("header length " + std::to_string(n) + " runs past the end of the file", path);
  std::vector<uint8_t> prefix(8 + n);
  std::memcpy(prefix.data(), length, 8);
  read_exactly(file.fd, prefix.data() + 8, n, 8, path);
  return parse_header(prefix.data(), prefix.size(), file_size, path);
}

File parse_buffer(const uint8_t* data, size_t size, const std::string& where) {
  Header header = parse_header(data, size, size, where);
  File file;
  file.metadata = std::move(header.metadata);
  const uint8_t* buffer = data + header.data_start;
  for (const auto& info : header.tensors) {
    Tensor t;
    t.name = info.name;
    t.dtype = info.dtype;
    t.shape = info.shape;
    t.bytes.assign(buffer + info.begin, buffer + info.end);
    file.tensors.push_back(std::move(t));
  }
  return file;
}

File read_file(const std::string& path, uint64_t max_file_bytes) {
  uint64_t file_size = 0;
  Fd file{open_regular_file(path, &file_size)};
  if (file_size > max_file_bytes)
    throw CheckpointError("E_LIMIT", "file of " + std::to_string(file_size) + " bytes exceeds the cap of " +
                                         std::to_string(max_file_bytes), path);
  std::vector<uint8_t> bytes(file_size);
  read_exactly(file.fd, bytes.data(), file_size, 0, path);
  uint8_t more = 0;  // a file that grew while read is not the file that was sized
  if (::pread(file.fd, &more, 1, off_t(file_size)) != 0) throw_file_changed(path);
  return parse_buffer(bytes.data(), bytes.size(), path);
}

std::vector<uint8_t> serialize(const File& file) {
  json header = json::object();
  if (!file.metadata.empty()) header[kMetadataKey] = file.metadata;
  uint64_t offset = 0;
  for (const auto& t : file.tensors) {
    if (t.name == kMetadataKey || header.contains(t.name)) fail("duplicate or reserved tensor name", t.name);
    uint64_t expected = dtype_itemsize(t.dtype);
    for (int64_t d : t.shape)
      if (d < 0 || mul_overflows(expected, uint64_t(d), &expected)) fail("bad shape", t.name);
    if (expected != t.bytes.size())
      fail("holds " + std::to_string(t.bytes.size()) + " bytes, shape needs " + std::to_string(expected), t.name);
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + expected}}};
    offset += expected;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the Python writer pads to 8 so data stays aligned

  std::vector<uint8_t> out;
  out.reserve(8 + text.size() + offset);
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t(n >> (8 * i)));
  out.insert(out.end(), text.begin(), text.end());
  for (const auto& t : file.tensors) out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  return out;
}

void write_file(const std::string& path, const File& file) {
  const std::vector<uint8_t> bytes = serialize(file);
  parse_buffer(bytes.data(), bytes.size(), path);  // never write what we would refuse to read
  write_file_durably(path, bytes.data(), bytes.size(), [&](const std::string& temp) {
    if (serialize(read_file(temp, bytes.size())) != bytes)
      throw CheckpointError("E_WRITE", "re-read of the temp file differs", temp);
  });
}

// ---- the SLA twin -------------------------------------------------------------------------------

namespace {

Tensor f32_tensor(const std::string& name, const Float32Tensor& source) {
  Tensor t;
  t.name = name;
  t.dtype = Dtype::kF32;
  t.shape = source.shape;
  t.bytes.resize(source.values.size() * sizeof(float));
  std::memcpy(t.bytes.data(), source.values.data(), t.bytes.size());  // little-endian hosts only
  return t;
}

Float32Tensor f32_values(const Tensor& t, const std::string& where) {
  if (t.dtype != Dtype::kF32) fail(std::string("expected F32, got ") + dtype_name(t.dtype), where + ": " + t.name);
  Float32Tensor out;
  out.shape = t.shape;
  out.values.resize(t.bytes.size() / sizeof(float));
  std::memcpy(out.values.data(), t.bytes.data(), t.bytes.size());
  return out;
}

// "<head_dim>:<token>" with a positive decimal head_dim and a token.
bool split_state_key(const std::string& key, int64_t* head_dim, std::string* token) {
  StateKey parsed = parse_state_key(key);
  if (parsed.head_dim <= 0 || parsed.dtype_token.empty()) return false;
  *head_dim = parsed.head_dim;
  *token = std::move(parsed.dtype_token);
  return true;
}

json parse_metadata_json(const File& twin, const std::string& key, const std::string& where) {
  auto it = twin.metadata.find(key);
  if (it == twin.metadata.end()) throw CheckpointError("E_SCHEMA", "__metadata__ lacks '" + key + "'", where);
  try {
    return json::parse(it->second);
  } catch (const json::exception&) {
    throw CheckpointError("E_SCHEMA", "__metadata__ '" + key + "' is not JSON", where);
  }
}

// The five settings; a missing tie_feature_map_qk and unknown keys are warnings, as in the .pt.
SlaSettings settings_from_json(const json& s, const std::string& where, std::vector<Problem>& warnings) {
  if (!s.is_object()) throw CheckpointError("E_SCHEMA", "settings are not a JSON object", where);
  for (const char* k : kSettingKeys) {
    if (s.contains(k)) continue;
    if (std::string(k) != kSettingTieFeatureMapQk) throw CheckpointError("E_SCHEMA", std::string("settings lack '") + k + "'", where);
    warnings.push_back(compat_missing_tie_feature_map_qk());
  }
  for (const auto& item : s.items()) {
    const std::string& key = item.key();  // a named variable: C++17 lambdas cannot capture a structured binding
    if (std::none_of(std::begin(kSettingKeys), std::end(kSettingKeys), [&](const char* k) { return key == k; }))
      warnings.push_back(compat_unknown_setting(key));
  }
  const bool tie_given = s.contains(kSettingTieFeatureMapQk);
  if (!s[kSettingTopk].is_number() || !s[kSettingFeatureMap].is_string() || !s[kSettingBlkq].is_number_integer() ||
      !s[kSettingBlkk].is_number_integer() || (tie_given && !s[kSettingTieFeatureMapQk].is_boolean()))
    throw CheckpointError("E_SCHEMA", "settings have a value of the wrong type: " + s.dump(), where);
  SlaSettings out;
  out.topk = s[kSettingTopk].get<double>();
  out.feature_map = s[kSettingFeatureMap].get<std::string>();
  out.blkq = s[kSettingBlkq].get<int64_t>();
  out.blkk = s[kSettingBlkk].get<int64_t>();
  if (tie_given) out.tie_feature_map_qk = s[kSettingTieFeatureMapQk].get<bool>();
  return out;
}

}  // namespace

File to_sla_twin(const SlaFile& sla) {
  File twin;
  twin.metadata["format"] = kTwinFormat;
  twin.metadata["version"] = std::to_string(sla.version);
  twin.metadata["settings"] = json(settings_to_json(sla.settings)).dump();  // sorted keys, as before
  if (sla.has_extension) twin.metadata[kExtensionKey] = sla.extension.dump();
  for (const auto& entry : sla.entries) {
    twin.tensors.push_back(f32_tensor(entry.key + "/proj_l.weight", entry.weight));
    twin.tensors.push_back(f32_tensor(entry.key + "/proj_l.bias", entry.bias));
  }
  return twin;
}

SlaFile from_sla_twin(const File& twin, const std::string& where, std::vector<Problem>* warnings_out) {
  auto format = twin.metadata.find("format");
  if (format == twin.metadata.end() || format->second != kTwinFormat)
    throw CheckpointError("E_SCHEMA", "__metadata__ 'format' is not 'sla_attention'", where);
  std::vector<Problem> warnings;
  SlaFile sla;
  if (twin.metadata.count("version")) {
    const json version = parse_metadata_json(twin, "version", where);
    if (!version.is_number_integer()) throw CheckpointError("E_SCHEMA", "version is not an integer", where);
    sla.version = version.get<int64_t>();
  } else {
    warnings.push_back(compat_missing_version());  // read as version 1
  }
  sla.settings = settings_from_json(parse_metadata_json(twin, "settings", where), where, warnings);
  if (twin.metadata.count(kExtensionKey)) {
    sla.extension = parse_metadata_json(twin, kExtensionKey, where);
    if (!sla.extension.is_object()) throw CheckpointError("E_SCHEMA", "sla_toolkit is not a JSON object", where);
    sla.has_extension = true;
  }
  for (const auto& [key, value] : twin.metadata)
    if (key != "format" && key != "version" && key != "settings" && key != kExtensionKey)
      throw CheckpointError("E_SCHEMA", "unknown __metadata__ key '" + key + "'", where);

  // Two tensors per state entry: a twin listing more is refused before anything is grouped.
  if (twin.tensors.size() > 2 * kMaxStateEntries)
    throw CheckpointError("E_LIMIT", "the twin lists " + std::to_string(twin.tensors.size()) + " tensors, cap is " +
                                         std::to_string(2 * kMaxStateEntries) + " (" + std::to_string(kMaxStateEntries) +
                                         " state entries)", where);
  // Group "<key>/proj_l.weight" and "<key>/proj_l.bias" in first-seen key order.
  std::unordered_map<std::string, size_t> index;  // key -> position in sla.entries
  for (const auto& t : twin.tensors) {
    auto slash = t.name.rfind('/');
    if (slash == std::string::npos)
      throw CheckpointError("E_SCHEMA", "tensor name is not '<key>/proj_l.*'", where + ": " + t.name);
    const std::string key = t.name.substr(0, slash), param = t.name.substr(slash + 1);
    if (param != "proj_l.weight" && param != "proj_l.bias") {
      warnings.push_back(compat_unknown_entry_item(key, param));  // ignored, as SimpleTuner's strict=False load does
      continue;
    }
    auto [at, fresh] = index.emplace(key, sla.entries.size());
    if (fresh) {
      SlaEntry e;
      e.key = key;
      if (!split_state_key(key, &e.head_dim, &e.dtype_token))
        throw CheckpointError("E_SCHEMA", "state key is not '<head_dim>:<dtype>'", where + ": " + key);
      sla.entries.push_back(std::move(e));
    }
    SlaEntry* entry = &sla.entries[at->second];
    (param == "proj_l.weight" ? entry->weight : entry->bias) = f32_values(t, where);
  }
  for (const auto& e : sla.entries)
    if (e.weight.shape.empty() || e.bias.shape.empty())
      throw CheckpointError("E_SCHEMA", "state entry lacks proj_l.weight or proj_l.bias", where + ": " + e.key);
  if (warnings_out) warnings_out->insert(warnings_out->end(), warnings.begin(), warnings.end());
  return sla;
}

SlaInspection inspect_sla_twin(const std::string& path) {
  std::vector<Problem> warnings;
  const SlaFile file = from_sla_twin(read_file(path), path, &warnings);
  return inspect_sla_payload(file, "safetensors", warnings);
}

}  // namespace sla::checkpoint::safetensors
