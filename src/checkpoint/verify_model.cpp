// Model discovery: the attention head dims and the weights' dtype.
#include "verify_internal.h"

#include "mapped_file.h"
#include "safetensors.h"
#include "sla_state.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <unistd.h>

namespace sla::checkpoint::verify_detail {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The weights' dtype needs only their headers, and a few MB of headers decide it; a folder whose
// headers add up to more is not read further (the majority so far stands).
constexpr uint64_t kMaxWeightsHeaderBytes = 64u << 20;
constexpr size_t kMaxHeadDims = 64;  // distinct head dims taken from a config

}  // namespace

// ---- the model: attention head dims and the weights' dtype --------------------------------------

std::vector<int64_t> head_dims_from_config(const json& config) {
  std::set<int64_t> dims;
  auto add_one = [&](const json& x) {
    if (x.is_number_integer() && x.get<int64_t>() > 0 && x.get<int64_t>() <= kMaxHeadDim && dims.size() < kMaxHeadDims)
      dims.insert(x.get<int64_t>());
  };
  auto add = [&](const json& v) {
    add_one(v);
    if (v.is_array())
      for (const auto& x : v) add_one(x);
  };
  if (config.contains("attention_head_dim")) add(config["attention_head_dim"]);
  if (config.contains("head_dim")) add(config["head_dim"]);
  if (dims.empty() && config.contains("hidden_size") && config.contains("num_attention_heads")) {
    const json &h = config["hidden_size"], &n = config["num_attention_heads"];
    if (h.is_number_integer() && n.is_number_integer() && n.get<int64_t>() > 0 &&
        h.get<int64_t>() % n.get<int64_t>() == 0)
      add_one(h.get<int64_t>() / n.get<int64_t>());
  }
  return {dims.begin(), dims.end()};
}

std::optional<json> read_json(const fs::path& p) {
  auto text = read_small_text(p);
  if (!text) return std::nullopt;
  try {
    return json::parse(*text);
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

// The float dtype holding most weight elements, from the safetensors headers only.
void find_weights_dtype(const fs::path& folder, ModelShape& shape) {
  std::map<std::string, uint64_t> elements_per_token;
  std::vector<std::string> sources;
  uint64_t header_budget = kMaxWeightsHeaderBytes;
  for (const fs::path& f : {folder / "transformer", folder}) {
    for (const auto& p : files_in(f)) {
      if (p.extension() != ".safetensors" || p.filename() == kSlaTwinName || header_budget == 0) continue;
      try {
        const safetensors::Header header = safetensors::read_header(p.string(), header_budget);
        header_budget -= std::min(header_budget, header.data_start - 8);
        for (const auto& t : header.tensors)
          if (safetensors::is_float(t.dtype)) elements_per_token[safetensors::dtype_token(t.dtype)] += t.numel();
        sources.push_back(p.filename().string());
      } catch (const CheckpointError&) {
        // An unreadable weights file says nothing about the dtype; other tools report it.
      }
    }
    if (!sources.empty()) break;  // transformer/ weights win over top-level ones
  }
  uint64_t best = 0;
  for (const auto& [token, count] : elements_per_token)
    if (count > best) best = count, shape.dtype_token = token;
  if (!shape.dtype_token.empty()) {
    shape.dtype_source = sources.front();
    if (sources.size() > 1) shape.dtype_source += " and " + std::to_string(sources.size() - 1) + " more";
  }
}

}  // namespace sla::checkpoint::verify_detail

namespace sla::checkpoint {

using namespace verify_detail;

ModelShape find_model_shape(const std::string& folder_text, const std::string& model_config) {
  const fs::path folder(folder_text);
  ModelShape shape;
  if (!model_config.empty()) {
    auto config = read_json(model_config);
    if (!config || !config->is_object())
      throw CheckpointError("E_CONFIG", "cannot read the model config as a JSON object", model_config);
    shape.config_path = model_config;
    shape.head_dims = head_dims_from_config(*config);
    if (shape.head_dims.empty())
      throw CheckpointError("E_CONFIG",
                            "model config has no attention_head_dim, head_dim or hidden_size / num_attention_heads",
                            model_config);
  } else {
    for (const fs::path& p : {folder / "transformer" / "config.json", folder / "config.json"}) {
      auto config = read_json(p);
      if (!config || !config->is_object()) continue;
      auto dims = head_dims_from_config(*config);
      if (dims.empty()) continue;
      shape.config_path = p.string();
      shape.head_dims = dims;
      break;
    }
  }
  if (shape.head_dims.empty() && model_config.empty()) {
    const std::string newest = newest_checkpoint_folder(folder_text);
    if (!newest.empty()) return find_model_shape(newest);
  }
  find_weights_dtype(folder, shape);
  return shape;
}

}  // namespace sla::checkpoint
