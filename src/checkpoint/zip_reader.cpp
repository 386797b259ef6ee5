#include "zip_reader.h"

#include "byte_reader.h"
#include "crc32.h"
#include "errors.h"
#include "text_escape.h"

#include <algorithm>
#include <unordered_set>

namespace sla::checkpoint::pt {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50, kZip64LocatorSig = 0x07064b50, kDescriptorSig = 0x08074b50;
constexpr size_t kEndSize = 22, kZip64EndSize = 56, kZip64LocatorSize = 20, kLocalSize = 30;
constexpr uint16_t kZip64ExtraId = 0x0001;
constexpr uint16_t kFlagEncrypted = 1 << 0, kFlagDescriptor = 1 << 3, kFlagStrongEncryption = 1 << 6,
                   kFlagEncryptedDirectory = 1 << 13;

std::string hex32(uint32_t v) {
  static const char* digits = "0123456789abcdef";
  std::string s(8, '0');
  for (int i = 7; i >= 0; --i, v >>= 4) s[i] = digits[v & 15];
  return s;
}

uint32_t le32(const uint8_t* p) { return static_cast<uint32_t>(ByteReader::le(p, 4)); }

// Legacy torch.save (a pickle stream), a tar, or the PYTORCH1 preview: never unpickled.
bool looks_legacy(const uint8_t* data, size_t size) {
  if (size >= 1 && data[0] == 0x80) return true;
  if (size >= 8 && std::string_view(reinterpret_cast<const char*>(data), 8) == "PYTORCH1") return true;
  return size >= 262 && std::string_view(reinterpret_cast<const char*>(data) + 257, 5) == "ustar";
}

// "<prefix>/<record>": prefix is printable ASCII without / \ :, the record's components are
// [A-Za-z0-9._-]+; no empty, "." or ".." components.
void check_name(const std::string& name, const std::string& file) {
  auto bad = [&](const std::string& why) {
    throw CheckpointError("E_BAD_NAME", "entry name \"" + quoted_value(name, 200) + "\" " + why, file);
  };
  if (name.empty()) bad("is empty");
  if (name.size() > 1024) bad("is longer than 1024 bytes");
  if (name[0] == '/') bad("starts with /");
  size_t slash = name.find('/');
  size_t start = 0;
  bool in_prefix = true;
  while (true) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    std::string_view part(name.data() + start, end - start);
    if (part.empty()) bad("has an empty path component");
    if (part == "." || part == "..") bad("has a . or .. component");
    for (unsigned char c : part) {
      bool ok = in_prefix && slash != std::string::npos
                    ? (c >= 0x20 && c < 0x7f && c != '\\' && c != ':')
                    : ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                       c == '_' || c == '-');
      if (!ok) bad("has a character outside the allowed set");
    }
    in_prefix = false;
    if (end == name.size()) break;
    start = end + 1;
  }
}

// Walks the extra fields of a header. For the zip64 field (id 1), replaces the 32-bit values that
// hold the 0xFFFFFFFF sentinel, in the order the spec lists them.
void read_extras(ByteReader extras, uint64_t* uncompressed, uint64_t* compressed, uint64_t* offset, bool* zip64,
                 bool* fb_padding) {
  while (!extras.at_end()) {
    uint16_t id = extras.u16("extra field id");
    uint16_t len = extras.u16("extra field length");
    ByteReader field(extras.take(len, "extra field"), len, extras.where(), "E_ZIP64");
    if (id == kZip64ExtraId) {
      *zip64 = true;
      for (uint64_t* v : {uncompressed, compressed, offset})
        if (v && *v == 0xFFFFFFFFu) *v = field.u64("zip64 extra value");
    } else if (id == 0x4246 /* "FB" */) {
      *fb_padding = true;
    }
  }
}

}  // namespace

CheckpointError crc_mismatch(const ZipEntry& entry, uint32_t computed) {
  return CheckpointError("E_CRC", "crc mismatch (stored " + hex32(entry.crc) + ", computed " + hex32(computed) + ")", entry.name);
}

const ZipEntry* ZipArchive::find(std::string_view record) const {
  for (const auto& e : entries)
    if (e.record == record) return &e;
  return nullptr;
}

