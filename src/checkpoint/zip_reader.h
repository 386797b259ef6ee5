// Reads the zip container of a torch.save file under the rules of pt_format.h: stored entries
// that tile the file exactly, names from a fixed grammar under one prefix, local headers equal to
// the central directory, CRC32 verified. Entries are views into the caller's bytes.
#pragma once

#include "errors.h"
#include "pt_format.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sla::checkpoint::pt {

struct ZipEntry {
  std::string name;            // full name, "<prefix>/<record>"
  std::string record;          // the name below the prefix
  uint64_t header_offset = 0;  // local header
  uint64_t data_offset = 0;
  uint64_t size = 0;
  uint32_t crc = 0;
  const uint8_t* data = nullptr;
  bool crc_deferred = false;   // left to the caller (ZipOptions::defer_crc_at_least)
};

struct ZipOptions {
  bool canonical = false;        // misaligned data is E_ALIGN instead of a warning
  bool allow_zero_crc = false;   // accept files saved with config.save.compute_crc32=False
  // Entries of at least this many bytes are not CRC-checked here but marked crc_deferred, so a
  // caller can check them in the same pass as its own work on the bytes. 0: check everything.
  uint64_t defer_crc_at_least = 0;
};

struct ZipArchive {
  std::string prefix;
  std::vector<ZipEntry> entries;  // central directory order
  std::vector<std::string> warnings;
  bool crc_disabled = false;      // every CRC was 0 and allow_zero_crc was set

  const ZipEntry* find(std::string_view record) const;
};

// The error for an entry whose data does not match its stored CRC.
CheckpointError crc_mismatch(const ZipEntry& entry, uint32_t computed);

// name: the file name used in messages. Throws CheckpointError with the codes of pt_format.h.
ZipArchive read_zip(const uint8_t* data, size_t size, const std::string& name, const Limits& limits,
                    const ZipOptions& options = {});

}  // namespace sla::checkpoint::pt
