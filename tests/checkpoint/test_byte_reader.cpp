#include "sla/checkpoint/byte_reader.h"

#include "pt_builder.h"

#include <catch.hpp>

using sla::checkpoint::ByteReader;
using sla::checkpoint::test::code_of;
using sla::checkpoint::test::error_of;

TEST_CASE("byte reader reads little-endian fields in order") {
  const uint8_t data[] = {0x01, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12, 1, 0, 0, 0, 0, 0, 0, 0x80};
  ByteReader r(data, sizeof data, "t");
  CHECK(r.u8("a") == 0x01);
  CHECK(r.u16("b") == 0x1234);
  CHECK(r.u32("c") == 0x12345678u);
  CHECK(r.u64("d") == 0x8000000000000001ull);
  CHECK(r.at_end());
}

TEST_CASE("byte reader refuses to read past the end and names field, offset and region") {
  const uint8_t data[4] = {};
  ByteReader r(data, sizeof data, "sla_attention/data.pkl", "E_TRUNCATED", 100);
  r.u16("first");
  CHECK(error_of([&] { r.u32("crc32"); }) == "E_TRUNCATED: crc32: needs 4 bytes at offset 102, 2 left in sla_attention/data.pkl");
  CHECK(r.pos() == 2);  // a failed read does not move the cursor
  CHECK(code_of([&] { r.take(UINT64_MAX, "huge"); }) == "E_TRUNCATED");
  CHECK(code_of([&] { r.seek(5, "seek"); }) == "E_TRUNCATED");
  r.seek(4, "seek");
  CHECK(r.at_end());
}

TEST_CASE("byte reader uses the caller's error code") {
  ByteReader r(nullptr, 0, "central directory", "E_ZIP64");
  CHECK(code_of([&] { r.u8("x"); }) == "E_ZIP64");
}

TEST_CASE("checked arithmetic detects overflow") {
  uint64_t out = 0;
  CHECK(sla::checkpoint::checked_add(1, 2, &out));
  CHECK(out == 3);
  CHECK_FALSE(sla::checkpoint::checked_add(UINT64_MAX, 1, &out));
  CHECK(sla::checkpoint::checked_mul(1ull << 31, 1ull << 31, &out));
  CHECK_FALSE(sla::checkpoint::checked_mul(1ull << 32, 1ull << 32, &out));
}
