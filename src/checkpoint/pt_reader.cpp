#include "pt_reader.h"

#include "byte_reader.h"
#include "crc32.h"
#include "errors.h"
#include "mapped_file.h"
#include "pickle_reader.h"
#include "text_escape.h"

#include <algorithm>
#include <map>
#include <unordered_map>

namespace sla::checkpoint::pt {

namespace {

bool all_digits(std::string_view s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos; }

std::string_view text_of(const ZipEntry& e) { return {reinterpret_cast<const char*>(e.data), static_cast<size_t>(e.size)}; }

// A short printable rendering of a record's content for messages.
std::string shown(std::string_view s) { return "\"" + quoted_value(s, 40) + "\""; }

enum class RecordKind { Pickle, Version, ByteOrder, FormatVersion, StorageAlignment, SerializationId, Storage };

RecordKind classify(const ZipEntry& e) {
  const std::string& r = e.record;
  if (r == "data.pkl") return RecordKind::Pickle;
  if (r == "version" || r == ".data/version") return RecordKind::Version;
  if (r == "byteorder") return RecordKind::ByteOrder;
  if (r == ".format_version") return RecordKind::FormatVersion;
  if (r == ".storage_alignment") return RecordKind::StorageAlignment;
  if (r == ".data/serialization_id") return RecordKind::SerializationId;
  if (r.compare(0, 5, "data/") == 0 && all_digits(std::string_view(r).substr(5))) return RecordKind::Storage;
  if (r == "constants.pkl" || r.compare(0, 5, "code/") == 0 || r == "constants" || r.compare(0, 10, ".data/ts_code") == 0)
    throw CheckpointError("E_TORCHSCRIPT", "TorchScript archive (has " + r + "); not a torch.save file", e.name);
  throw CheckpointError("E_UNKNOWN_RECORD", "unknown record", e.name);
}

int64_t parse_version(const ZipEntry& e, const Limits& limits) {
  std::string_view v = text_of(e);
  if (!v.empty() && v.back() == '\n') v.remove_suffix(1);
  if (!all_digits(v) || v.size() > 4) throw CheckpointError("E_BAD_VERSION", "version record " + shown(text_of(e)) + " is not a decimal number", e.name);
  int64_t n = std::stoll(std::string(v));
  if (n < 1 || n > limits.max_version)
    throw CheckpointError("E_BAD_VERSION", "version " + std::to_string(n) + " outside 1.." + std::to_string(limits.max_version), e.name);
  return n;
}

// Keeps the bytes of a big-endian storage swapped to little-endian.
std::shared_ptr<const void> byteswapped(const uint8_t* data, uint64_t numel, size_t itemsize) {
  auto buffer = std::make_shared<std::vector<uint8_t>>(data, data + numel * itemsize);
  for (uint64_t i = 0; i < numel; ++i) std::reverse(buffer->begin() + i * itemsize, buffer->begin() + (i + 1) * itemsize);
  return buffer;
}

PtFile read_archive(const uint8_t* data, size_t size, const std::string& name, const ReadOptions& options,
                    const std::shared_ptr<const void>& owner) {
  ZipArchive zip = read_zip(data, size, name, options.limits, options.zip);
  // Only storage bytes are left to the caller; everything parsed here is checked first.
  for (const ZipEntry& e : zip.entries) {
    if (!e.crc_deferred || classify(e) == RecordKind::Storage) continue;
    uint32_t actual = crc32_update(0, e.data, static_cast<size_t>(e.size));
    if (actual != e.crc) throw crc_mismatch(e, actual);
  }
  PtFile file;
  file.prefix = zip.prefix;
  file.warnings = zip.warnings;

  const ZipEntry* pickle = nullptr;
  const ZipEntry* version = nullptr;
  std::map<std::string, const ZipEntry*> storages;  // key -> record
  for (const ZipEntry& e : zip.entries) {
    switch (classify(e)) {
      case RecordKind::Pickle: pickle = &e; break;
      case RecordKind::Version:
        if (version) throw CheckpointError("E_BAD_VERSION", "both version and .data/version present", e.name);
        version = &e;
        break;
      case RecordKind::ByteOrder:
        if (text_of(e) != "little" && text_of(e) != "big")
          throw CheckpointError("E_BYTEORDER", "byteorder " + shown(text_of(e)) + " (expected little or big)", e.name);
        file.byteorder = std::string(text_of(e));
        break;
      case RecordKind::FormatVersion:
        if (!all_digits(text_of(e)) || e.size > 4)
          throw CheckpointError("E_META_RECORD", ".format_version " + shown(text_of(e)) + " is not a number", e.name);
        if (text_of(e) != "1") file.warnings.push_back(e.name + ": unknown .format_version " + shown(text_of(e)));
        break;
      case RecordKind::StorageAlignment: {
        uint64_t a = all_digits(text_of(e)) && e.size <= 9 ? std::stoull(std::string(text_of(e))) : 0;
        if (a == 0 || (a & (a - 1)) != 0)
          throw CheckpointError("E_META_RECORD", ".storage_alignment " + shown(text_of(e)) + " is not a power of two", e.name);
        break;
      }
      case RecordKind::SerializationId:
        if (e.size != 40 || !all_digits(text_of(e)))
          throw CheckpointError("E_META_RECORD", "serialization_id " + shown(text_of(e)) + " is not 40 digits", e.name);
        break;
      case RecordKind::Storage: storages.emplace(e.record.substr(5), &e); break;
    }
  }
  if (!pickle) throw CheckpointError("E_MISSING_RECORD", "no data.pkl record", name + ": " + zip.prefix + "/data.pkl");
  if (!version) throw CheckpointError("E_MISSING_RECORD", "no version record", name + ": " + zip.prefix + "/version");
  file.version = parse_version(*version, options.limits);
  bool swap = file.byteorder == "big";

  std::unordered_map<std::string, std::shared_ptr<const Storage>> loaded;
  auto resolve = [&](const std::string& key, DType dtype, uint64_t numel) -> std::shared_ptr<const Storage> {
    auto it = loaded.find(key);
    if (it != loaded.end()) {
      if (it->second->dtype != dtype || it->second->numel != numel)
        throw CheckpointError("E_PERSID", "storage key " + key + " reused with another dtype or numel", pickle->name);
      return it->second;
    }
    auto record = storages.find(key);
    if (record == storages.end()) throw CheckpointError("E_MISSING_RECORD", "storage record referenced by data.pkl is missing", zip.prefix + "/data/" + key);
    const ZipEntry& e = *record->second;
    size_t itemsize = dtype_info(dtype).itemsize;
    uint64_t nbytes = 0;
    if (!checked_mul(numel, itemsize, &nbytes) || nbytes != e.size)
      throw CheckpointError("E_STORAGE_SIZE", std::to_string(numel) + " " + std::string(dtype_info(dtype).name) + " elements need " +
                                                 (nbytes || numel == 0 ? std::to_string(nbytes) : std::string("too many")) + " bytes, record has " +
                                                 std::to_string(e.size), e.name);
    auto storage = std::make_shared<Storage>();
    storage->key = key;
    storage->dtype = dtype;
    storage->numel = numel;
    if (swap && itemsize > 1) {
      storage->owner = byteswapped(e.data, numel, itemsize);
      storage->bytes = static_cast<const std::vector<uint8_t>*>(storage->owner.get())->data();
    } else {
      storage->owner = owner;
      storage->bytes = e.data;
    }
    loaded.emplace(key, storage);
    return storage;
  };
  // What walking the tree may cost: the file's own size (plus slack for small files).
  Limits limits = options.limits;
  if (!checked_add(size, limits.expanded_slack_bytes, &limits.max_expanded_bytes)) limits.max_expanded_bytes = UINT64_MAX;
  file.root = read_pickle(pickle->data, static_cast<size_t>(pickle->size), pickle->name, limits, resolve);
  for (const auto& [key, e] : storages)
    if (!loaded.count(key)) throw CheckpointError("E_ORPHAN_STORAGE", "storage record is never referenced by data.pkl", e->name);
  for (const ZipEntry& e : zip.entries)
    if (e.crc_deferred && classify(e) == RecordKind::Storage) file.deferred_crcs.push_back({e, e.record.substr(5)});
  return file;
}

}  // namespace

void check_deferred_crc(const DeferredCrc& deferred, uint32_t computed) {
  if (computed != deferred.entry.crc) throw crc_mismatch(deferred.entry, computed);
}

PtFile read_pt_file(const std::string& path, const ReadOptions& options) {
  auto mapped = MappedFile::open(path, options.limits.max_file_bytes);
  try {
    PtFile file = read_archive(mapped->data(), mapped->size(), path, options, mapped);
    file.mapped = mapped;
    file.check_unchanged();
    return file;
  } catch (const CheckpointError&) {
    mapped->check_unchanged();  // zeros read from a shrunken file are not the file's fault
    throw;
  }
}

PtFile read_pt_buffer(const uint8_t* data, size_t size, const std::string& name, const ReadOptions& options) {
  return read_archive(data, size, name, options, nullptr);
}

}  // namespace sla::checkpoint::pt
