#include "pt_writer.h"

#include "crc32.h"
#include "errors.h"

#include <cstdio>
#include <cstring>
#include <map>
#include <unordered_map>

namespace sla::checkpoint::pt {

namespace {

void put16(std::vector<uint8_t>& out, uint16_t v) { out.insert(out.end(), {uint8_t(v), uint8_t(v >> 8)}); }
void put32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(uint8_t(v >> (8 * i)));
}
void put64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t(v >> (8 * i)));
}
void put_bytes(std::vector<uint8_t>& out, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  out.insert(out.end(), p, p + size);
}

// ---- data.pkl: what CPython's pickler (protocol 2) emits for torch.save --------------------------
class PickleWriter {
 public:
  explicit PickleWriter(std::vector<const Storage*>& storages) : storages_(storages) {}

  std::vector<uint8_t> encode(const Value& root) {
    out_ = {0x80, 2};  // PROTO 2
    save(root);
    out_.push_back('.');  // STOP
    return std::move(out_);
  }

 private:
  void op(uint8_t code) { out_.push_back(code); }

  // A memo opcode with its index: the one-byte form below 256, else the four-byte one.
  void memo_op(uint8_t short_code, uint8_t long_code, uint32_t index) {
    if (index < 256) {
      op(short_code);
      out_.push_back(uint8_t(index));
    } else {
      op(long_code);
      put32(out_, index);
    }
  }
  // BINPUT / LONG_BINPUT the value just pushed.
  uint32_t memoize() {
    uint32_t index = next_memo_++;
    memo_op('q', 'r', index);
    return index;
  }
  // BINGET / LONG_BINGET.
  void get(uint32_t index) { memo_op('h', 'j', index); }

  void save_int(int64_t v) {
    if (v >= 0 && v <= 0xff) {
      op('K');
      out_.push_back(uint8_t(v));
    } else if (v >= 0 && v <= 0xffff) {
      op('M');
      put16(out_, uint16_t(v));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      put32(out_, uint32_t(int32_t(v)));
    } else {
      // LONG1: the shortest little-endian two's complement that keeps the sign.
      uint8_t bytes[8];
      for (int i = 0; i < 8; ++i) bytes[i] = uint8_t(uint64_t(v) >> (8 * i));
      int n = 8;
      while (n > 1 && ((bytes[n - 1] == 0x00 && !(bytes[n - 2] & 0x80)) || (bytes[n - 1] == 0xff && (bytes[n - 2] & 0x80)))) --n;
      op(0x8a);
      out_.push_back(uint8_t(n));
      put_bytes(out_, bytes, size_t(n));
    }
  }

  void save_float(double d) {
    uint64_t bits;
    std::memcpy(&bits, &d, 8);
    op('G');
    for (int i = 7; i >= 0; --i) out_.push_back(uint8_t(bits >> (8 * i)));
  }

  void save_string_bytes(const std::string& s) {
    if (s.size() > 0xFFFFFFFFu) throw CheckpointError("E_LIMIT", "string longer than 4 GiB", "data.pkl");
    op('X');
    put32(out_, uint32_t(s.size()));
    put_bytes(out_, s.data(), s.size());
  }

  // Strings are memoized per object, like CPython: the same Value twice is a BINGET.
  void save_string(const Value& v) {
    if (reuse(&v)) return;
    save_string_bytes(v.text);
    memo_[&v] = memoize();
  }
  // The constants torch.save repeats ('storage', 'cpu') and the globals are memoized once.
  void save_constant(const std::string& s) {
    auto it = constants_.find(s);
    if (it != constants_.end()) return get(it->second);
    save_string_bytes(s);
    constants_[s] = memoize();
  }
  void save_global(const std::string& module, const std::string& name) {
    std::string key = "\n" + module + "\n" + name;
    auto it = constants_.find(key);
    if (it != constants_.end()) return get(it->second);
    op('c');
    put_bytes(out_, module.data(), module.size());
    op('\n');
    put_bytes(out_, name.data(), name.size());
    op('\n');
    constants_[key] = memoize();
  }

  bool reuse(const void* object) {
    auto it = memo_.find(object);
    if (it == memo_.end()) return false;
    get(it->second);
    return true;
  }

  // CPython batches APPENDS/SETITEMS by 1000 and uses APPEND/SETITEM for a batch of one.
  template <typename Items, typename SaveOne>
  void batched(const Items& items, uint8_t single, uint8_t many, SaveOne save_one) {
    for (size_t start = 0; start < items.size(); start += 1000) {
      size_t end = std::min(items.size(), start + 1000);
      if (end - start > 1) op('(');
      for (size_t i = start; i < end; ++i) save_one(items[i]);
      op(end - start > 1 ? many : single);
    }
  }

