// pt-dump FILE: the generic value tree of a torch.save file as tagged JSON, the bridge between
// our reader and Python torch in the interop tests. Exit 0 with JSON on stdout, or 2 with the
// reader's one-line error on stderr.
//   {"prefix", "version", "byteorder", "root": <value>}
//   value: {"t": "none"|"bool"|"int"|"float"|"str", "v": ...}, {"t": "list"|"tuple", "v": [...]},
//          {"t": "dict", "ordered": bool, "v": [[key, value], ...]},
//          {"t": "tensor", "dtype", "shape", "strides", "offset", "storage", "storage_numel",
//           "requires_grad", "values": [row-major elements; NaN/Inf as strings]}
#include "sla/checkpoint/errors.h"
#include "sla/checkpoint/pt_reader.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <iostream>

namespace {

using sla::checkpoint::pt::Value;

nlohmann::json number(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  return x;
}

nlohmann::json dump(const Value& v) {
  using Kind = Value::Kind;
  switch (v.kind) {
    case Kind::None: return {{"t", "none"}};
    case Kind::Bool: return {{"t", "bool"}, {"v", v.boolean}};
    case Kind::Int: return {{"t", "int"}, {"v", v.integer}};
    case Kind::Float: return {{"t", "float"}, {"v", number(v.real)}};
    case Kind::String: return {{"t", "str"}, {"v", v.text}};
    case Kind::List:
    case Kind::Tuple: {
      nlohmann::json items = nlohmann::json::array();
      for (const auto& item : v.items) items.push_back(dump(*item));
      return {{"t", v.kind == Kind::List ? "list" : "tuple"}, {"v", items}};
    }
    case Kind::Dict: {
      nlohmann::json entries = nlohmann::json::array();
      for (const auto& [k, x] : v.entries) entries.push_back({dump(*k), dump(*x)});
      return {{"t", "dict"}, {"ordered", v.ordered_dict}, {"v", entries}};
    }
    case Kind::Tensor: {
      const auto& t = *v.tensor;
      nlohmann::json values = nlohmann::json::array();
      for (uint64_t i = 0; i < t.numel(); ++i) values.push_back(number(t.element(i)));
      return {{"t", "tensor"},
              {"dtype", std::string(sla::checkpoint::pt::dtype_info(t.dtype).name)},
              {"shape", t.shape},
              {"strides", t.strides},
              {"offset", t.storage_offset},
              {"storage", t.storage->key},
              {"storage_numel", t.storage->numel},
              {"requires_grad", t.requires_grad},
              {"values", values}};
    }
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: pt-dump FILE\n");
    return 2;
  }
  try {
    sla::checkpoint::pt::PtFile file = sla::checkpoint::pt::read_pt_file(argv[1]);
    nlohmann::json out = {{"prefix", file.prefix}, {"version", file.version}, {"byteorder", file.byteorder}, {"root", dump(*file.root)}};
    std::cout << out.dump() << "\n";
    return 0;
  } catch (const sla::checkpoint::CheckpointError& e) {
    std::fprintf(stderr, "pt-dump: %s\n", e.what());
    return 2;
  }
}
