// Encodes a value tree as torch.save does (CPython pickler, protocol 2; torch >= 2.7 zip layout)
// so that Python torch.load(weights_only=True) loads it, including the computed-offset path that
// .format_version = 1 enables: records in torch.save's order, stored, 64-byte aligned through the
// FB extra field, a data descriptor after each record, ZIP64 end records, correct CRC32s.
#pragma once

#include "pt_value.h"

#include <cstdint>
#include <string>
#include <vector>

namespace sla::checkpoint::pt {

// prefix: the archive's top folder (torch uses the file's stem). Storages are numbered in first-
// use order; a storage shared by several tensors is written once. Throws CheckpointError (E_TYPE
// for values the format cannot hold, E_LIMIT past 4 GiB: this writer emits no ZIP64 entries).
std::vector<uint8_t> encode_pt(const Value& root, const std::string& prefix);

// The container alone: "<prefix>/<record>" entries in the given order, laid out as encode_pt
// does (stored, FB-aligned, descriptors, ZIP64 end records). Tests build hostile files with it.
struct Record {
  std::string name;
  std::vector<uint8_t> data;
};
std::vector<uint8_t> encode_archive(const std::string& prefix, const std::vector<Record>& records);

}  // namespace sla::checkpoint::pt
