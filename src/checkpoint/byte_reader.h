// A bounded little-endian cursor over untrusted bytes. Every read is checked against the bytes
// remaining and throws CheckpointError(short_code) naming the field, the offset and the region;
// arithmetic on untrusted sizes goes through checked_add/checked_mul.
#pragma once

#include "errors.h"

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

namespace sla::checkpoint {

inline bool checked_add(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }
inline bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_mul_overflow(a, b, out); }

class ByteReader {
 public:
  // base_offset: where data sits in the file, so messages give file offsets.
  ByteReader(const uint8_t* data, size_t size, std::string where, std::string short_code = "E_TRUNCATED",
             uint64_t base_offset = 0)
      : data_(data), size_(size), where_(std::move(where)), short_code_(std::move(short_code)), base_(base_offset) {}

  size_t pos() const { return pos_; }
  size_t size() const { return size_; }
  size_t remaining() const { return size_ - pos_; }
  bool at_end() const { return pos_ == size_; }
  const uint8_t* peek() const { return data_ + pos_; }
  uint64_t file_offset() const { return base_ + pos_; }
  const std::string& where() const { return where_; }

  void seek(uint64_t pos, const char* field) {
    if (pos > size_) fail(field, pos - std::min<uint64_t>(pos, size_));
    pos_ = static_cast<size_t>(pos);
  }

  // Pointer to the next n bytes, then advance past them.
  const uint8_t* take(uint64_t n, const char* field) {
    if (n > remaining()) fail(field, n);
    const uint8_t* p = data_ + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }
  std::string_view take_view(uint64_t n, const char* field) {
    return {reinterpret_cast<const char*>(take(n, field)), static_cast<size_t>(n)};
  }

  uint8_t u8(const char* field) { return *take(1, field); }
  uint16_t u16(const char* field) { return static_cast<uint16_t>(le(take(2, field), 2)); }
  uint32_t u32(const char* field) { return static_cast<uint32_t>(le(take(4, field), 4)); }
  uint64_t u64(const char* field) { return le(take(8, field), 8); }

  [[noreturn]] void fail(const char* field, uint64_t wanted) const {
    throw CheckpointError(short_code_,
                          std::string(field) + ": needs " + std::to_string(wanted) + " bytes at offset " +
                              std::to_string(base_ + pos_) + ", " + std::to_string(remaining()) + " left",
                          where_);
  }

  static uint64_t le(const uint8_t* p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string where_;
  std::string short_code_;
  uint64_t base_;
};

}  // namespace sla::checkpoint
