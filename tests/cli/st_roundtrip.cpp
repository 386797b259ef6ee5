// Test helper: reads IN with the strict safetensors reader and writes it to OUT with the writer,
// printing what it read as JSON ({"metadata", "tensors": [{"name", "dtype", "shape"}]}). Errors go
// to stderr with exit 1. Lets pytest check both directions against Python safetensors.
#include "sla/checkpoint/errors.h"
#include "sla/checkpoint/safetensors.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

int main(int argc, char** argv) {
  using namespace sla::checkpoint::safetensors;
  if (argc != 3 && !(argc == 4 && std::string(argv[3]) == "--header-only")) {
    std::cerr << "usage: st_roundtrip IN OUT [--header-only]\n";
    return 2;
  }
  try {
    nlohmann::json tensors = nlohmann::json::array();
    if (argc == 4) {
      Header h = read_header(argv[1]);
      for (const auto& t : h.tensors) tensors.push_back({{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}});
      std::cout << nlohmann::json{{"metadata", h.metadata}, {"tensors", tensors}}.dump() << "\n";
      return 0;
    }
    File f = read_file(argv[1]);
    for (const auto& t : f.tensors) tensors.push_back({{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}});
    write_file(argv[2], f);
    std::cout << nlohmann::json{{"metadata", f.metadata}, {"tensors", tensors}}.dump() << "\n";
  } catch (const sla::checkpoint::CheckpointError& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
