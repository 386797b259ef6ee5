#include "sla/checkpoint/pickle_reader.h"

#include "pt_builder.h"

#include <catch.hpp>

#include <map>

using namespace sla::checkpoint;
using namespace sla::checkpoint::test;

namespace {

// Storages "0".."9" of 16 float32 elements each, handed out once per key.
struct Storages {
  std::map<std::string, std::shared_ptr<const pt::Storage>> made;
  std::vector<float> bytes = std::vector<float>(16, 1.5f);

  std::shared_ptr<const pt::Storage> operator()(const std::string& key, pt::DType dtype, uint64_t numel) {
    auto& s = made[key];
    if (!s) {
      auto storage = std::make_shared<pt::Storage>();
      storage->key = key;
      storage->dtype = dtype;
      storage->numel = numel;
      storage->bytes = reinterpret_cast<const uint8_t*>(bytes.data());
      s = storage;
    }
    return s;
  }
};

pt::ValuePtr run(const Pickle& p, Storages& storages) {
  pt::StorageResolver resolve = [&](const std::string& k, pt::DType d, uint64_t n) { return storages(k, d, n); };
  return pt::read_pickle(p.bytes.data(), p.bytes.size(), "archive/data.pkl", pt::Limits{}, resolve);
}
pt::ValuePtr run(const Pickle& p) {
  Storages storages;
  return run(p, storages);
}
std::string code(const Pickle& p) {
  return code_of([&] { run(p); });
}
std::string error(const Pickle& p) {
  return error_of([&] { run(p); });
}

}  // namespace

TEST_CASE("pickle: the plain values torch.save emits") {
  Pickle p;
  p.proto(2).op('}').put(0).op('(');
  p.str("int").op('J').u32(0xFFFFFFFFu);                      // BININT -1
  p.str("big").op(0x8a).u8(6).raw(std::string("\0\0\0\0\0\x01", 6));  // LONG1 2^40
  p.str("neg").op(0x8a).u8(1).u8(0xff);                       // LONG1 -1
  p.str("u16").op('M').u8(0x34).u8(0x12);
  p.str("f").op('G').raw(std::string("\x3f\xc9\x99\x99\x99\x99\x99\x9a", 8));  // 0.2
  p.str("list").op(']').op('(').op('N').op(0x88).op(0x89).op('e');
  p.str("tuple").op('K').u8(1).op('K').u8(2).op(0x86);
  p.str("unicode").str("caf\xc3\xa9");
  p.op('u').stop();
  pt::ValuePtr v = run(p);
  REQUIRE(v->kind == pt::Value::Kind::Dict);
  CHECK(v->get("int")->integer == -1);
  CHECK(v->get("big")->integer == (int64_t(1) << 40));
  CHECK(v->get("neg")->integer == -1);
  CHECK(v->get("u16")->integer == 0x1234);
  CHECK(v->get("f")->real == 0.2);
  CHECK(v->get("list")->items.size() == 3);
  CHECK(v->get("list")->items[1]->boolean);
  CHECK(v->get("tuple")->kind == pt::Value::Kind::Tuple);
  CHECK(v->get("unicode")->text == "caf\xc3\xa9");
  CHECK(v->entries.size() == 8);
  CHECK(v->entries[0].first->text == "int");  // insertion order kept
}

