// What sla_state.h promises about a loaded file, checked by the fuzz entry points: tensor values
// that are present match their shape (a best-effort file may leave a tensor it could not read
// empty); with no problems reported, every entry is proj_l.weight [D, D] and proj_l.bias [D] for
// the key's head_dim. A broken promise aborts, which libFuzzer and the replay report as a finding.
#pragma once

#include "sla_state.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

namespace slackpt::fuzz {

[[noreturn]] inline void broken_promise(const char* what, const std::string& key) {
  std::fprintf(stderr, "fuzz: broken promise: %s (entry '%s')\n", what, key.c_str());
  std::abort();
}

inline int64_t element_count(const Float32Tensor& t) {
  return std::accumulate(t.shape.begin(), t.shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

inline void check_promises(const SlaLoadResult& result) {
  for (const auto& entry : result.file.entries) {
    for (const auto* t : {&entry.weight, &entry.bias}) {
      for (int64_t dim : t->shape) {
        if (dim < 0) broken_promise("negative dimension", entry.key);
      }
      if (!t->values.empty() && element_count(*t) != static_cast<int64_t>(t->values.size())) {
        broken_promise("values.size() != numel", entry.key);
      }
    }
    if (!result.problems.empty()) continue;
    const int64_t d = entry.head_dim;
    if (d <= 0) broken_promise("valid entry with head_dim <= 0", entry.key);
    if (entry.weight.shape != std::vector<int64_t>{d, d}) broken_promise("valid entry with weight not [D, D]", entry.key);
    if (entry.bias.shape != std::vector<int64_t>{d}) broken_promise("valid entry with bias not [D]", entry.key);
  }
}

}  // namespace slackpt::fuzz
