#include "pickle_reader.h"

#include "byte_reader.h"
#include "errors.h"
#include "text_escape.h"
#include "utf8.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <unordered_set>

namespace sla::checkpoint::pt {

namespace {

// Opcodes (CPython Lib/pickle.py names).
enum Op : uint8_t {
  MARK = '(', STOP = '.', BININT = 'J', BININT1 = 'K', BININT2 = 'M', NONE = 'N', BINPERSID = 'Q',
  REDUCE = 'R', BINUNICODE = 'X', APPEND = 'a', BUILD = 'b', GLOBAL = 'c', EMPTY_DICT = '}', APPENDS = 'e',
  BINGET = 'h', LONG_BINGET = 'j', EMPTY_LIST = ']', BINPUT = 'q', LONG_BINPUT = 'r', SETITEM = 's',
  TUPLE = 't', EMPTY_TUPLE = ')', SETITEMS = 'u', BINFLOAT = 'G',
  PROTO = 0x80, TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87, NEWTRUE = 0x88, NEWFALSE = 0x89, LONG1 = 0x8a,
  SHORT_BINUNICODE = 0x8c, STACK_GLOBAL = 0x93, MEMOIZE = 0x94, FRAME = 0x95,
};

enum class Callable { RebuildTensorV2, OrderedDict, StorageClass };

// A value under construction plus what the machine tracks about it while the pickle runs.
struct Node {
  ValuePtr value;
  uint32_t depth = 0;                // container nesting below this value
  uint64_t nodes = 1;                // values in its expanded tree
  uint64_t bytes = 0;                // string and tensor-view bytes in its expanded tree
  std::unordered_set<std::string> keys;  // dict keys seen, to refuse duplicates
  bool built = false;                // an OrderedDict that already had its BUILD
  bool shared = false;               // fetched again from the memo: frozen from then on
};
using NodePtr = std::shared_ptr<Node>;

struct Item;
struct TupleData {
  std::vector<Item> items;
  NodePtr as_node;     // converted once, on first use as a value
  uint32_t depth = 0;  // nesting below this tuple, capped like containers' (tuples nest too)
};

// What the machine's stack and memo hold: a value, or one of the internal things that only
// live inside tuples (a global, a storage) until REDUCE or BINPERSID consumes them.
struct Item {
  enum class Kind { Value, Global, Storage, Tuple } kind = Kind::Value;
  NodePtr node;
  Callable callable = Callable::OrderedDict;
  DType storage_dtype = DType::Float32;
  std::shared_ptr<const Storage> storage;
  std::shared_ptr<TupleData> tuple;

  const Value* value() const { return node->value.get(); }
  bool holds(Value::Kind k) const { return kind == Kind::Value && node->value->kind == k; }
};

class Machine {
 public:
  Machine(const uint8_t* data, size_t size, const std::string& where, const Limits& limits, const StorageResolver& resolve)
      : in_(data, size, where, "E_PICKLE_FRAMING"), where_(where), limits_(limits), resolve_(resolve) {}

  ValuePtr run() {
    if (in_.at_end()) fail("E_PICKLE_FRAMING", "empty pickle");
    uint8_t first = in_.u8("opcode");
    if (first != PROTO) fail("E_PICKLE_OPCODE", "pickle does not start with PROTO");
    protocol_ = in_.u8("protocol");
    if (protocol_ < 2 || protocol_ > 5) fail("E_PICKLE_OPCODE", "pickle protocol " + std::to_string(protocol_) + " (accepted: 2 to 5)");
    while (true) {
      if (in_.at_end()) fail("E_PICKLE_FRAMING", "pickle ends without STOP");
      op_offset_ = in_.pos();
      uint8_t op = in_.u8("opcode");
      if (op == STOP) break;
      step(op);
    }
    if (!marks_.empty() || stack_.size() != 1)
      fail("E_PICKLE_STACK", "STOP with " + std::to_string(stack_.size()) + " stack items and " + std::to_string(marks_.size()) + " open marks");
    if (!in_.at_end()) fail("E_PICKLE_FRAMING", std::to_string(in_.remaining()) + " bytes after STOP");
    return as_node(stack_.back())->value;
  }

 private:
  [[noreturn]] void fail(const char* code, const std::string& message) const {
    throw CheckpointError(code, message + " (opcode at offset " + std::to_string(op_offset_) + ")", where_);
  }

