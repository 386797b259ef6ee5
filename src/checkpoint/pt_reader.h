// Reads a whole torch.save file: the zip container (zip_reader), the meta records, data.pkl
// (pickle_reader) and the storages it references, under the rules of pt_format.h.
#pragma once

#include "errors.h"
#include "mapped_file.h"
#include "pt_format.h"
#include "pt_value.h"
#include "zip_reader.h"

#include <memory>
#include <string>
#include <vector>

namespace sla::checkpoint::pt {

struct ReadOptions {
  Limits limits;
  ZipOptions zip;
};

// A storage record whose CRC was deferred (ReadOptions::zip.defer_crc_at_least): the caller must
// pass it to check_deferred_crc before trusting anything read from the file.
struct DeferredCrc {
  ZipEntry entry;           // name, data, size, stored crc
  std::string storage_key;  // the key of the storage viewing these bytes
};

struct PtFile {
  std::string prefix;                 // the archive's top folder
  int64_t version = 0;                // the "version" record
  std::string byteorder = "little";   // as recorded (big-endian storages are swapped on read)
  ValuePtr root;                      // the unpickled object
  std::vector<std::string> warnings;  // e.g. misaligned records
  std::vector<DeferredCrc> deferred_crcs;
  std::shared_ptr<const MappedFile> mapped;  // read_pt_file's mapping; null for buffers

  // Throws E_CHANGED when the mapped file changed since it was opened (see mapped_file.h): call
  // it after the last read of any tensor, and before reporting an error found in the bytes.
  void check_unchanged() const {
    if (mapped) mapped->check_unchanged();
  }

  // read(), a computation over this file's bytes, followed by check_unchanged(); when read()
  // throws a CheckpointError, check_unchanged() runs first so that a file rewritten underneath is
  // reported as E_CHANGED rather than as whatever the torn bytes looked like.
  template <typename Read>
  auto read_unchanged(Read&& read) const -> decltype(read()) {
    try {
      auto result = read();
      check_unchanged();
      return result;
    } catch (const CheckpointError&) {
      check_unchanged();
      throw;
    }
  }
};

// Throws E_CRC unless computed is the stored CRC of the deferred record.
void check_deferred_crc(const DeferredCrc& deferred, uint32_t computed);

// Maps the file read-only; tensors view the mapping and keep it alive. name in messages = path.
// An error found while the file was changing is reported as E_CHANGED instead.
PtFile read_pt_file(const std::string& path, const ReadOptions& options = {});

// Reads from memory. The caller keeps data alive as long as any tensor of the result is used.
PtFile read_pt_buffer(const uint8_t* data, size_t size, const std::string& name, const ReadOptions& options = {});

}  // namespace sla::checkpoint::pt