  void save_ordered_dict_call() {
    save_global("collections", "OrderedDict");
    op(')');  // EMPTY_TUPLE
    op('R');  // REDUCE
  }

  void save_int_tuple(const std::vector<int64_t>& values) {
    if (values.empty()) return op(')');
    if (values.size() > 3) op('(');
    for (int64_t v : values) save_int(v);
    op(values.size() > 3 ? 't' : uint8_t(0x85 + values.size() - 1));
    memoize();
  }

  void save_tensor(const Value& v) {
    if (reuse(v.tensor.get())) return;
    const Tensor& t = *v.tensor;
    if (!t.storage) throw CheckpointError("E_TYPE", "tensor without storage", "data.pkl");
    if (t.dtype != t.storage->dtype) throw CheckpointError("E_TYPE", "tensor dtype differs from its storage dtype", "data.pkl");
    save_global("torch._utils", "_rebuild_tensor_v2");
    op('(');
    // persistent id ('storage', torch.XStorage, key, 'cpu', numel), then BINPERSID
    op('(');
    save_constant("storage");
    save_global("torch", std::string(dtype_info(t.dtype).storage_class));
    auto [it, fresh] = storage_keys_.emplace(t.storage.get(), storages_.size());
    if (fresh) storages_.push_back(t.storage.get());
    save_string_bytes(std::to_string(it->second));
    memoize();
    save_constant("cpu");
    save_int(int64_t(t.storage->numel));
    op('t');
    memoize();
    op('Q');
    save_int(t.storage_offset);
    save_int_tuple(t.shape);
    save_int_tuple(t.strides);
    op(t.requires_grad ? 0x88 : 0x89);
    save_ordered_dict_call();
    memoize();
    op('t');
    memoize();
    op('R');
    memo_[v.tensor.get()] = memoize();
  }

  void save(const Value& v) {
    switch (v.kind) {
      case Value::Kind::None: return op('N');
      case Value::Kind::Bool: return op(v.boolean ? 0x88 : 0x89);
      case Value::Kind::Int: return save_int(v.integer);
      case Value::Kind::Float: return save_float(v.real);
      case Value::Kind::String: return save_string(v);
      case Value::Kind::Tensor: return save_tensor(v);
      case Value::Kind::List:
        op(']');
        memoize();
        return batched(v.items, 'a', 'e', [&](const ValuePtr& item) { save(*item); });
      case Value::Kind::Dict:
        if (v.ordered_dict) save_ordered_dict_call();
        else op('}');
        memoize();
        return batched(v.entries, 's', 'u', [&](const auto& kv) {
          save(*kv.first);
          save(*kv.second);
        });
      case Value::Kind::Tuple:
        if (reuse(&v)) return;
        if (v.items.empty()) return op(')');
        if (v.items.size() > 3) op('(');
        for (const auto& item : v.items) save(*item);
        op(v.items.size() > 3 ? 't' : uint8_t(0x85 + v.items.size() - 1));
        memo_[&v] = memoize();
        return;
    }
  }

  std::vector<uint8_t> out_;
  uint32_t next_memo_ = 0;
  std::unordered_map<const void*, uint32_t> memo_;
  std::unordered_map<std::string, uint32_t> constants_;
  std::unordered_map<const Storage*, size_t> storage_keys_;
  std::vector<const Storage*>& storages_;
};

// ---- the zip container, laid out as PyTorchStreamWriter (miniz) does ----------------------------
class ZipWriter {
 public:
  explicit ZipWriter(std::string prefix) : prefix_(std::move(prefix)) {}

  void add(const std::string& record, const uint8_t* data, size_t size) {
    std::string name = prefix_ + "/" + record;
    uint32_t crc = crc32_update(0, data, size);
    uint64_t header = out_.size();
    // getPadding: the FB field fills up to the next 64-byte boundary after header + name + 4.
    size_t start = header + 30 + name.size() + 4;
    size_t padding = (kRecordAlignment - start % kRecordAlignment) % kRecordAlignment;
    check_fits(header + 30 + name.size() + 4 + padding + size + 16);
    put32(out_, 0x04034b50);
    put16(out_, 0);       // version needed
    put16(out_, 0x0808);  // data descriptor follows, UTF-8 names
    put16(out_, 0);       // stored
    put32(out_, 0);       // time, date
    put32(out_, 0);       // crc and sizes are in the descriptor
    put32(out_, 0);
    put32(out_, 0);
    put16(out_, uint16_t(name.size()));
    put16(out_, uint16_t(4 + padding));
    put_bytes(out_, name.data(), name.size());
    out_.push_back('F');
    out_.push_back('B');
    put16(out_, uint16_t(padding));
    out_.insert(out_.end(), padding, 'Z');
    put_bytes(out_, data, size);
    put32(out_, 0x08074b50);
    put32(out_, crc);
    put32(out_, uint32_t(size));
    put32(out_, uint32_t(size));
    entries_.push_back({std::move(name), header, size, crc});
  }