TEST_CASE("pickle: tensors, shared storages, and the protocol 4 opcodes") {
  Pickle p;
  p.proto(4).op(0x95).u64(0).op('}').op(0x94).op('(');
  p.op(0x8c).u8(1).raw("a").tensor1d("0", 4);
  p.op(0x8c).u8(1).raw("b").tensor1d("0", 4);
  p.op(0x8c).u8(1).raw("g").op(0x8c).u8(5).raw("torch").op(0x8c).u8(12).raw("FloatStorage").op(0x93);
  p.op('u').stop();
  // STACK_GLOBAL resolves the storage class, but a global is no value to store in a dict.
  CHECK(code(p) == "E_TYPE");

  Pickle ok;
  ok.proto(4).op('}').op(0x94).op('(');
  ok.op(0x8c).u8(1).raw("a").tensor1d("0", 4).op(0x94);
  ok.op(0x8c).u8(1).raw("b").tensor1d("0", 4);
  ok.op(0x8c).u8(1).raw("c").op('h').u8(1);  // the same tensor again through the memo
  ok.op('u').stop();
  Storages storages;
  pt::ValuePtr v = run(ok, storages);
  const auto& a = *v->get("a")->tensor;
  const auto& b = *v->get("b")->tensor;
  CHECK(a.dtype == pt::DType::Float32);
  CHECK(a.shape == std::vector<int64_t>{4});
  CHECK(a.strides == std::vector<int64_t>{1});
  CHECK(a.storage == b.storage);                        // shared storage stays shared
  CHECK(v->get("c")->tensor == v->get("a")->tensor);    // the same tensor object
  CHECK(a.element(3) == 1.5);
}

TEST_CASE("pickle: the state_dict OrderedDict with _metadata BUILD is accepted") {
  Pickle p;
  p.proto(2).global("collections", "OrderedDict").put(0).op(')').op('R').put(1);
  p.str("w").tensor1d("0", 2).op('s');
  p.op('}').str("_metadata").get(0).op(')').op('R').str("").op('}').str("version").int1(1).op('s').op('s').op('s').op('b').stop();
  pt::ValuePtr v = run(p);
  CHECK(v->ordered_dict);
  CHECK(v->entries.size() == 1);

  Pickle plain;  // BUILD onto a plain dict
  plain.proto(2).op('}').op('}').str("_metadata").op('}').op('s').op('b').stop();
  CHECK(code(plain) == "E_REDUCE");
  Pickle other;  // BUILD with other state
  other.proto(2).global("collections", "OrderedDict").op(')').op('R').op('}').str("__class__").op('}').op('s').op('b').stop();
  CHECK(code(other) == "E_REDUCE");
}

TEST_CASE("pickle: protocol and opcode allowlist") {
  CHECK(code(Pickle().proto(1).op('N').stop()) == "E_PICKLE_OPCODE");
  CHECK(code(Pickle().proto(6).op('N').stop()) == "E_PICKLE_OPCODE");
  CHECK(code(Pickle().op('N').stop()) == "E_PICKLE_OPCODE");  // no PROTO
  CHECK(code(Pickle().proto(2).op(0x95).u64(1).op('N').stop()) == "E_PICKLE_OPCODE");  // FRAME in protocol 2
  CHECK(code(Pickle().proto(2).op(0x8c).u8(1).raw("a").stop()) == "E_PICKLE_OPCODE");
  for (uint8_t op : {uint8_t('i'), uint8_t('o'), uint8_t(0x81), uint8_t(0x92), uint8_t('B'), uint8_t('C'), uint8_t('S'),
                     uint8_t('V'), uint8_t('I'), uint8_t('L'), uint8_t(0x82), uint8_t(0x8b), uint8_t(0x96), uint8_t(0x97), uint8_t('P'), uint8_t('0')})
    CHECK(code(Pickle().proto(4).op(op).stop()) == "E_PICKLE_OPCODE");
  CHECK(error(Pickle().proto(2).op('i').stop()) == "E_PICKLE_OPCODE: opcode 0x69 is not accepted (opcode at offset 2) in archive/data.pkl");
}

TEST_CASE("pickle: globals outside the allowlist are never resolved") {
  CHECK(error(Pickle().proto(2).global("posix", "system").stop()) == "E_GLOBAL: global posix.system is not allowed (opcode at offset 2) in archive/data.pkl");
  for (auto [module, name] : std::vector<std::pair<std::string, std::string>>{
           {"builtins", "eval"}, {"torch.jit._pickle", "restore_type_tag"}, {"__main__", "X"}, {"torch._utils", "_rebuild_sparse_tensor"},
           {"torch._utils", "_rebuild_tensor_v3"}, {"torch._tensor", "_rebuild_from_type_v2"}, {"torch", "FakeStorage"},
           {"torch", "UntypedStorage"}, {"collections", "Counter"}, {"torch._utils", "_rebuild_parameter"}})
    CHECK(code(Pickle().proto(2).global(module, name).stop()) == "E_GLOBAL");
  CHECK(code(Pickle().proto(4).str("os").str("system").op(0x93).stop()) == "E_GLOBAL");
  CHECK(code(Pickle().proto(2).op('c').raw(std::string(300, 'a')).stop()) == "E_PICKLE_FRAMING");
}