namespace {

// The extent of the central directory, from the end record (and the zip64 one when present).
struct Directory {
  uint64_t count = 0;     // entries
  uint64_t size = 0;      // bytes
  uint64_t offset = 0;    // where it starts
  size_t tail_start = 0;  // where it must end: the zip64 end record or the end record
};

// One entry's bytes: local header, data and descriptor.
struct Extent {
  uint64_t begin, end;
  size_t index;
};

// The first bytes: a zip (not the legacy format), and within the size cap.
void check_start(const uint8_t* data, size_t size, const std::string& name, const Limits& limits) {
  if (size < kEndSize) throw CheckpointError("E_NOT_ZIP", "file has " + std::to_string(size) + " bytes, too short for a zip", name);
  if (le32(data) != kLocalSig) {
    if (looks_legacy(data, size))
      throw CheckpointError("E_LEGACY_FORMAT", "legacy (pre-1.6, non-zip) torch.save format; re-save with torch >= 1.6", name);
    throw CheckpointError("E_NOT_ZIP", "not a zip archive (no local header at offset 0)", name);
  }
  if (size > limits.max_file_bytes)
    throw CheckpointError("E_LIMIT", "file has " + std::to_string(size) + " bytes, cap is " + std::to_string(limits.max_file_bytes), name);
}

// The end of central directory record: exactly the last 22 bytes.
Directory read_end_record(const uint8_t* data, size_t size, const std::string& name) {
  size_t end_pos = size - kEndSize;
  if (le32(data + end_pos) != kEndSig || ByteReader::le(data + end_pos + 20, 2) != 0) {
    size_t lowest = end_pos > 0xFFFF ? end_pos - 0xFFFF : 0;
    for (size_t p = end_pos; p-- > lowest;) {
      if (le32(data + p) != kEndSig) continue;
      uint64_t comment = ByteReader::le(data + p + 20, 2);
      if (p + kEndSize + comment == size)
        throw CheckpointError("E_TRAILING_OR_PREFIX", "zip comment of " + std::to_string(comment) + " bytes at the end", name);
      throw CheckpointError("E_TRAILING_OR_PREFIX",
                            std::to_string(size - p - kEndSize) + " bytes after the end of central directory at offset " + std::to_string(p), name);
    }
    throw CheckpointError("E_TRUNCATED", "no end of central directory record (truncated save?)", name);
  }
  ByteReader end(data + end_pos, kEndSize, name, "E_TRUNCATED", end_pos);
  end.u32("signature");
  uint64_t disk = end.u16("disk number"), cd_disk = end.u16("central directory disk");
  uint64_t count_disk = end.u16("entries on disk");
  Directory dir;
  dir.count = end.u16("entry count");
  dir.size = end.u32("central directory size");
  dir.offset = end.u32("central directory offset");
  dir.tail_start = end_pos;
  if (disk != 0 || cd_disk != 0) throw CheckpointError("E_ZIP64", "multi-disk archives are not supported", name);
  if (count_disk != dir.count) throw CheckpointError("E_ZIP64", "entry counts disagree in the end record", name);
  return dir;
}

// The ZIP64 end record and locator, when present: they replace the end record's sentinels.
void read_zip64_end(const uint8_t* data, const std::string& name, Directory& dir) {
  const size_t end_pos = dir.tail_start;
  const bool needs_zip64 = dir.count == 0xFFFF || dir.size == 0xFFFFFFFFu || dir.offset == 0xFFFFFFFFu;
  if (end_pos >= kZip64LocatorSize && le32(data + end_pos - kZip64LocatorSize) == kZip64LocatorSig) {
    size_t loc_pos = end_pos - kZip64LocatorSize;
    ByteReader loc(data + loc_pos, kZip64LocatorSize, name, "E_ZIP64", loc_pos);
    loc.u32("signature");
    uint32_t z_disk = loc.u32("zip64 end disk");
    uint64_t z_offset = loc.u64("zip64 end offset");
    uint32_t disks = loc.u32("disk count");
    if (z_disk != 0 || disks != 1) throw CheckpointError("E_ZIP64", "zip64 locator names another disk", name);
    if (loc_pos < kZip64EndSize || z_offset != loc_pos - kZip64EndSize)
      throw CheckpointError("E_ZIP64", "zip64 end record offset " + std::to_string(z_offset) + " is not right before the locator", name);
    ByteReader z(data + z_offset, kZip64EndSize, name, "E_ZIP64", z_offset);
    if (z.u32("signature") != kZip64EndSig) throw CheckpointError("E_ZIP64", "bad zip64 end record signature", name);
    if (z.u64("zip64 end record size") != kZip64EndSize - 12)
      throw CheckpointError("E_ZIP64", "zip64 end record has extensible data", name);
    z.u16("version made by");
    z.u16("version needed");
    if (z.u32("disk") != 0 || z.u32("central directory disk") != 0)
      throw CheckpointError("E_ZIP64", "multi-disk archives are not supported", name);
    uint64_t z_count_disk = z.u64("entries on disk"), z_count = z.u64("entry count");
    uint64_t z_cd_size = z.u64("central directory size"), z_cd_offset = z.u64("central directory offset");
    if (z_count_disk != z_count) throw CheckpointError("E_ZIP64", "entry counts disagree in the zip64 end record", name);
    if ((dir.count != 0xFFFF && dir.count != z_count) || (dir.size != 0xFFFFFFFFu && dir.size != z_cd_size) ||
        (dir.offset != 0xFFFFFFFFu && dir.offset != z_cd_offset))
      throw CheckpointError("E_ZIP64", "end record and zip64 end record disagree", name);
    dir.count = z_count;
    dir.size = z_cd_size;
    dir.offset = z_cd_offset;
    dir.tail_start = static_cast<size_t>(z_offset);
  } else if (needs_zip64) {
    throw CheckpointError("E_ZIP64", "end record holds 0xFFFF.. sentinels but there is no zip64 locator", name);
  }
}

// The entry cap, and the central directory between the entries and the end records.
void check_directory_bounds(const Directory& dir, size_t size, const std::string& name, const Limits& limits) {
  if (dir.count > limits.max_entries)
    throw CheckpointError("E_LIMIT", std::to_string(dir.count) + " entries, cap is " + std::to_string(limits.max_entries), name);
  uint64_t cd_end = 0;
  if (!checked_add(dir.offset, dir.size, &cd_end) || cd_end > size)
    throw CheckpointError("E_TRUNCATED", "central directory at " + std::to_string(dir.offset) + " (+" + std::to_string(dir.size) +
                                             ") runs past the end of the file", name);
  if (cd_end > dir.tail_start) throw CheckpointError("E_OVERLAP", "central directory overlaps the end records", name);
  if (cd_end < dir.tail_start)
    throw CheckpointError("E_TRAILING_OR_PREFIX", std::to_string(dir.tail_start - cd_end) + " unaccounted bytes after the central directory", name);
}

// The central directory: one entry per record, one top folder, unique names; cd_flags per entry.
void read_central_directory(const uint8_t* data, const Directory& dir, const std::string& name, ZipArchive& archive,
                            std::vector<uint16_t>& cd_flags) {
  archive.entries.reserve(static_cast<size_t>(dir.count));
  std::unordered_set<std::string_view> names;
  ByteReader cd(data + dir.offset, static_cast<size_t>(dir.size), name + " central directory", "E_ZIP64", dir.offset);
  for (uint64_t i = 0; i < dir.count; ++i) {
    if (cd.u32("central directory signature") != kCentralSig)
      throw CheckpointError("E_ZIP64", "central directory entry " + std::to_string(i) + " has a bad signature (counts disagree?)", name);
    cd.u16("version made by");
    cd.u16("version needed");
    uint16_t flags = cd.u16("flags");
    uint16_t method = cd.u16("method");
    cd.u32("time and date");
    uint32_t crc = cd.u32("crc32");
    uint64_t compressed = cd.u32("compressed size"), uncompressed = cd.u32("size");
    uint16_t name_len = cd.u16("name length"), extra_len = cd.u16("extra length"), comment_len = cd.u16("comment length");
    uint16_t disk_start = cd.u16("disk start");
    cd.u16("internal attributes");
    cd.u32("external attributes");
    uint64_t header_offset = cd.u32("local header offset");
    std::string entry_name(cd.take_view(name_len, "entry name"));
    ByteReader extras(cd.take(extra_len, "extra field"), extra_len, entry_name, "E_ZIP64");
    cd.take(comment_len, "entry comment");

    check_name(entry_name, name);
    bool zip64 = false, fb = false;
    read_extras(extras, &uncompressed, &compressed, &header_offset, &zip64, &fb);
    if (uncompressed == 0xFFFFFFFFu || compressed == 0xFFFFFFFFu || header_offset == 0xFFFFFFFFu)
      throw CheckpointError("E_ZIP64", "0xFFFFFFFF size or offset without a zip64 extra field", entry_name);
    if (disk_start != 0) throw CheckpointError("E_ZIP64", "entry starts on another disk", entry_name);
    if (flags & (kFlagEncrypted | kFlagStrongEncryption | kFlagEncryptedDirectory))
      throw CheckpointError("E_COMPRESSED", "entry is encrypted", entry_name);
    if (method != 0) throw CheckpointError("E_COMPRESSED", "entry uses compression method " + std::to_string(method) + ", only stored (0) is allowed", entry_name);
    if (compressed != uncompressed)
      throw CheckpointError("E_COMPRESSED", "stored entry with compressed size " + std::to_string(compressed) + " != size " + std::to_string(uncompressed), entry_name);
    if (comment_len != 0) throw CheckpointError("E_TRAILING_OR_PREFIX", "entry has a comment", entry_name);

    size_t slash = entry_name.find('/');
    if (slash == std::string::npos) throw CheckpointError("E_MIXED_ROOT", "entry has no top folder", entry_name);
    std::string prefix = entry_name.substr(0, slash);
    if (i == 0) archive.prefix = prefix;
    else if (prefix != archive.prefix)
      throw CheckpointError("E_MIXED_ROOT", "top folder \"" + prefix + "\" differs from \"" + archive.prefix + "\"", entry_name);

    ZipEntry entry;
    entry.name = std::move(entry_name);
    entry.header_offset = header_offset;
    entry.size = uncompressed;
    entry.crc = crc;
    archive.entries.push_back(std::move(entry));
    cd_flags.push_back(flags);
  }
  if (!cd.at_end())
    throw CheckpointError("E_ZIP64", std::to_string(cd.remaining()) + " bytes left in the central directory after " + std::to_string(dir.count) + " entries (counts disagree)", name);
  for (auto& e : archive.entries) {
    e.record = e.name.substr(archive.prefix.size() + 1);
    if (!names.insert(e.name).second) throw CheckpointError("E_DUP_NAME", "duplicate entry name", e.name);
  }
}

// Each entry's local header, data and descriptor, against the central directory.
std::vector<Extent> read_local_records(const uint8_t* data, size_t size, const Directory& dir,
                                       const std::vector<uint16_t>& cd_flags, const ZipOptions& options,
                                       ZipArchive& archive) {
  std::vector<Extent> extents;
  size_t unaligned = 0;
  std::string first_unaligned;
  for (size_t i = 0; i < archive.entries.size(); ++i) {
    ZipEntry& e = archive.entries[i];
    if (e.header_offset >= size) throw CheckpointError("E_RECORD_OOB", "local header offset " + std::to_string(e.header_offset) + " is past the end of the file", e.name);
    if (e.header_offset >= dir.offset) throw CheckpointError("E_OVERLAP", "local header at " + std::to_string(e.header_offset) + " lies inside the central directory", e.name);
    ByteReader local(data + e.header_offset, static_cast<size_t>(size - e.header_offset), e.name, "E_RECORD_OOB", e.header_offset);
    if (local.u32("local header signature") != kLocalSig)
      throw CheckpointError("E_HEADER_MISMATCH", "no local header at offset " + std::to_string(e.header_offset), e.name);
    local.u16("version needed");
    uint16_t flags = local.u16("flags");
    uint16_t method = local.u16("method");
    local.u32("time and date");
    uint32_t crc = local.u32("crc32");
    uint64_t compressed = local.u32("compressed size"), uncompressed = local.u32("size");
    uint16_t name_len = local.u16("name length"), extra_len = local.u16("extra length");
    std::string_view local_name = local.take_view(name_len, "entry name");
    ByteReader extras(local.take(extra_len, "extra field"), extra_len, e.name, "E_HEADER_MISMATCH");
    if (flags != cd_flags[i] || method != 0 || local_name != e.name)
      throw CheckpointError("E_HEADER_MISMATCH", "local header name, flags or method differ from the central directory", e.name);
    bool zip64 = false, fb = false;
    read_extras(extras, &uncompressed, &compressed, nullptr, &zip64, &fb);
    bool deferred = flags & kFlagDescriptor;
    auto agrees = [&](uint64_t local_value, uint64_t cd_value) { return local_value == cd_value || (deferred && local_value == 0); };
    if (!agrees(crc, e.crc) || !agrees(compressed, e.size) || !agrees(uncompressed, e.size))
      throw CheckpointError("E_HEADER_MISMATCH", "local header crc or sizes differ from the central directory", e.name);

    e.data_offset = local.file_offset();
    uint64_t data_end = 0;
    if (!checked_add(e.data_offset, e.size, &data_end) || data_end > size)
      throw CheckpointError("E_RECORD_OOB", "data at " + std::to_string(e.data_offset) + " (+" + std::to_string(e.size) + " bytes) runs past the end of the file", e.name);
    if (data_end > dir.offset) throw CheckpointError("E_OVERLAP", "data runs into the central directory", e.name);
    e.data = data + e.data_offset;
    uint64_t entry_end = data_end;
    if (deferred) {
      ByteReader desc(data + data_end, static_cast<size_t>(dir.offset - data_end), e.name, "E_HEADER_MISMATCH", data_end);
      if (desc.remaining() >= 4 && le32(data + data_end) == kDescriptorSig) desc.u32("descriptor signature");
      uint32_t d_crc = desc.u32("descriptor crc32");
      bool wide = zip64 || e.size >= 0xFFFFFFFFu;
      uint64_t d_compressed = wide ? desc.u64("descriptor compressed size") : desc.u32("descriptor compressed size");
      uint64_t d_size = wide ? desc.u64("descriptor size") : desc.u32("descriptor size");
      if (d_crc != e.crc || d_compressed != e.size || d_size != e.size)
        throw CheckpointError("E_HEADER_MISMATCH", "data descriptor differs from the central directory", e.name);
      entry_end = desc.file_offset();
    }
    if (e.data_offset % kRecordAlignment != 0 || !fb) {
      std::string why = "data at offset " + std::to_string(e.data_offset) + " is not 64-byte aligned by an FB extra field";
      if (options.canonical) throw CheckpointError("E_ALIGN", why, e.name);
      if (e.data_offset % kRecordAlignment != 0 && unaligned++ == 0) first_unaligned = e.name + ": " + why;
    }
    extents.push_back({e.header_offset, entry_end, i});
  }
  if (unaligned > 0)  // one warning for the archive (Python's zipfile aligns none), not one per record
    archive.warnings.push_back(first_unaligned +
                               (unaligned > 1 ? " (and " + std::to_string(unaligned - 1) + " more records)" : ""));
  return extents;
}

// The entries tile [0, central directory) with no gaps and no overlaps.
void check_tiling(std::vector<Extent> extents, const Directory& dir, const std::string& name, const ZipArchive& archive) {
  std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) { return a.begin < b.begin; });
  uint64_t cursor = 0;
  for (const Extent& x : extents) {
    const std::string& entry = archive.entries[x.index].name;
    if (x.begin < cursor) throw CheckpointError("E_OVERLAP", "entry at offset " + std::to_string(x.begin) + " overlaps the previous entry (ends at " + std::to_string(cursor) + ")", entry);
    if (x.begin > cursor)
      throw CheckpointError("E_TRAILING_OR_PREFIX", std::to_string(x.begin - cursor) + " unaccounted bytes at offset " + std::to_string(cursor) +
                                                        (cursor == 0 ? " before the first entry" : " between entries"), entry);
    cursor = x.end;
  }
  if (cursor != dir.offset)
    throw CheckpointError("E_TRAILING_OR_PREFIX", std::to_string(dir.offset - cursor) + " unaccounted bytes before the central directory", name);
}

