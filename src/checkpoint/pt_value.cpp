#include "pt_value.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace sla::checkpoint::pt {

namespace {
ValuePtr make(Value::Kind kind) {
  auto v = std::make_shared<Value>();
  v->kind = kind;
  return v;
}

double half_to_double(uint16_t h) {
  uint32_t sign = (h >> 15) & 1, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  double magnitude;
  if (exponent == 0) magnitude = std::ldexp(static_cast<double>(mantissa), -24);
  else if (exponent == 31) magnitude = mantissa ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else magnitude = std::ldexp(static_cast<double>(mantissa | 0x400), static_cast<int>(exponent) - 25);
  return sign ? -magnitude : magnitude;
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
}  // namespace

uint64_t Tensor::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

double Tensor::element(uint64_t flat_index) const {
  uint64_t offset = static_cast<uint64_t>(storage_offset);
  for (size_t i = shape.size(); i-- > 0;) {
    uint64_t d = static_cast<uint64_t>(shape[i]);
    offset += (flat_index % d) * static_cast<uint64_t>(strides[i]);
    flat_index /= d;
  }
  const uint8_t* p = storage->bytes + offset * dtype_info(dtype).itemsize;
  switch (dtype) {
    case DType::Float32: return load<float>(p);
    case DType::Float64: return load<double>(p);
    case DType::Float16: return half_to_double(load<uint16_t>(p));
    case DType::BFloat16: {
      uint32_t bits = uint32_t(load<uint16_t>(p)) << 16;
      return load<float>(reinterpret_cast<const uint8_t*>(&bits));
    }
    case DType::Int64: return static_cast<double>(load<int64_t>(p));
    case DType::Int32: return load<int32_t>(p);
    case DType::Int16: return load<int16_t>(p);
    case DType::Int8: return load<int8_t>(p);
    case DType::UInt8: return load<uint8_t>(p);
    case DType::Bool: return load<uint8_t>(p) != 0;
  }
  return 0;
}

ValuePtr Value::none() { return make(Kind::None); }
ValuePtr Value::from_bool(bool v) { auto x = make(Kind::Bool); x->boolean = v; return x; }
ValuePtr Value::from_int(int64_t v) { auto x = make(Kind::Int); x->integer = v; return x; }
ValuePtr Value::from_double(double v) { auto x = make(Kind::Float); x->real = v; return x; }
ValuePtr Value::from_string(std::string v) { auto x = make(Kind::String); x->text = std::move(v); return x; }
ValuePtr Value::list(std::vector<ValuePtr> items) { auto x = make(Kind::List); x->items = std::move(items); return x; }
ValuePtr Value::tuple(std::vector<ValuePtr> items) { auto x = make(Kind::Tuple); x->items = std::move(items); return x; }
ValuePtr Value::dict() { return make(Kind::Dict); }
ValuePtr Value::from_tensor(std::shared_ptr<const Tensor> t) { auto x = make(Kind::Tensor); x->tensor = std::move(t); return x; }

const Value* Value::get(std::string_view key) const {
  if (kind != Kind::Dict) return nullptr;
  for (const auto& [k, v] : entries)
    if (k->kind == Kind::String && k->text == key) return v.get();
  return nullptr;
}

void Value::set(std::string key, ValuePtr value) { entries.emplace_back(from_string(std::move(key)), std::move(value)); }

std::string_view kind_name(Value::Kind kind) {
  switch (kind) {
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "str";
    case Value::Kind::List: return "list";
    case Value::Kind::Tuple: return "tuple";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Tensor: return "tensor";
  }
  return "?";
}

}  // namespace sla::checkpoint::pt
