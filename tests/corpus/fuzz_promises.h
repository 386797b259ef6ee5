// What the reader promises about a loaded file, checked by the fuzz entry points. A broken promise
// aborts, which libFuzzer and the replay report as a finding.
// Shape: tensor values that are present match their shape (a best-effort file may leave a tensor
// it could not read empty); with no problems reported (warnings aside), every entry is proj_l.weight [D, D] and
// proj_l.bias [D] for the key's head_dim, and head_dim is at most kMaxHeadDim.
// Cost (issue 11): what a file makes the reader hold or walk is bounded by what it stores - at most
// kMaxStateEntries entries, values copied out of at most input size + the reader's slack, and, in
// the raw tree, every tensor at most as many elements as its storage and all tensor views (each
// reference through the memo counted) within that same budget.
#pragma once

#include "sla/checkpoint/pt_reader.h"
#include "sla/checkpoint/sla_state.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

namespace sla::checkpoint::fuzz {

[[noreturn]] inline void broken_promise(const char* what, const std::string& key) {
  std::fprintf(stderr, "fuzz: broken promise: %s (entry '%s')\n", what, key.substr(0, 200).c_str());
  std::abort();
}

inline int64_t element_count(const Float32Tensor& t) {
  return std::accumulate(t.shape.begin(), t.shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

// What reading a file of input_size bytes may expand to (pt::Limits: file size + slack).
inline uint64_t cost_budget(size_t input_size) { return uint64_t(input_size) + pt::Limits{}.expanded_slack_bytes; }

inline void check_promises(const SlaFile& file, const std::vector<Problem>& problems, size_t input_size) {
  if (file.entries.size() > kMaxStateEntries) broken_promise("more state entries than kMaxStateEntries", "");
  uint64_t copied = 0;
  for (const auto& entry : file.entries) {
    for (const auto* t : {&entry.weight, &entry.bias}) {
      for (int64_t dim : t->shape) {
        if (dim < 0) broken_promise("negative dimension", entry.key);
      }
      if (!t->values.empty() && element_count(*t) != static_cast<int64_t>(t->values.size())) {
        broken_promise("values.size() != numel", entry.key);
      }
      copied += t->values.size() * sizeof(float);
    }
    // forward-compatibility warnings (W_COMPAT) leave a file valid: the promise holds for them too
    if (std::any_of(problems.begin(), problems.end(), [](const Problem& p) { return !is_warning(p); })) continue;
    const int64_t d = entry.head_dim;
    if (d <= 0) broken_promise("valid entry with head_dim <= 0", entry.key);
    if (d > kMaxHeadDim) broken_promise("valid entry with head_dim above kMaxHeadDim", entry.key);
    if (entry.weight.shape != std::vector<int64_t>{d, d}) broken_promise("valid entry with weight not [D, D]", entry.key);
    if (entry.bias.shape != std::vector<int64_t>{d}) broken_promise("valid entry with bias not [D]", entry.key);
  }
  if (copied > cost_budget(input_size)) broken_promise("values copied out exceed the file size + slack", "");
}

inline void check_promises(const SlaLoadResult& result, size_t input_size) {
  check_promises(result.file, result.problems, input_size);
}

// Walks the raw value tree as a consumer would (every reference, shared or not) and adds up the
// tensor-view bytes; stops early once the promise is already broken.
inline void add_view_bytes(const pt::Value& v, uint64_t budget, uint64_t* bytes) {
  if (*bytes > budget) return;
  switch (v.kind) {
    case pt::Value::Kind::Tensor: {
      const pt::Tensor& t = *v.tensor;
      if (t.numel() > t.storage->numel) broken_promise("tensor with more elements than its storage", t.storage->key);
      *bytes += t.numel() * pt::dtype_info(t.dtype).itemsize;
      return;
    }
    case pt::Value::Kind::List:
    case pt::Value::Kind::Tuple:
      for (const auto& item : v.items) add_view_bytes(*item, budget, bytes);
      return;
    case pt::Value::Kind::Dict:
      for (const auto& [key, item] : v.entries) add_view_bytes(*item, budget, bytes);
      return;
    default:
      return;
  }
}

inline void check_tree_cost(const pt::PtFile& file, size_t input_size) {
  uint64_t bytes = 0;
  const uint64_t budget = cost_budget(input_size);
  add_view_bytes(*file.root, budget, &bytes);
  if (bytes > budget) broken_promise("tensor views reached through the tree exceed the file size + slack", "");
}

}  // namespace sla::checkpoint::fuzz
