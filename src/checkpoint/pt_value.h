// The plain value tree a torch.save pickle decodes to, and that the writer encodes: None, bool,
// int64, double, str, list, tuple, dict (ordered entries; OrderedDict remembered) and dense
// tensors whose storages are views of the file bytes (shared storages stay shared).
#pragma once

#include "pt_format.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sla::checkpoint::pt {

// One torch storage: numel elements of dtype at bytes. owner keeps the bytes alive (the mapped
// file, or a buffer the writer's caller filled); it may be null when the caller owns the bytes.
struct Storage {
  std::string key;  // the record name data/<key> it was read from ("" before writing)
  DType dtype = DType::Float32;
  uint64_t numel = 0;
  const uint8_t* bytes = nullptr;
  std::shared_ptr<const void> owner;

  uint64_t nbytes() const { return numel * dtype_info(dtype).itemsize; }
};

struct Tensor {
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements
  int64_t storage_offset = 0;    // in elements
  std::shared_ptr<const Storage> storage;
  bool requires_grad = false;

  uint64_t numel() const;
  bool is_contiguous() const;
  // Element i (row-major over shape) read as double, whatever the dtype.
  double element(uint64_t flat_index) const;
};

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Value {
  enum class Kind { None, Bool, Int, Float, String, List, Tuple, Dict, Tensor };

  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0;
  std::string text;
  std::vector<ValuePtr> items;                          // list, tuple
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;   // dict, insertion order
  bool ordered_dict = false;                            // dict came from / is written as OrderedDict
  std::shared_ptr<const Tensor> tensor;

  static ValuePtr none();
  static ValuePtr from_bool(bool v);
  static ValuePtr from_int(int64_t v);
  static ValuePtr from_double(double v);
  static ValuePtr from_string(std::string v);
  static ValuePtr list(std::vector<ValuePtr> items = {});
  static ValuePtr tuple(std::vector<ValuePtr> items = {});
  static ValuePtr dict();
  static ValuePtr from_tensor(std::shared_ptr<const Tensor> t);

  bool is(Kind k) const { return kind == k; }
  // Dict lookup by string key; nullptr when absent or not a dict.
  const Value* get(std::string_view key) const;
  // Appends (key, value) to a dict.
  void set(std::string key, ValuePtr value);
};

std::string_view kind_name(Value::Kind kind);

}  // namespace sla::checkpoint::pt