TEST_CASE("pickle: REDUCE only on the allowlisted rebuilds") {
  CHECK(code(Pickle().proto(2).global("collections", "OrderedDict").int1(1).op(0x85).op('R').stop()) == "E_REDUCE");
  CHECK(code(Pickle().proto(2).str("f").op(')').op('R').stop()) == "E_REDUCE");
  CHECK(code(Pickle().proto(2).global("torch", "FloatStorage").op(')').op('R').stop()) == "E_REDUCE");
  CHECK(code(Pickle().proto(2).global("collections", "OrderedDict").op(']').op('R').stop()) == "E_REDUCE");
}

TEST_CASE("pickle: framing") {
  CHECK(code(Pickle()) == "E_PICKLE_FRAMING");
  CHECK(code(Pickle().proto(2).op('N')) == "E_PICKLE_FRAMING");
  CHECK(code(Pickle().proto(2).op('N').stop().op('N')) == "E_PICKLE_FRAMING");
  CHECK(code(Pickle().proto(2).op('N').stop().proto(2).op('N').stop()) == "E_PICKLE_FRAMING");
  CHECK(code(Pickle().proto(4).op(0x95).u64(1000).op('N').stop()) == "E_PICKLE_FRAMING");
  CHECK(code(Pickle().proto(2).op('J').u8(1)) == "E_PICKLE_FRAMING");
}

TEST_CASE("pickle: empty MARK groups") {
  CHECK(run(Pickle().proto(2).op('(').op('t').stop())->items.empty());
  CHECK(run(Pickle().proto(2).op(']').op('(').op('e').stop())->items.empty());
  CHECK(run(Pickle().proto(2).op('}').op('(').op('u').stop())->entries.empty());
}

TEST_CASE("pickle: stack, marks and memo") {
  CHECK(code(Pickle().proto(2).op(0x85).stop()) == "E_PICKLE_STACK");
  CHECK(code(Pickle().proto(2).op('}').op('u').stop()) == "E_PICKLE_STACK");            // SETITEMS without MARK
  CHECK(code(Pickle().proto(2).op('N').op('N').stop()) == "E_PICKLE_STACK");
  CHECK(code(Pickle().proto(2).op('(').op('N').stop()) == "E_PICKLE_STACK");            // open MARK at STOP
  CHECK(code(Pickle().proto(2).op('N').op('(').op(0x85).stop()) == "E_PICKLE_STACK");   // no reaching below a MARK
  CHECK(code(Pickle().proto(2).op('}').op('(').str("k").op('u').stop()) == "E_PICKLE_STACK");
  CHECK(code(Pickle().proto(2).get(3).stop()) == "E_MEMO");
  CHECK(code(Pickle().proto(2).op('N').op('r').u32(0xFFFFFFFFu).stop()) == "E_MEMO");
  CHECK(code(Pickle().proto(2).op(']').put(0).get(0).op('a').stop()) == "E_CONTAINER_OP");  // a list containing itself
  CHECK(code(Pickle().proto(2).op('}').put(0).str("self").get(0).op('s').stop()) == "E_CONTAINER_OP");
  // CPython's [d, d]: the same complete dict twice is fine, and stays one object.
  pt::ValuePtr twice = run(Pickle().proto(2).op(']').put(0).op('(').op('}').put(1).get(1).op('e').stop());
  CHECK(twice->items.size() == 2);
  CHECK(twice->items[0] == twice->items[1]);
  CHECK(code(Pickle().proto(2).op('}').put(0).op('N').stop()) == "E_PICKLE_STACK");
}

