// libFuzzer entry point: the input is a whole .pt file handed to the reader. Refusing it with a
// CheckpointError is the reader's job; any other exception, a crash, a sanitizer report or a
// broken promise about what it returns is a finding. replay_main.cpp runs the same entry over the
// corpus in ordinary builds.
#include "sla_state.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

namespace {

void fail(const char* what, const std::string& key) {
  std::fprintf(stderr, "fuzz_reader: broken promise: %s (entry '%s')\n", what, key.c_str());
  std::abort();
}

int64_t element_count(const slackpt::Float32Tensor& t) {
  return std::accumulate(t.shape.begin(), t.shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

// What sla_state.h promises about a loaded file: values that are present match their shape (a
// best-effort file may leave a tensor it could not read empty); with no problems reported, every
// entry is proj_l.weight [D, D] and proj_l.bias [D] for the key's head_dim.
void check_promises(const slackpt::SlaLoadResult& result) {
  for (const auto& entry : result.file.entries) {
    for (const auto* t : {&entry.weight, &entry.bias}) {
      for (int64_t dim : t->shape) {
        if (dim < 0) fail("negative dimension", entry.key);
      }
      if (!t->values.empty() && element_count(*t) != static_cast<int64_t>(t->values.size())) {
        fail("values.size() != numel", entry.key);
      }
    }
    if (!result.problems.empty()) continue;
    const int64_t d = entry.head_dim;
    if (d <= 0) fail("valid entry with head_dim <= 0", entry.key);
    if (entry.weight.shape != std::vector<int64_t>{d, d}) fail("valid entry with weight not [D, D]", entry.key);
    if (entry.bias.shape != std::vector<int64_t>{d}) fail("valid entry with bias not [D]", entry.key);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    check_promises(slackpt::load_sla_buffer(data, size, "fuzz.pt"));
  } catch (const slackpt::CheckpointError&) {
    // a refusal: fine
  }
  return 0;
}
