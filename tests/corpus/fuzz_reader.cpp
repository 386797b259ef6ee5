// libFuzzer entry point: the input is a whole .pt file handed to the reader. Refusing it with a
// CheckpointError is the reader's job; any other exception, a crash, a sanitizer report, a
// libFuzzer timeout (cost not bounded by the input) or a broken promise (fuzz_promises.h) is a
// finding. replay_main.cpp runs the same entry over the corpus in ordinary builds.
#include "fuzz_promises.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    // the raw tree first: what every consumer walks (inspect's statistics, the copies below)
    sla::checkpoint::fuzz::check_tree_cost(sla::checkpoint::pt::read_pt_buffer(data, size, "fuzz.pt"), size);
    sla::checkpoint::fuzz::check_promises(sla::checkpoint::load_sla_buffer(data, size, "fuzz.pt"), size);
  } catch (const sla::checkpoint::CheckpointError&) {
    // a refusal: fine
  }
  return 0;
}