TEST_CASE("pickle: container operations are type-checked") {
  CHECK(code(Pickle().proto(2).op(']').str("k").str("v").op('s').stop()) == "E_CONTAINER_OP");
  CHECK(code(Pickle().proto(2).op('}').op('N').op('a').stop()) == "E_CONTAINER_OP");
  CHECK(code(Pickle().proto(2).op(')').op('(').op('N').op('e').stop()) == "E_CONTAINER_OP");
  CHECK(code(Pickle().proto(2).str("s").str("k").str("v").op('s').stop()) == "E_CONTAINER_OP");
  CHECK(code(Pickle().proto(2).op('}').op('(').str("k").op('N').str("k").op('N').op('u').stop()) == "E_CONTAINER_OP");
  CHECK(code(Pickle().proto(2).op('}').op('N').op('N').op('s').stop()) == "E_TYPE");  // None as a key
}

TEST_CASE("pickle: strings") {
  CHECK(code(Pickle().proto(2).op('X').u32(100).raw("short").stop()) == "E_STRING");
  CHECK(code(Pickle().proto(2).op('X').u32(0xFFFFFFFFu).stop()) == "E_STRING");
  CHECK(code(Pickle().proto(2).str("\xff").stop()) == "E_STRING");
  CHECK(code(Pickle().proto(2).str("\xed\xa0\x80").stop()) == "E_STRING");  // a surrogate
  CHECK(code(Pickle().proto(2).str("\xc0\xaf").stop()) == "E_STRING");      // overlong '/'
  CHECK(run(Pickle().proto(2).str("\xf0\x9f\x98\x80").stop())->text == "\xf0\x9f\x98\x80");
}

TEST_CASE("pickle: depth and size caps") {
  Pickle lists;
  lists.proto(2);
  for (int i = 0; i < 100; ++i) lists.op(']');
  for (int i = 0; i < 99; ++i) lists.op('a');
  CHECK(code(lists.stop()) == "E_DEPTH");
  Pickle marks;
  marks.proto(2);
  for (int i = 0; i < 100000; ++i) marks.op('(');
  CHECK(code(marks.stop()) == "E_DEPTH");
  // A tuple that doubles at every level: small pickle, exponential tree.
  Pickle doubling;
  doubling.proto(2).op('N');
  for (int i = 0; i < 40; ++i) doubling.put(uint8_t(i)).get(uint8_t(i)).op(0x86);
  CHECK(code(doubling.stop()) == "E_LIMIT");
}

TEST_CASE("pickle: persistent ids") {
  auto with_pid = [](Pickle pid) { return Pickle().proto(2).raw(std::string(pid.bytes.begin(), pid.bytes.end())).op('Q').stop(); };
  CHECK(code(with_pid(Pickle().str("storage"))) == "E_PERSID");
  CHECK(code(with_pid(Pickle().op('(').str("blob").global("torch", "FloatStorage").str("0").str("cpu").int1(1).op('t'))) == "E_PERSID");
  CHECK(code(with_pid(Pickle().op('(').str("storage").str("torch.FloatStorage").str("0").str("cpu").int1(1).op('t'))) == "E_PERSID");
  CHECK(code(with_pid(Pickle().op('(').str("storage").global("torch", "FloatStorage").str("../0").str("cpu").int1(1).op('t'))) == "E_PERSID");
  CHECK(code(with_pid(Pickle().op('(').str("storage").global("torch", "FloatStorage").str("0").str("http://x").int1(1).op('t'))) == "E_PERSID");
  CHECK(code(with_pid(Pickle().op('(').str("storage").global("torch", "FloatStorage").str("0").str("cpu").str("1").op('t'))) == "E_PERSID");
  CHECK(code(with_pid(Pickle().op('(').str("storage").global("torch", "FloatStorage").str("0").str("cpu").op('J').u32(0xFFFFFFFFu).op('t'))) == "E_STORAGE_SIZE");
  Pickle on_gpu;  // a tensor saved from cuda:1 loads as plain bytes
  on_gpu.proto(2).global("torch._utils", "_rebuild_tensor_v2").op('(');
  on_gpu.op('(').str("storage").global("torch", "HalfStorage").str("0").str("cuda:1").int1(2).op('t').op('Q');
  on_gpu.int1(0).int1(2).op(0x85).int1(1).op(0x85).op(0x89).global("collections", "OrderedDict").op(')').op('R').op('t').op('R').stop();
  CHECK(run(on_gpu)->tensor->dtype == pt::DType::Float16);
}