  void require_protocol4(const char* name) {
    if (protocol_ < 4) fail("E_PICKLE_OPCODE", std::string(name) + " in a protocol " + std::to_string(protocol_) + " pickle");
  }

  // ---- stack --------------------------------------------------------------------------------------
  size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Item item) {
    if (stack_.size() >= limits_.max_stack) fail("E_LIMIT", "pickle stack deeper than " + std::to_string(limits_.max_stack));
    stack_.push_back(std::move(item));
  }
  void push_value(ValuePtr v, uint64_t bytes = 0) {
    Item item;
    item.node = std::make_shared<Node>();
    item.node->value = std::move(v);
    item.node->bytes = bytes;
    push(std::move(item));
  }
  Item pop() {
    if (stack_.size() <= base()) fail("E_PICKLE_STACK", "stack underflow");
    Item item = std::move(stack_.back());
    stack_.pop_back();
    return item;
  }
  Item& top() {
    if (stack_.size() <= base()) fail("E_PICKLE_STACK", "stack underflow");
    return stack_.back();
  }
  std::vector<Item> pop_to_mark() {
    if (marks_.empty()) fail("E_PICKLE_STACK", "no MARK to pop to");
    size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Item> items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(mark)),
                            std::make_move_iterator(stack_.end()));
    stack_.resize(mark);
    return items;
  }

  // ---- values -------------------------------------------------------------------------------------
  // Records that parent now contains child; enforces the depth and node caps.
  void grow(Node& parent, const Node& child) {
    parent.depth = std::max(parent.depth, child.depth + 1);
    parent.nodes += child.nodes;
    if (parent.depth > limits_.max_depth) fail("E_DEPTH", "containers nested deeper than " + std::to_string(limits_.max_depth));
    if (parent.nodes > limits_.max_nodes) fail("E_LIMIT", "more than " + std::to_string(limits_.max_nodes) + " values");
    // Both terms are at most the cap (far below 2^63), so the sum cannot wrap before the check.
    parent.bytes += child.bytes;
    if (parent.bytes > limits_.max_expanded_bytes)
      fail("E_LIMIT", "values reached through shared references expand to more than " + std::to_string(limits_.max_expanded_bytes) +
                          " bytes of strings and tensor views (the file is far smaller)");
  }

  NodePtr as_node(const Item& item) {
    switch (item.kind) {
      case Item::Kind::Value: return item.node;
      case Item::Kind::Global: fail("E_TYPE", "a global used as a value");
      case Item::Kind::Storage: fail("E_TYPE", "a storage used outside _rebuild_tensor_v2");
      case Item::Kind::Tuple: {
        TupleData& t = *item.tuple;
        if (!t.as_node) {
          auto node = std::make_shared<Node>();
          node->value = Value::tuple();
          for (const Item& element : t.items) {
            NodePtr e = as_node(element);
            grow(*node, *e);
            node->value->items.push_back(e->value);
          }
          t.as_node = std::move(node);
        }
        return t.as_node;
      }
    }
    fail("E_TYPE", "unknown item");
  }

  Item make_tuple(std::vector<Item> items) {
    uint32_t depth = 0;
    for (const Item& element : items) {
      if (element.kind == Item::Kind::Value) depth = std::max(depth, element.node->depth + 1);
      if (element.kind == Item::Kind::Tuple) depth = std::max(depth, element.tuple->depth + 1);
    }
    if (depth > limits_.max_depth) fail("E_DEPTH", "tuples nested deeper than " + std::to_string(limits_.max_depth));
    Item item;
    item.kind = Item::Kind::Tuple;
    item.tuple = std::make_shared<TupleData>();
    item.tuple->items = std::move(items);
    item.tuple->depth = depth;
    return item;
  }

  Node& container(Item& item, Value::Kind kind, const char* op) {
    if (!item.holds(kind))
      fail("E_CONTAINER_OP", std::string(op) + " onto a " + describe(item) + " (needs a " + std::string(kind_name(kind)) + ")");
    if (item.node->shared) fail("E_CONTAINER_OP", std::string(op) + " onto a " + describe(item) + " that is referenced more than once");
    return *item.node;
  }

  std::string describe(const Item& item) const {
    switch (item.kind) {
      case Item::Kind::Value: return std::string(kind_name(item.value()->kind));
      case Item::Kind::Global: return "global";
      case Item::Kind::Storage: return "storage";
      case Item::Kind::Tuple: return "tuple";
    }
    return "?";
  }

  void append(Node& list, const Item& item) {
    NodePtr v = as_node(item);
    grow(list, *v);
    list.value->items.push_back(v->value);
  }

  void set_item(Node& dict, const Item& key_item, const Item& value_item) {
    NodePtr key = as_node(key_item);
    std::string fingerprint;
    if (key->value->kind == Value::Kind::String) fingerprint = "s" + key->value->text;
    else if (key->value->kind == Value::Kind::Int) fingerprint = "i" + std::to_string(key->value->integer);
    else fail("E_TYPE", "dict key of type " + std::string(kind_name(key->value->kind)) + " (only str and int keys)");
    grow(dict, *key);  // before the copy below: a shared 1 MiB key is paid for at every use
    if (!dict.keys.insert(fingerprint).second) fail("E_CONTAINER_OP", "duplicate dict key \"" + fingerprint.substr(1, 80) + "\"");
    NodePtr value = as_node(value_item);
    grow(dict, *value);
    dict.value->entries.emplace_back(key->value, value->value);
  }

  // ---- memo ---------------------------------------------------------------------------------------
  void memo_put(uint64_t index) {
    if (index > limits_.max_memo_index) fail("E_MEMO", "memo index " + std::to_string(index) + " above the cap " + std::to_string(limits_.max_memo_index));
    memo_[index] = top();
  }
  void memo_get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail("E_MEMO", "memo index " + std::to_string(index) + " was never set");
    const Item& item = it->second;
    // A list or dict referenced again is frozen: nothing can be added to it any more, so no
    // container can end up inside itself and the tree stays acyclic.
    if (item.holds(Value::Kind::List) || item.holds(Value::Kind::Dict)) item.node->shared = true;
    push(item);
  }

  // ---- primitives -----------------------------------------------------------------------------------
  std::string read_string(uint64_t length) {
    if (length > limits_.max_string_bytes) fail("E_STRING", "string of " + std::to_string(length) + " bytes above the cap");
    if (length > in_.remaining()) fail("E_STRING", "string of " + std::to_string(length) + " bytes, only " + std::to_string(in_.remaining()) + " left");
    std::string s(in_.take_view(length, "string"));
    if (!is_valid_utf8(s)) fail("E_STRING", "string is not valid UTF-8");
    return s;
  }
  void push_string(std::string s) {
    uint64_t bytes = s.size();
    push_value(Value::from_string(std::move(s)), bytes);
  }
  std::string read_line() {
    const uint8_t* p = in_.peek();
    for (size_t n = 0; n < in_.remaining() && n <= 256; ++n) {
      if (p[n] == '\n') {
        std::string line(in_.take_view(n, "line"));
        in_.u8("newline");
        return line;
      }
    }
    fail("E_PICKLE_FRAMING", "GLOBAL name without a newline within 256 bytes");
  }

  void push_global(const std::string& module, const std::string& name) {
    Item item;
    item.kind = Item::Kind::Global;
    std::optional<DType> storage_dtype = module == "torch" ? dtype_from_storage_class(name) : std::nullopt;
    if (module == "torch._utils" && name == "_rebuild_tensor_v2") item.callable = Callable::RebuildTensorV2;
    else if (module == "collections" && name == "OrderedDict") item.callable = Callable::OrderedDict;
    else if (storage_dtype) {
      item.callable = Callable::StorageClass;
      item.storage_dtype = *storage_dtype;
    } else {
      fail("E_GLOBAL", "global " + quoted_value(module + "." + name, 120) + " is not allowed");
    }
    push(std::move(item));
  }

  // ---- REDUCE, BINPERSID, BUILD ---------------------------------------------------------------------
  static bool is_string(const Item& i) { return i.holds(Value::Kind::String); }

  void persistent_load() {
    Item pid = pop();
    if (pid.kind != Item::Kind::Tuple || pid.tuple->items.size() != 5)
      fail("E_PERSID", "persistent id is not a 5-tuple ('storage', type, key, location, numel)");
    const auto& f = pid.tuple->items;
    if (!is_string(f[0]) || f[0].value()->text != "storage") fail("E_PERSID", "persistent id does not start with 'storage'");
    if (f[1].kind != Item::Kind::Global || f[1].callable != Callable::StorageClass) fail("E_PERSID", "persistent id type is not a storage class");
    if (!is_string(f[2]) || f[2].value()->text.empty() || f[2].value()->text.size() > 20 ||
        f[2].value()->text.find_first_not_of("0123456789") != std::string::npos)
      fail("E_PERSID", "storage key is not a decimal string");
    if (!is_string(f[3])) fail("E_PERSID", "storage location is not a string");
    const std::string& location = f[3].value()->text;
    bool cuda = location.size() > 5 && location.size() <= 10 && location.compare(0, 5, "cuda:") == 0 &&
                location.find_first_not_of("0123456789", 5) == std::string::npos;
    if (location != "cpu" && location != "cuda" && !cuda) fail("E_PERSID", "storage location \"" + location.substr(0, 40) + "\" (expected cpu or cuda:N)");
    if (!f[4].holds(Value::Kind::Int)) fail("E_PERSID", "storage numel is not an int");
    if (f[4].value()->integer < 0) fail("E_STORAGE_SIZE", "storage numel " + std::to_string(f[4].value()->integer) + " is negative");
    Item item;
    item.kind = Item::Kind::Storage;
    item.storage = resolve_(f[2].value()->text, f[1].storage_dtype, static_cast<uint64_t>(f[4].value()->integer));
    push(std::move(item));
  }

  std::vector<int64_t> int_tuple(const Item& item, const char* what) {
    if (item.kind != Item::Kind::Tuple) fail("E_TENSOR_GEOMETRY", std::string(what) + " is not a tuple");
    if (item.tuple->items.size() > limits_.max_rank) fail("E_TENSOR_GEOMETRY", std::string(what) + " has more than " + std::to_string(limits_.max_rank) + " dims");
    std::vector<int64_t> out;
    for (const Item& e : item.tuple->items) {
      if (!e.holds(Value::Kind::Int)) fail("E_TENSOR_GEOMETRY", std::string(what) + " holds a non-int");
      if (e.value()->integer < 0) fail("E_TENSOR_GEOMETRY", std::string(what) + " holds a negative value");
      out.push_back(e.value()->integer);
    }
    return out;
  }

  static bool is_empty_dict(const Item& item) { return item.holds(Value::Kind::Dict) && item.value()->entries.empty(); }

  ValuePtr rebuild_tensor(const std::vector<Item>& a) {
    if (a.size() != 6 && a.size() != 7) fail("E_TENSOR_GEOMETRY", "_rebuild_tensor_v2 with " + std::to_string(a.size()) + " arguments (expected 6 or 7)");
    if (a[0].kind != Item::Kind::Storage) fail("E_TYPE", "_rebuild_tensor_v2 argument 0 is not a storage");
    if (!a[1].holds(Value::Kind::Int)) fail("E_TYPE", "storage offset is not an int");
    if (!a[4].holds(Value::Kind::Bool)) fail("E_TYPE", "requires_grad is not a bool");
    if (!is_empty_dict(a[5])) fail("E_REDUCE", "tensor with backward hooks (argument 5 is not an empty OrderedDict)");
    if (a.size() == 7 && !is_empty_dict(a[6])) fail("E_REDUCE", "tensor metadata (conj/neg bits) is not supported");
    auto t = std::make_shared<Tensor>();
    t->storage = a[0].storage;
    t->dtype = t->storage->dtype;
    t->shape = int_tuple(a[2], "size");
    t->strides = int_tuple(a[3], "stride");
    t->requires_grad = a[4].value()->boolean;
    if (t->shape.size() != t->strides.size()) fail("E_TENSOR_GEOMETRY", "size and stride have different lengths");
    if (a[1].value()->integer < 0) fail("E_TENSOR_GEOMETRY", "negative storage offset");
    t->storage_offset = a[1].value()->integer;
    // Elements reached: offset + sum((size_i - 1) * stride_i) + 1 must fit the storage.
    uint64_t numel = 1, extent = static_cast<uint64_t>(t->storage_offset);
    bool ok = true;
    for (int64_t d : t->shape) ok &= checked_mul(numel, static_cast<uint64_t>(d), &numel);
    if (ok && numel > 0) {
      for (size_t i = 0; i < t->shape.size(); ++i) {
        uint64_t span = 0;
        ok &= checked_mul(static_cast<uint64_t>(t->shape[i] - 1), static_cast<uint64_t>(t->strides[i]), &span);
        ok &= checked_add(extent, span, &extent);
      }
      ok &= checked_add(extent, 1, &extent);
    }
    if (!ok) fail("E_TENSOR_GEOMETRY", "tensor size overflows");
    if (numel > 0 && extent > t->storage->numel)
      fail("E_TENSOR_GEOMETRY", "tensor reaches element " + std::to_string(extent) + " of a storage with " +
                                    std::to_string(t->storage->numel) + " (data/" + t->storage->key + ")");
    // A view cannot hold more distinct elements than its storage: more means stride 0 or
    // overlapping strides presenting a tiny storage as a huge tensor (torch's expand()). Nothing
    // torch.save writes for parameters looks like that, and walking it would cost numel, not bytes.
    if (numel > t->storage->numel)
      fail("E_TENSOR_GEOMETRY", "tensor of " + std::to_string(numel) + " elements views a storage of " +
                                    std::to_string(t->storage->numel) + " (stride 0 or overlapping strides; data/" + t->storage->key + ")");
    return Value::from_tensor(std::move(t));
  }

  void reduce() {
    Item args = pop();
    Item callable = pop();
    if (callable.kind != Item::Kind::Global) fail("E_REDUCE", "REDUCE on a " + describe(callable));
    if (args.kind != Item::Kind::Tuple) fail("E_REDUCE", "REDUCE arguments are not a tuple");
    switch (callable.callable) {
      case Callable::OrderedDict: {
        if (!args.tuple->items.empty()) fail("E_REDUCE", "OrderedDict called with arguments");
        auto d = Value::dict();
        d->ordered_dict = true;
        push_value(std::move(d));
        return;
      }
      case Callable::RebuildTensorV2: {
        ValuePtr tensor = rebuild_tensor(args.tuple->items);
        uint64_t bytes = tensor->tensor->numel() * dtype_info(tensor->tensor->dtype).itemsize;  // <= storage bytes
        push_value(std::move(tensor), bytes);
        return;
      }
      case Callable::StorageClass: fail("E_REDUCE", "a storage class called with REDUCE");
    }
  }

  // The one BUILD torch.save emits for this data: state_dict()'s OrderedDict gets
  // {"_metadata": OrderedDict(module versions)}. The metadata is dropped.
  void build() {
    Item state = pop();
    Item& target = top();
    bool target_ok = target.holds(Value::Kind::Dict) && target.value()->ordered_dict && !target.node->built && !target.node->shared;
    bool state_ok = state.holds(Value::Kind::Dict) && state.value()->entries.size() == 1 &&
                    state.value()->entries[0].first->kind == Value::Kind::String &&
                    state.value()->entries[0].first->text == "_metadata" &&
                    state.value()->entries[0].second->kind == Value::Kind::Dict;
    if (!target_ok || !state_ok) fail("E_REDUCE", "BUILD other than an OrderedDict's {\"_metadata\": {...}}");
    target.node->built = true;
  }

  // ---- the opcode table ---------------------------------------------------------------------------
  void step(uint8_t op) {
    switch (op) {
      case MARK:
        if (marks_.size() >= limits_.max_marks) fail("E_DEPTH", "more than " + std::to_string(limits_.max_marks) + " open MARKs");
        marks_.push_back(stack_.size());
        return;
      case NONE: push_value(Value::none()); return;
      case NEWTRUE: push_value(Value::from_bool(true)); return;
      case NEWFALSE: push_value(Value::from_bool(false)); return;
      case BININT: push_value(Value::from_int(static_cast<int32_t>(in_.u32("BININT")))); return;
      case BININT1: push_value(Value::from_int(in_.u8("BININT1"))); return;
      case BININT2: push_value(Value::from_int(in_.u16("BININT2"))); return;
      case LONG1: {
        uint8_t n = in_.u8("LONG1 length");
        if (n > 8) fail("E_TYPE", "LONG1 of " + std::to_string(n) + " bytes is beyond int64");
        const uint8_t* p = in_.take(n, "LONG1");
        uint64_t v = n ? ByteReader::le(p, n) : 0;
        if (n > 0 && n < 8 && (p[n - 1] & 0x80)) v |= ~uint64_t(0) << (8 * n);  // sign-extend
        push_value(Value::from_int(static_cast<int64_t>(v)));
        return;
      }
      case BINFLOAT: {
        const uint8_t* p = in_.take(8, "BINFLOAT");
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | p[i];  // big-endian
        double d;
        std::memcpy(&d, &bits, 8);
        push_value(Value::from_double(d));
        return;
      }
      case BINUNICODE: push_string(read_string(in_.u32("BINUNICODE length"))); return;
      case SHORT_BINUNICODE:
        require_protocol4("SHORT_BINUNICODE");
        push_string(read_string(in_.u8("SHORT_BINUNICODE length")));
        return;
      case EMPTY_DICT: push_value(Value::dict()); return;
      case EMPTY_LIST: push_value(Value::list()); return;
      case EMPTY_TUPLE: push(make_tuple({})); return;
      case TUPLE: push(make_tuple(pop_to_mark())); return;
      case TUPLE1: case TUPLE2: case TUPLE3: {
        size_t n = op - TUPLE1 + 1;
        std::vector<Item> items(n);
        for (size_t i = n; i-- > 0;) items[i] = pop();
        push(make_tuple(std::move(items)));
        return;
      }
      case APPEND: {
        Item v = pop();
        append(container(top(), Value::Kind::List, "APPEND"), v);
        return;
      }
      case APPENDS: {
        std::vector<Item> items = pop_to_mark();
        Node& list = container(top(), Value::Kind::List, "APPENDS");
        for (const Item& v : items) append(list, v);
        return;
      }
      case SETITEM: {
        Item v = pop();
        Item k = pop();
        set_item(container(top(), Value::Kind::Dict, "SETITEM"), k, v);
        return;
      }
      case SETITEMS: {
        std::vector<Item> items = pop_to_mark();
        Node& dict = container(top(), Value::Kind::Dict, "SETITEMS");
        if (items.size() % 2 != 0) fail("E_PICKLE_STACK", "SETITEMS with an odd number of items");
        for (size_t i = 0; i < items.size(); i += 2) set_item(dict, items[i], items[i + 1]);
        return;
      }
      case BINPUT: memo_put(in_.u8("BINPUT index")); return;
      case LONG_BINPUT: memo_put(in_.u32("LONG_BINPUT index")); return;
      case MEMOIZE: require_protocol4("MEMOIZE"); memo_put(memo_.size()); return;
      case BINGET: memo_get(in_.u8("BINGET index")); return;
      case LONG_BINGET: memo_get(in_.u32("LONG_BINGET index")); return;
      case GLOBAL: {
        std::string module = read_line();
        std::string name = read_line();
        push_global(module, name);
        return;
      }
      case STACK_GLOBAL: {
        require_protocol4("STACK_GLOBAL");
        Item name = pop();
        Item module = pop();
        if (!is_string(name) || !is_string(module)) fail("E_TYPE", "STACK_GLOBAL operands are not strings");
        push_global(module.value()->text, name.value()->text);
        return;
      }
      case REDUCE: reduce(); return;
      case BUILD: build(); return;
      case BINPERSID: persistent_load(); return;
      case FRAME: {
        require_protocol4("FRAME");
        uint64_t length = in_.u64("FRAME length");
        if (length > in_.remaining()) fail("E_PICKLE_FRAMING", "FRAME of " + std::to_string(length) + " bytes, only " + std::to_string(in_.remaining()) + " left");
        return;
      }
      case PROTO: fail("E_PICKLE_OPCODE", "second PROTO");
      default: {
        static const char* digits = "0123456789abcdef";
        fail("E_PICKLE_OPCODE", std::string("opcode 0x") + digits[op >> 4] + digits[op & 15] + " is not accepted");
      }
    }
  }

  ByteReader in_;
  std::string where_;
  const Limits& limits_;
  const StorageResolver& resolve_;
  uint8_t protocol_ = 0;
  size_t op_offset_ = 0;
  std::vector<Item> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Item> memo_;
};

}  // namespace

ValuePtr read_pickle(const uint8_t* data, size_t size, const std::string& where, const Limits& limits,
                     const StorageResolver& resolve_storage) {
  if (size > limits.max_pickle_bytes)
    throw CheckpointError("E_LIMIT", "pickle of " + std::to_string(size) + " bytes, cap is " + std::to_string(limits.max_pickle_bytes), where);
  return Machine(data, size, where, limits, resolve_storage).run();
}

}  // namespace sla::checkpoint::pt
