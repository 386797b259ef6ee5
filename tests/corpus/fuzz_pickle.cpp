// libFuzzer entry point for the pickle machine: the input is data.pkl. It is wrapped in a valid
// torch.save container (correct CRCs, aligned records, the storages data/0..3 of the corpus base
// payload: 16x16 + 16 + 8x8 + 8 float32), so mutations reach the unpickler, the tensor rebuild and
// the schema checks instead of dying at the CRC check. Same verdicts as fuzz_reader.cpp.
#include "fuzz_promises.h"

#include <zlib.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace {

void put16(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 2; ++i) out.push_back(uint8_t(v >> (8 * i)));
}
void put32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(uint8_t(v >> (8 * i)));
}

// A stored zip (no data descriptors, no ZIP64: the inputs are small) whose record data start on
// 64-byte boundaries through torch's "FB" padding extra field.
std::vector<uint8_t> stored_zip(const std::vector<std::pair<std::string, std::vector<uint8_t>>>& records) {
  std::vector<uint8_t> out, central;
  for (const auto& [name, data] : records) {
    const uint32_t offset = uint32_t(out.size());
    const uint32_t crc = uint32_t(crc32(0, data.data(), uInt(data.size())));
    const size_t pad = (64 - (out.size() + 30 + name.size() + 4) % 64) % 64;
    put32(out, 0x04034B50); put16(out, 20); put16(out, 0x0800); put16(out, 0); put16(out, 0); put16(out, 0);
    put32(out, crc); put32(out, uint32_t(data.size())); put32(out, uint32_t(data.size()));
    put16(out, uint32_t(name.size())); put16(out, uint32_t(4 + pad));
    out.insert(out.end(), name.begin(), name.end());
    out.push_back('F'); out.push_back('B'); put16(out, uint32_t(pad)); out.insert(out.end(), pad, 'Z');
    out.insert(out.end(), data.begin(), data.end());
    put32(central, 0x02014B50); put16(central, 20); put16(central, 20); put16(central, 0x0800);
    put16(central, 0); put16(central, 0); put16(central, 0);
    put32(central, crc); put32(central, uint32_t(data.size())); put32(central, uint32_t(data.size()));
    put16(central, uint32_t(name.size())); put16(central, 0); put16(central, 0); put16(central, 0);
    put16(central, 0); put32(central, 0); put32(central, offset);
    central.insert(central.end(), name.begin(), name.end());
  }
  const uint32_t cd_offset = uint32_t(out.size());
  out.insert(out.end(), central.begin(), central.end());
  put32(out, 0x06054B50); put16(out, 0); put16(out, 0); put16(out, uint32_t(records.size()));
  put16(out, uint32_t(records.size())); put32(out, uint32_t(central.size())); put32(out, cd_offset); put16(out, 0);
  return out;
}

std::vector<uint8_t> float_storage(size_t numel) {
  std::vector<float> values(numel);
  for (size_t i = 0; i < numel; ++i) values[i] = 0.001f * float(i) - 0.1f;
  std::vector<uint8_t> bytes(numel * sizeof(float));
  std::memcpy(bytes.data(), values.data(), bytes.size());  // little-endian hosts only, like the reader's tests
  return bytes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<std::pair<std::string, std::vector<uint8_t>>> storages = {
      {"archive/data/0", float_storage(256)}, {"archive/data/1", float_storage(16)},
      {"archive/data/2", float_storage(64)}, {"archive/data/3", float_storage(8)}};
  std::vector<std::pair<std::string, std::vector<uint8_t>>> records = {
      {"archive/data.pkl", std::vector<uint8_t>(data, data + size)}, {"archive/byteorder", {'l', 'i', 't', 't', 'l', 'e'}}};
  records.insert(records.end(), storages.begin(), storages.end());
  records.push_back({"archive/version", {'3', '\n'}});
  const std::vector<uint8_t> file = stored_zip(records);
  try {
    sla::checkpoint::fuzz::check_tree_cost(sla::checkpoint::pt::read_pt_buffer(file.data(), file.size(), "fuzz_pickle.pt"), file.size());
    sla::checkpoint::fuzz::check_promises(sla::checkpoint::load_sla_buffer(file.data(), file.size(), "fuzz_pickle.pt"), file.size());
  } catch (const sla::checkpoint::CheckpointError&) {
    // a refusal: fine
  }
  return 0;
}
