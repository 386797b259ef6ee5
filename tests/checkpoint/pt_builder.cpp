#include "pt_builder.h"

#include <stdexcept>

namespace sla::checkpoint::test {

Pickle& Pickle::op(uint8_t code) {
  bytes.push_back(code);
  return *this;
}
Pickle& Pickle::raw(const std::string& s) {
  bytes.insert(bytes.end(), s.begin(), s.end());
  return *this;
}
Pickle& Pickle::u8(uint8_t v) { return op(v); }
Pickle& Pickle::u32(uint32_t v) {
  for (int i = 0; i < 4; ++i) bytes.push_back(uint8_t(v >> (8 * i)));
  return *this;
}
Pickle& Pickle::u64(uint64_t v) {
  for (int i = 0; i < 8; ++i) bytes.push_back(uint8_t(v >> (8 * i)));
  return *this;
}
Pickle& Pickle::str(const std::string& s) { return op('X').u32(uint32_t(s.size())).raw(s); }
Pickle& Pickle::global(const std::string& module, const std::string& name) { return op('c').raw(module + "\n" + name + "\n"); }
Pickle& Pickle::persid(const std::string& storage_class, const std::string& key, uint8_t numel) {
  return op('(').str("storage").global("torch", storage_class).str(key).str("cpu").int1(numel).op('t').op('Q');
}
Pickle& Pickle::tensor1d(const std::string& key, uint8_t n) {
  global("torch._utils", "_rebuild_tensor_v2").op('(');
  persid("FloatStorage", key, n);
  int1(0).int1(n).op(0x85).int1(1).op(0x85).op(0x89);
  global("collections", "OrderedDict").op(')').op('R');
  return op('t').op('R');
}

Bytes archive_with(const Bytes& pickle, const std::vector<pt::Record>& storages, const std::string& prefix) {
  std::vector<pt::Record> records{{"data.pkl", pickle}};
  for (const auto& s : storages) records.push_back(s);
  records.push_back({"version", {'3', '\n'}});
  return pt::encode_archive(prefix, records);
}

void put16(Bytes& b, size_t at, uint16_t v) {
  b.at(at) = uint8_t(v);
  b.at(at + 1) = uint8_t(v >> 8);
}
void put32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.at(at + i) = uint8_t(v >> (8 * i));
}
void put64(Bytes& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.at(at + i) = uint8_t(v >> (8 * i));
}
uint32_t get32(const Bytes& b, size_t at) {
  return uint32_t(b.at(at)) | uint32_t(b.at(at + 1)) << 8 | uint32_t(b.at(at + 2)) << 16 | uint32_t(b.at(at + 3)) << 24;
}
static uint16_t get16(const Bytes& b, size_t at) { return uint16_t(b.at(at) | b.at(at + 1) << 8); }

Layout layout_of(const Bytes& a) {
  Layout l;
  l.end = a.size() - 22;
  l.locator = l.end - 20;
  l.zip64_end = l.locator - 56;
  l.cd = get32(a, l.end + 16);
  uint16_t count = get16(a, l.end + 10);
  size_t p = l.cd;
  for (uint16_t i = 0; i < count; ++i) {
    if (get32(a, p) != 0x02014b50) throw std::runtime_error("layout_of: not an encode_archive archive");
    l.cd_entries.push_back(p);
    l.local.push_back(get32(a, p + 42));
    p += 46 + get16(a, p + 28) + get16(a, p + 30) + get16(a, p + 32);
  }
  return l;
}

Bytes insert_bytes(const Bytes& archive, size_t at, const std::string& junk) {
  Layout l = layout_of(archive);
  Bytes b(archive.begin(), archive.begin() + std::ptrdiff_t(at));
  b.insert(b.end(), junk.begin(), junk.end());
  b.insert(b.end(), archive.begin() + std::ptrdiff_t(at), archive.end());
  auto moved = [&](size_t offset) { return offset >= at ? offset + junk.size() : offset; };
  for (size_t i = 0; i < l.cd_entries.size(); ++i) put32(b, moved(l.cd_entries[i]) + 42, uint32_t(moved(l.local[i])));
  put32(b, moved(l.end) + 16, uint32_t(moved(l.cd)));
  put64(b, moved(l.zip64_end) + 48, moved(l.cd));
  put64(b, moved(l.locator) + 8, moved(l.zip64_end));
  return b;
}

Bytes rename_everywhere(Bytes archive, const std::string& from, const std::string& to) {
  if (from.size() != to.size()) throw std::runtime_error("rename_everywhere: lengths differ");
  for (size_t i = 0; i + from.size() <= archive.size(); ++i)
    if (std::equal(from.begin(), from.end(), archive.begin() + std::ptrdiff_t(i))) std::copy(to.begin(), to.end(), archive.begin() + std::ptrdiff_t(i));
  return archive;
}

}  // namespace sla::checkpoint::test
