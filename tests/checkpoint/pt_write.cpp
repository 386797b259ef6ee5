// pt-write: the writer side of the interop tests. Builds a file with our writer from JSON:
//   pt-write sla SPEC.json OUT   SPEC = {"settings": {...}, "version": 1, "extension": {...},
//                                        "entries": [{"key", "weight": [D*D floats], "bias": [D floats]}]}
//                                written with write_sla_file (atomic, validated)
//   pt-write tree SPEC.json OUT  SPEC = {"prefix", "storages": {key: {"dtype", "values": [...]}},
//                                        "root": <tagged value as pt-dump prints it>}
//                                written with encode_pt + write_file_durably
// Exit 0, or 2 with the one-line error on stderr.
#include "sla/checkpoint/durable_file.h"
#include "sla/checkpoint/errors.h"
#include "sla/checkpoint/pt_reader.h"
#include "sla/checkpoint/pt_writer.h"
#include "sla/checkpoint/sla_state.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>

namespace {

using nlohmann::json;
using sla::checkpoint::pt::Value;
using sla::checkpoint::pt::ValuePtr;

double number(const json& j) {
  if (j.is_string()) {
    std::string s = j.get<std::string>();
    if (s == "nan") return NAN;
    return s == "inf" ? INFINITY : -INFINITY;
  }
  return j.get<double>();
}

std::vector<float> floats(const json& j) {
  std::vector<float> out;
  for (const auto& x : j) out.push_back(static_cast<float>(number(x)));
  return out;
}

void write_sla(const json& spec, const std::string& out) {
  sla::checkpoint::SlaFile file;
  const json& s = spec.at("settings");
  file.settings.topk = s.at("topk").get<double>();
  file.settings.feature_map = s.at("feature_map").get<std::string>();
  file.settings.blkq = s.at("blkq").get<int64_t>();
  file.settings.blkk = s.at("blkk").get<int64_t>();
  file.settings.tie_feature_map_qk = s.at("tie_feature_map_qk").get<bool>();
  file.version = spec.value("version", int64_t(1));
  if (spec.contains("extension")) file.extension = spec.at("extension");
  for (const json& e : spec.at("entries")) {
    sla::checkpoint::SlaEntry entry;
    entry.key = e.at("key").get<std::string>();
    entry.weight.values = floats(e.at("weight"));
    entry.bias.values = floats(e.at("bias"));
    int64_t d = static_cast<int64_t>(entry.bias.values.size());
    entry.head_dim = d;
    entry.dtype_token = entry.key.substr(entry.key.find(':') + 1);
    entry.weight.shape = {d, d};
    entry.bias.shape = {d};
    file.entries.push_back(std::move(entry));
  }
  sla::checkpoint::write_sla_file(out, file);
}

// Storage bytes from JSON numbers, in the dtype's little-endian encoding.
std::vector<uint8_t> storage_bytes(sla::checkpoint::pt::DType dtype, const json& values) {
  using sla::checkpoint::pt::DType;
  std::vector<uint8_t> bytes;
  auto put = [&](const void* p, size_t n) { bytes.insert(bytes.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n); };
  for (const json& v : values) {
    double x = number(v);
    switch (dtype) {
      case DType::Float32: { float f = float(x); put(&f, 4); break; }
      case DType::Float64: put(&x, 8); break;
      case DType::BFloat16: { float f = float(x); uint32_t b; std::memcpy(&b, &f, 4); uint16_t h = uint16_t(b >> 16); put(&h, 2); break; }
      case DType::Int64: { int64_t i = int64_t(x); put(&i, 8); break; }
      case DType::Int32: { int32_t i = int32_t(x); put(&i, 4); break; }
      case DType::Int16: { int16_t i = int16_t(x); put(&i, 2); break; }
      case DType::Int8: { int8_t i = int8_t(x); put(&i, 1); break; }
      case DType::UInt8: case DType::Bool: { uint8_t i = uint8_t(x); put(&i, 1); break; }
      case DType::Float16: throw std::runtime_error("pt-write: float16 values must be given as \"bits\"");
    }
  }
  return bytes;
}

struct TreeBuilder {
  std::map<std::string, std::shared_ptr<sla::checkpoint::pt::Storage>> storages;
  std::vector<std::shared_ptr<std::vector<uint8_t>>> buffers;