TEST_CASE("pickle: tensor geometry and argument types") {
  auto rebuild = [](const std::string& args) {
    Pickle p;
    p.proto(2).global("torch._utils", "_rebuild_tensor_v2").op('(').persid("FloatStorage", "0", 16).raw(args);
    return p.op('t').op('R').stop();
  };
  std::string hooks = std::string("c") + "collections\nOrderedDict\n" + ")R";
  Pickle five;  // no backward-hooks argument
  five.int1(0).int1(4).op(0x85).int1(1).op(0x85).op(0x89);
  CHECK(code(rebuild(std::string(five.bytes.begin(), five.bytes.end()))) == "E_TENSOR_GEOMETRY");
  auto geometry = [&](Pickle size, Pickle stride, uint8_t offset = 0) {
    Pickle a;
    a.int1(offset).raw(std::string(size.bytes.begin(), size.bytes.end())).raw(std::string(stride.bytes.begin(), stride.bytes.end())).op(0x89).raw(hooks);
    return code(rebuild(std::string(a.bytes.begin(), a.bytes.end())));
  };
  CHECK(geometry(Pickle().int1(4).int1(4).op(0x86), Pickle().int1(4).int1(1).op(0x86)) == "no error");
  CHECK(geometry(Pickle().int1(4).int1(5).op(0x86), Pickle().int1(4).int1(1).op(0x86)) == "E_TENSOR_GEOMETRY");    // 20 > 16
  CHECK(geometry(Pickle().int1(16).op(0x85), Pickle().int1(1).op(0x85), 1) == "E_TENSOR_GEOMETRY");                 // offset + 16 > 16
  CHECK(geometry(Pickle().int1(4).op(0x85), Pickle().int1(1).int1(1).op(0x86)) == "E_TENSOR_GEOMETRY");             // ranks differ
  CHECK(geometry(Pickle().op('G').raw(std::string(8, '\0')).op(0x85), Pickle().int1(1).op(0x85)) == "E_TENSOR_GEOMETRY");  // float size
  CHECK(geometry(Pickle().op('J').u32(0xFFFFFFFFu).op(0x85), Pickle().int1(1).op(0x85)) == "E_TENSOR_GEOMETRY");     // negative size
  CHECK(geometry(Pickle().int1(0).int1(200).op(0x86), Pickle().int1(255).int1(255).op(0x86)) == "no error");        // empty tensor
  CHECK(geometry(Pickle().op(0x8a).u8(8).u64(1ull << 62).op('J').u32(0x7fffffff).op(0x86),
                 Pickle().int1(1).int1(1).op(0x86)) == "E_TENSOR_GEOMETRY");                                           // numel overflows
  Pickle grad;
  grad.int1(0).int1(4).op(0x85).int1(1).op(0x85).int1(1).raw(hooks);  // requires_grad = 1, not a bool
  CHECK(code(rebuild(std::string(grad.bytes.begin(), grad.bytes.end()))) == "E_TYPE");
  Pickle meta;
  meta.int1(0).int1(4).op(0x85).int1(1).op(0x85).op(0x89).raw(hooks).op('}').str("conj").op(0x88).op('s');
  CHECK(code(rebuild(std::string(meta.bytes.begin(), meta.bytes.end()))) == "E_REDUCE");
  CHECK(code(Pickle().proto(2).op(0x8a).u8(9).raw(std::string(9, '\x01')).stop()) == "E_TYPE");
}
