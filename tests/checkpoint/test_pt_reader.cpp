#include "sla/checkpoint/pt_reader.h"

#include "pt_builder.h"

#include <catch.hpp>

using namespace sla::checkpoint;
using namespace sla::checkpoint::test;

namespace {

Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }

// data.pkl holding one 1-d float tensor of n elements over data/0.
Bytes tensor_pickle(uint8_t n) { return Pickle().proto(2).tensor1d("0", n).stop().bytes; }

std::string read_code(const std::vector<pt::Record>& records) {
  Bytes b = pt::encode_archive("archive", records);
  return code_of([&] { pt::read_pt_buffer(b.data(), b.size(), "f.pt"); });
}

}  // namespace

TEST_CASE("records: the minimal file and the optional meta records") {
  Bytes one = {0, 0, 0x80, 0x3f};  // 1.0f little-endian
  CHECK(read_code({{"data.pkl", tensor_pickle(1)}, {"data/0", one}, {"version", text("3\n")}}) == "no error");
  CHECK(read_code({{"data.pkl", tensor_pickle(1)}, {".format_version", text("1")}, {".storage_alignment", text("64")},
                   {"byteorder", text("little")}, {"data/0", one}, {".data/version", text("3")},
                   {".data/serialization_id", text(std::string(40, '7'))}}) == "no error");
  // C++ torch::pickle_save writes the storages before data.pkl: order does not matter.
  CHECK(read_code({{"data/0", one}, {"data.pkl", tensor_pickle(1)}, {"version", text("1")}}) == "no error");
}

TEST_CASE("records: big-endian storages are byteswapped") {
  Bytes b = pt::encode_archive("archive", {{"data.pkl", tensor_pickle(2)}, {"byteorder", text("big")}, {"data/0", {0x3f, 0x80, 0, 0, 0xc0, 0, 0, 0}},
                                           {"version", text("3\n")}});
  pt::PtFile f = pt::read_pt_buffer(b.data(), b.size(), "f.pt");
  CHECK(f.byteorder == "big");
  CHECK(f.root->tensor->element(0) == 1.0);
  CHECK(f.root->tensor->element(1) == -2.0);
}

TEST_CASE("records: missing, unknown, TorchScript, orphans and bad meta records") {
  Bytes one = {0, 0, 0x80, 0x3f};
  auto with = [&](std::vector<pt::Record> extra) {
    std::vector<pt::Record> r = {{"data.pkl", tensor_pickle(1)}, {"data/0", one}, {"version", text("3\n")}};
    r.insert(r.end(), extra.begin(), extra.end());
    return read_code(r);
  };
  CHECK(read_code({{"data/0", one}, {"version", text("3\n")}}) == "E_MISSING_RECORD");
  CHECK(read_code({{"data.pkl", tensor_pickle(1)}, {"data/0", one}}) == "E_MISSING_RECORD");
  CHECK(read_code({{"data.pkl", tensor_pickle(1)}, {"version", text("3\n")}}) == "E_MISSING_RECORD");  // data/0 referenced
  CHECK(with({{"data/1", one}}) == "E_ORPHAN_STORAGE");
  CHECK(with({{"constants.pkl", text("x")}}) == "E_TORCHSCRIPT");
  CHECK(with({{"code/__torch__.py", text("x")}}) == "E_TORCHSCRIPT");
  CHECK(with({{"extra.pkl", text("x")}}) == "E_UNKNOWN_RECORD");
  CHECK(with({{"nested.zip", text("PK")}}) == "E_UNKNOWN_RECORD");
  CHECK(with({{"byteorder", text("middle")}}) == "E_BYTEORDER");
  CHECK(with({{".storage_alignment", text("48")}}) == "E_META_RECORD");
  CHECK(with({{".format_version", text("one")}}) == "E_META_RECORD");
  CHECK(with({{".data/serialization_id", text("123")}}) == "E_META_RECORD");
  CHECK(with({{".data/version", text("3")}}) == "E_BAD_VERSION");  // two version records
  for (const char* version : {"0", "11", "x", "", "3\n\n", "-1"})
    CHECK(read_code({{"data.pkl", tensor_pickle(1)}, {"data/0", one}, {"version", text(version)}}) == "E_BAD_VERSION");
  CHECK(read_code({{"data.pkl", tensor_pickle(1)}, {"data/0", one}, {"version", text(std::string(1 << 20, '3'))}}) == "E_BAD_VERSION");
}

TEST_CASE("records: storage sizes must match numel * itemsize exactly") {
  auto sized = [](size_t bytes) {
    return read_code({{"data.pkl", tensor_pickle(2)}, {"data/0", Bytes(bytes, 0)}, {"version", text("3\n")}});
  };
  CHECK(sized(8) == "no error");
  CHECK(sized(7) == "E_STORAGE_SIZE");
  CHECK(sized(9) == "E_STORAGE_SIZE");
  CHECK(sized(0) == "E_STORAGE_SIZE");
  // one key used with two dtypes
  Pickle pair;
  pair.proto(2).tensor1d("0", 2);
  pair.global("torch._utils", "_rebuild_tensor_v2").op('(').persid("IntStorage", "0", 2).int1(0).int1(2).op(0x85).int1(1).op(0x85).op(0x89);
  pair.global("collections", "OrderedDict").op(')').op('R').op('t').op('R').op(0x86).stop();
  CHECK(read_code({{"data.pkl", pair.bytes}, {"data/0", Bytes(8, 0)}, {"version", text("3\n")}}) == "E_PERSID");
}
