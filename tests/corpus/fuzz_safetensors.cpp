// libFuzzer entry point for the safetensors reader: the input is a whole .safetensors file, read
// the way verify and convert read the SLA twin (header, data ranges, the twin's layout, the SLA
// schema). Refusing it with a CheckpointError is the reader's job; a crash, a sanitizer report, a
// libFuzzer timeout (a header costing more than linear time: 40k tensors once took 18 s) or a broken
// promise (fuzz_promises.h: entry counts, values within the file's size) is a finding.
#include "fuzz_promises.h"
#include "sla/checkpoint/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const sla::checkpoint::safetensors::File file = sla::checkpoint::safetensors::parse_buffer(data, size, "fuzz.safetensors");
    const sla::checkpoint::SlaFile sla = sla::checkpoint::safetensors::from_sla_twin(file, "fuzz.safetensors");
    sla::checkpoint::fuzz::check_promises(sla, sla::checkpoint::check_sla_file(sla), size);
  } catch (const sla::checkpoint::CheckpointError&) {
    // a refusal: fine
  }
  return 0;
}