  std::vector<uint8_t> finish() {
    uint64_t cd_offset = out_.size();
    for (const Entry& e : entries_) {
      put32(out_, 0x02014b50);
      put16(out_, 0);  // version made by
      put16(out_, 0);  // version needed
      put16(out_, 0x0808);
      put16(out_, 0);
      put32(out_, 0);
      put32(out_, e.crc);
      put32(out_, uint32_t(e.size));
      put32(out_, uint32_t(e.size));
      put16(out_, uint16_t(e.name.size()));
      put16(out_, 0);  // extra
      put16(out_, 0);  // comment
      put16(out_, 0);  // disk
      put16(out_, 0);  // internal attributes
      put32(out_, 0);  // external attributes
      put32(out_, uint32_t(e.header));
      put_bytes(out_, e.name.data(), e.name.size());
    }
    uint64_t cd_size = out_.size() - cd_offset;
    uint64_t zip64_end = out_.size();
    check_fits(zip64_end + 56 + 20 + 22);
    // ZIP64 end record and locator: miniz writes them for every archive torch saves.
    put32(out_, 0x06064b50);
    put64(out_, 44);
    put16(out_, 0x031e);
    put16(out_, 0x002d);
    put32(out_, 0);
    put32(out_, 0);
    put64(out_, entries_.size());
    put64(out_, entries_.size());
    put64(out_, cd_size);
    put64(out_, cd_offset);
    put32(out_, 0x07064b50);
    put32(out_, 0);
    put64(out_, zip64_end);
    put32(out_, 1);
    put32(out_, 0x06054b50);
    put16(out_, 0);
    put16(out_, 0);
    put16(out_, uint16_t(entries_.size()));
    put16(out_, uint16_t(entries_.size()));
    put32(out_, uint32_t(cd_size));
    put32(out_, uint32_t(cd_offset));
    put16(out_, 0);
    return std::move(out_);
  }

  // .data/serialization_id: 20 digits from the record names, 20 from their CRCs. torch uses
  // c10::hash here (not portable); readers check only the shape.
  std::string serialization_id() const {
    uint64_t names = 1469598103934665603ull, crcs = 1469598103934665603ull;
    for (const Entry& e : entries_) {
      for (unsigned char c : e.name) names = (names ^ c) * 1099511628211ull;
      crcs = (crcs ^ e.crc) * 1099511628211ull;
    }
    char text[41];
    std::snprintf(text, sizeof text, "%020llu%020llu", static_cast<unsigned long long>(names), static_cast<unsigned long long>(crcs));
    return text;
  }

 private:
  struct Entry {
    std::string name;
    uint64_t header;
    uint64_t size;
    uint32_t crc;
  };
  void check_fits(uint64_t end) const {
    if (end >= 0xFFFFFFFFull || entries_.size() >= 0xFFFF)
      throw CheckpointError("E_LIMIT", "file would need ZIP64 entries (over 4 GiB or 65535 records); not supported by this writer", prefix_);
  }
  std::string prefix_;
  std::vector<uint8_t> out_;
  std::vector<Entry> entries_;
};

void add_text(ZipWriter& zip, const std::string& record, const std::string& text) {
  zip.add(record, reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

}  // namespace

std::vector<uint8_t> encode_archive(const std::string& prefix, const std::vector<Record>& records) {
  ZipWriter zip(prefix);
  for (const Record& r : records) zip.add(r.name, r.data.data(), r.data.size());
  return zip.finish();
}

std::vector<uint8_t> encode_pt(const Value& root, const std::string& prefix) {
  std::vector<const Storage*> storages;
  std::vector<uint8_t> pickle = PickleWriter(storages).encode(root);
  ZipWriter zip(prefix);
  zip.add("data.pkl", pickle.data(), pickle.size());
  add_text(zip, ".format_version", "1");
  add_text(zip, ".storage_alignment", std::to_string(kRecordAlignment));
  add_text(zip, "byteorder", "little");
  for (size_t key = 0; key < storages.size(); ++key)
    zip.add("data/" + std::to_string(key), storages[key]->bytes, static_cast<size_t>(storages[key]->nbytes()));
  add_text(zip, "version", std::string(kTorchSaveVersion));
  add_text(zip, ".data/serialization_id", zip.serialization_id());
  return zip.finish();
}

}  // namespace sla::checkpoint::pt
