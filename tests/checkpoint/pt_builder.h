// Test helpers: a tiny pickle emitter for hand-written (hostile) pickles, a valid torch.save-
// shaped archive around any pickle, and byte surgery on archives that keeps them consistent
// except for the one defect a test wants.
#pragma once

#include "sla/checkpoint/errors.h"
#include "sla/checkpoint/pt_writer.h"

#include <cstdint>
#include <string>
#include <vector>

namespace sla::checkpoint::test {

using Bytes = std::vector<uint8_t>;

// Appends pickle opcodes and operands; every helper returns *this for chaining.
struct Pickle {
  Bytes bytes;
  Pickle& op(uint8_t code);
  Pickle& raw(const std::string& s);
  Pickle& proto(uint8_t version) { return op(0x80).u8(version); }
  Pickle& u8(uint8_t v);
  Pickle& u32(uint32_t v);
  Pickle& u64(uint64_t v);
  Pickle& str(const std::string& s);  // BINUNICODE
  Pickle& int1(uint8_t v) { return op('K').u8(v); }
  Pickle& global(const std::string& module, const std::string& name);  // GLOBAL
  Pickle& put(uint8_t index) { return op('q').u8(index); }
  Pickle& get(uint8_t index) { return op('h').u8(index); }
  Pickle& stop() { return op('.'); }
  // ('storage', torch.<storage_class>, key, 'cpu', numel) BINPERSID
  Pickle& persid(const std::string& storage_class, const std::string& key, uint8_t numel);
  // A full _rebuild_tensor_v2 REDUCE of a 1-d tensor of n elements at offset 0 over data/<key>.
  Pickle& tensor1d(const std::string& key, uint8_t n);
};

// An archive with data.pkl = pickle, version "3\n" and the given storage records (data/<key>).
Bytes archive_with(const Bytes& pickle, const std::vector<pt::Record>& storages = {},
                   const std::string& prefix = "archive");

// Offsets of the parts of an archive written by encode_archive.
struct Layout {
  size_t end;                       // end of central directory record
  size_t zip64_end;                 // ZIP64 end record
  size_t locator;                   // ZIP64 locator
  size_t cd;                        // central directory
  std::vector<size_t> cd_entries;   // each central directory entry
  std::vector<size_t> local;        // each local header (from the central directory)
};
Layout layout_of(const Bytes& archive);

void put16(Bytes& b, size_t at, uint16_t v);
void put32(Bytes& b, size_t at, uint32_t v);
void put64(Bytes& b, size_t at, uint64_t v);
uint32_t get32(const Bytes& b, size_t at);

// Inserts bytes at `at` and moves every offset behind it (local headers, central directory,
// ZIP64 records), so the only defect is the inserted bytes themselves.
Bytes insert_bytes(const Bytes& archive, size_t at, const std::string& junk);

// Replaces every occurrence of `from` (same length as `to`) in the archive's names.
Bytes rename_everywhere(Bytes archive, const std::string& from, const std::string& to);

// The CheckpointError fn throws, as "CODE: message in where"; "no error" when it returns.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "no error";
}
// Just the code of that error.
template <typename Fn>
std::string code_of(Fn&& fn) {
  std::string what = error_of(fn);
  return what.substr(0, what.find(':'));
}

}  // namespace sla::checkpoint::test