  void add_storage(const std::string& key, const json& spec) {
    auto storage = std::make_shared<sla::checkpoint::pt::Storage>();
    std::string dtype = spec.at("dtype").get<std::string>();
    bool found = false;
    for (const auto& info : sla::checkpoint::pt::kDTypes)
      if (info.name == dtype) { storage->dtype = info.dtype; found = true; }
    if (!found) throw std::runtime_error("pt-write: unknown dtype " + dtype);
    auto buffer = std::make_shared<std::vector<uint8_t>>();
    if (spec.contains("bits")) {  // raw element bits, for dtypes JSON numbers cannot carry exactly
      size_t itemsize = sla::checkpoint::pt::dtype_info(storage->dtype).itemsize;
      for (const json& b : spec.at("bits")) {
        uint64_t v = b.get<uint64_t>();
        for (size_t i = 0; i < itemsize; ++i) buffer->push_back(uint8_t(v >> (8 * i)));
      }
    } else {
      *buffer = storage_bytes(storage->dtype, spec.at("values"));
    }
    storage->numel = buffer->size() / sla::checkpoint::pt::dtype_info(storage->dtype).itemsize;
    storage->bytes = buffer->data();
    storage->owner = buffer;
    storages[key] = storage;
  }

  ValuePtr build(const json& j) {
    std::string t = j.at("t").get<std::string>();
    if (t == "none") return Value::none();
    if (t == "bool") return Value::from_bool(j.at("v").get<bool>());
    if (t == "int") return Value::from_int(j.at("v").get<int64_t>());
    if (t == "float") return Value::from_double(number(j.at("v")));
    if (t == "str") return Value::from_string(j.at("v").get<std::string>());
    if (t == "list" || t == "tuple") {
      std::vector<ValuePtr> items;
      for (const json& x : j.at("v")) items.push_back(build(x));
      return t == "list" ? Value::list(std::move(items)) : Value::tuple(std::move(items));
    }
    if (t == "dict") {
      auto d = Value::dict();
      d->ordered_dict = j.value("ordered", false);
      for (const json& kv : j.at("v")) d->entries.emplace_back(build(kv.at(0)), build(kv.at(1)));
      return d;
    }
    if (t == "tensor") {
      auto tensor = std::make_shared<sla::checkpoint::pt::Tensor>();
      tensor->storage = storages.at(j.at("storage").get<std::string>());
      tensor->dtype = tensor->storage->dtype;
      tensor->shape = j.at("shape").get<std::vector<int64_t>>();
      tensor->strides = j.at("strides").get<std::vector<int64_t>>();
      tensor->storage_offset = j.at("offset").get<int64_t>();
      tensor->requires_grad = j.value("requires_grad", false);
      return Value::from_tensor(tensor);
    }
    throw std::runtime_error("pt-write: unknown tag " + t);
  }
};

void write_tree(const json& spec, const std::string& out) {
  TreeBuilder builder;
  for (const auto& [key, storage] : spec.at("storages").items()) builder.add_storage(key, storage);
  ValuePtr root = builder.build(spec.at("root"));
  std::vector<uint8_t> bytes = sla::checkpoint::pt::encode_pt(*root, spec.at("prefix").get<std::string>());
  sla::checkpoint::write_file_durably(out, bytes.data(), bytes.size(), [](const std::string& temp) { sla::checkpoint::pt::read_pt_file(temp); });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 || (std::string(argv[1]) != "sla" && std::string(argv[1]) != "tree")) {
    std::fprintf(stderr, "usage: pt-write sla|tree SPEC.json OUT\n");
    return 2;
  }
  try {
    std::ifstream in(argv[2]);
    json spec = json::parse(in);
    if (std::string(argv[1]) == "sla") write_sla(spec, argv[3]);
    else write_tree(spec, argv[3]);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pt-write: %s\n", e.what());
    return 2;
  }
}