// The CRC32 of every entry (large ones deferred to the reader when options say so).
void check_crcs(const std::string& name, const ZipOptions& options, ZipArchive& archive) {
  size_t zero_crc = 0, nonempty = 0;
  for (auto& e : archive.entries) {
    if (e.size == 0) continue;
    ++nonempty;
    bool defer = options.defer_crc_at_least > 0 && e.size >= options.defer_crc_at_least;
    if (e.crc == 0) {
      // A stored zero on data whose CRC is not zero: written with CRCs disabled.
      if (defer || crc32_update(0, e.data, static_cast<size_t>(e.size)) != 0) ++zero_crc;
      continue;
    }
    if (defer) {
      e.crc_deferred = true;
      continue;
    }
    uint32_t actual = crc32_update(0, e.data, static_cast<size_t>(e.size));
    if (actual != e.crc) throw crc_mismatch(e, actual);
  }
  if (zero_crc > 0) {
    if (zero_crc != nonempty)
      throw CheckpointError("E_CRC", std::to_string(zero_crc) + " of " + std::to_string(nonempty) + " entries have a zero crc (mixed zero and nonzero crcs)", name);
    if (!options.allow_zero_crc)
      throw CheckpointError("E_CRC", "every crc is zero (saved with compute_crc32=False); not accepted by this policy", name);
    archive.crc_disabled = true;
    archive.warnings.push_back(name + ": every crc is zero; contents not checked");
  }
}

}  // namespace

ZipArchive read_zip(const uint8_t* data, size_t size, const std::string& name, const Limits& limits,
                    const ZipOptions& options) {
  check_start(data, size, name, limits);
  Directory dir = read_end_record(data, size, name);
  read_zip64_end(data, name, dir);
  check_directory_bounds(dir, size, name, limits);
  ZipArchive archive;
  std::vector<uint16_t> cd_flags;
  read_central_directory(data, dir, name, archive, cd_flags);
  check_tiling(read_local_records(data, size, dir, cd_flags, options, archive), dir, name, archive);
  check_crcs(name, options, archive);
  return archive;
}

}  // namespace sla::checkpoint::pt
