// The strict pickle machine for data.pkl (opcode subset and globals in pt_format.h). It never
// resolves anything outside its allowlist and never executes code: globals are tags, REDUCE is
// a table of three known rebuilds, and every size, count and depth is capped.
#pragma once

#include "pt_format.h"
#include "pt_value.h"

#include <functional>
#include <memory>
#include <string>

namespace sla::checkpoint::pt {

// Hands out the storage for a persistent id ('storage', <dtype>, key, location, numel); it
// checks that the record exists and has numel * itemsize bytes. The same key must always give
// the same Storage object (shared storages stay shared).
using StorageResolver =
    std::function<std::shared_ptr<const Storage>(const std::string& key, DType dtype, uint64_t numel)>;

// where: the record name used in messages, e.g. "sla_attention/data.pkl".
ValuePtr read_pickle(const uint8_t* data, size_t size, const std::string& where, const Limits& limits,
                     const StorageResolver& resolve_storage);

}  // namespace sla::checkpoint::pt
