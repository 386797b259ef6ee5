#include "sla/checkpoint/zip_reader.h"

#include "pt_builder.h"

#include <catch.hpp>

using namespace sla::checkpoint;
using namespace sla::checkpoint::test;

namespace {

Bytes sample() {
  return pt::encode_archive("sla_attention", {{"data.pkl", Bytes(100, 'p')},
                                              {"data/0", Bytes(64, 7)},
                                              {"data/1", Bytes(3, 9)},
                                              {"version", {'3', '\n'}}});
}

std::string read_error(const Bytes& b, const pt::ZipOptions& options = {}) {
  return error_of([&] { pt::read_zip(b.data(), b.size(), "f.pt", pt::Limits{}, options); });
}
std::string read_code(const Bytes& b) {
  std::string e = read_error(b);
  return e.substr(0, e.find(':'));
}

}  // namespace

TEST_CASE("zip reader accepts the archive layout torch.save writes") {
  Bytes b = sample();
  pt::ZipArchive zip = pt::read_zip(b.data(), b.size(), "f.pt", pt::Limits{});
  CHECK(zip.prefix == "sla_attention");
  REQUIRE(zip.entries.size() == 4);
  CHECK(zip.entries[1].record == "data/0");
  CHECK(zip.entries[1].size == 64);
  CHECK(zip.entries[1].data[0] == 7);
  for (const auto& e : zip.entries) CHECK(e.data_offset % 64 == 0);
  CHECK(zip.warnings.empty());
  CHECK(zip.find("data/1") == &zip.entries[2]);
  CHECK(zip.find("data/2") == nullptr);
}

TEST_CASE("zip reader: not a zip, legacy formats") {
  CHECK(read_code({}) == "E_NOT_ZIP");
  CHECK(read_code(Bytes(21, 'P')) == "E_NOT_ZIP");
  CHECK(read_code(Bytes(100, 'x')) == "E_NOT_ZIP");
  Bytes legacy = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  legacy.resize(64, '.');
  CHECK(read_code(legacy) == "E_LEGACY_FORMAT");
  Bytes preview(64, 0);
  std::string magic = "PYTORCH1";
  std::copy(magic.begin(), magic.end(), preview.begin());
  CHECK(read_code(preview) == "E_LEGACY_FORMAT");
  Bytes tar(1024, 0);
  std::string ustar = "ustar";
  std::copy(ustar.begin(), ustar.end(), tar.begin() + 257);
  CHECK(read_code(tar) == "E_LEGACY_FORMAT");
}

TEST_CASE("zip reader: truncated, trailing bytes, comment, prefix and gaps") {
  Bytes b = sample();
  Layout l = layout_of(b);
  CHECK(read_code(Bytes(b.begin(), b.end() - 10)) == "E_TRUNCATED");
  CHECK(read_code(Bytes(b.begin(), b.begin() + std::ptrdiff_t(l.cd))) == "E_TRUNCATED");

  Bytes trailing = b;
  trailing.push_back('!');
  CHECK(read_error(trailing) == "E_TRAILING_OR_PREFIX: 1 bytes after the end of central directory at offset " + std::to_string(l.end) + " in f.pt");

  Bytes comment = b;
  put16(comment, l.end + 20, 3);
  comment.insert(comment.end(), {'h', 'i', '!'});
  CHECK(read_code(comment) == "E_TRAILING_OR_PREFIX");

  // A local-header-looking prefix (polyglot) and junk between entries.
  CHECK(read_code(insert_bytes(b, 0, std::string("PK\x03\x04", 4) + "hidden payload")) == "E_TRAILING_OR_PREFIX");
  CHECK(read_code(insert_bytes(b, l.local[2], "junk")) == "E_TRAILING_OR_PREFIX");
  CHECK(read_code(insert_bytes(b, l.cd, "junk")) == "E_TRAILING_OR_PREFIX");
  // The surgery helper itself keeps a valid archive valid when it inserts nothing.
  CHECK(read_error(insert_bytes(b, l.cd, "")) == "no error");
}

TEST_CASE("zip reader: crc checks") {
  Bytes b = sample();
  pt::ZipArchive zip = pt::read_zip(b.data(), b.size(), "f.pt", pt::Limits{});
  Bytes flipped = b;
  flipped[zip.entries[1].data_offset + 5] ^= 1;
  std::string e = read_error(flipped);
  CHECK(e.rfind("E_CRC: crc mismatch (stored ", 0) == 0);
  CHECK(e.find(" in sla_attention/data/0") != std::string::npos);

  Layout l = layout_of(b);
  Bytes zero = b;
  for (size_t i = 0; i < l.cd_entries.size(); ++i) {
    put32(zero, l.cd_entries[i] + 16, 0);
    // the data descriptor repeats the crc: 16 bytes before the next header
    size_t descriptor = (i + 1 < l.local.size() ? l.local[i + 1] : l.cd) - 16;
    put32(zero, descriptor + 4, 0);
  }
  CHECK(read_code(zero) == "E_CRC");
  pt::ZipOptions allow;
  allow.allow_zero_crc = true;
  pt::ZipArchive relaxed = pt::read_zip(zero.data(), zero.size(), "f.pt", pt::Limits{}, allow);
  CHECK(relaxed.crc_disabled);

  Bytes mixed = b;  // one zero crc among good ones
  put32(mixed, l.cd_entries[1] + 16, 0);
  put32(mixed, l.local[2] - 16 + 4, 0);
  CHECK(read_error(mixed).find("mixed zero and nonzero") != std::string::npos);
}

TEST_CASE("zip reader: compressed, encrypted and size-lying entries") {
  Bytes b = sample();
  Layout l = layout_of(b);
  Bytes deflated = b;
  put16(deflated, l.cd_entries[1] + 10, 8);
  put16(deflated, l.local[1] + 8, 8);
  CHECK(read_error(deflated) == "E_COMPRESSED: entry uses compression method 8, only stored (0) is allowed in sla_attention/data/0");
  Bytes encrypted = b;
  put16(encrypted, l.cd_entries[0] + 8, 0x0809);
  CHECK(read_code(encrypted) == "E_COMPRESSED");
  Bytes bomb = b;  // claims 64 bytes expand to 4 GB
  put32(bomb, l.cd_entries[1] + 24, 0xF0000000u);
  CHECK(read_code(bomb) == "E_COMPRESSED");
  Bytes oob = b;  // both sizes lie, beyond the file
  put32(oob, l.cd_entries[1] + 20, 0x7FFFFFF0u);
  put32(oob, l.cd_entries[1] + 24, 0x7FFFFFF0u);
  CHECK(read_code(oob) == "E_RECORD_OOB");
}

TEST_CASE("zip reader: headers disagree, overlap, duplicates") {
  Bytes b = sample();
  Layout l = layout_of(b);
  Bytes renamed = b;  // local name differs from the central directory
  renamed[l.local[3] + 30 + std::string("sla_attention/").size()] = 'V';
  CHECK(read_code(renamed) == "E_HEADER_MISMATCH");
  Bytes flags = b;
  put16(flags, l.local[2] + 6, 0x0800);
  CHECK(read_code(flags) == "E_HEADER_MISMATCH");
  Bytes descriptor = b;
  put32(descriptor, l.local[2] - 16 + 8, 63);  // data/0's descriptor claims 63 bytes
  CHECK(read_code(descriptor) == "E_HEADER_MISMATCH");

  Bytes into_cd = b;
  put32(into_cd, l.cd_entries[2] + 42, uint32_t(l.cd + 4));
  CHECK(read_code(into_cd) == "E_OVERLAP");
  Bytes same_header = b;  // two entries claim the same bytes
  put32(same_header, l.cd_entries[2] + 42, uint32_t(l.local[1]));
  CHECK((read_code(same_header) == "E_HEADER_MISMATCH" || read_code(same_header) == "E_OVERLAP"));

  Bytes dup = pt::encode_archive("a", {{"data.pkl", {1}}, {"data/0", {2}}, {"data/0", {3}}});
  CHECK(read_error(dup) == "E_DUP_NAME: duplicate entry name in a/data/0");
}

TEST_CASE("zip reader: names from the fixed grammar under one prefix") {
  auto with_record = [](const std::string& record) { return pt::encode_archive("archive", {{"data.pkl", {1}}, {record, {2}}}); };
  CHECK(read_code(with_record("../etc/passwd")) == "E_BAD_NAME");
  CHECK(read_code(with_record("data/./0")) == "E_BAD_NAME");
  CHECK(read_code(with_record("a\\b")) == "E_BAD_NAME");
  CHECK(read_code(with_record(std::string("a\0b", 3))) == "E_BAD_NAME");
  CHECK(read_code(with_record("caf\xc3\xa9")) == "E_BAD_NAME");
  CHECK(read_code(with_record("data//0")) == "E_BAD_NAME");
  CHECK(read_code(pt::encode_archive("C:", {{"data.pkl", {1}}})) == "E_BAD_NAME");
  Bytes b = pt::encode_archive("archive", {{"data.pkl", {1}}, {"version", {'3'}}});
  CHECK(read_code(rename_everywhere(b, "archive/version", "brchive/version")) == "E_MIXED_ROOT");
  CHECK(read_code(rename_everywhere(b, "archive/data.pkl", "archive.data.pkl")) == "E_MIXED_ROOT");
  // Any prefix that fits the grammar is accepted (torch uses the file's stem).
  Bytes spaced = pt::encode_archive("my model (v2)", {{"data.pkl", {1}}});
  CHECK(read_error(spaced) == "no error");
}

TEST_CASE("zip reader: ZIP64 records must agree with the end record") {
  Bytes b = sample();
  Layout l = layout_of(b);
  Bytes count = b;
  put64(count, l.zip64_end + 32, 5);
  CHECK(read_code(count) == "E_ZIP64");
  Bytes sentinel = b;  // 0xFFFFFFFF offset and no locator
  put32(sentinel, l.end + 16, 0xFFFFFFFFu);
  put32(sentinel, l.locator, 0x12345678u);
  CHECK(read_code(sentinel) == "E_ZIP64");
  Bytes wrong_offset = b;
  put64(wrong_offset, l.locator + 8, l.zip64_end - 1);
  CHECK(read_code(wrong_offset) == "E_ZIP64");
  Bytes disks = b;
  put16(disks, l.end + 4, 1);
  CHECK(read_code(disks) == "E_ZIP64");
  Bytes counts = b;  // the end record says 3 entries, the directory holds 4
  put16(counts, l.end + 8, 3);
  put16(counts, l.end + 10, 3);
  put64(counts, l.zip64_end + 24, 3);
  put64(counts, l.zip64_end + 32, 3);
  CHECK(read_code(counts) == "E_ZIP64");
}

TEST_CASE("zip reader: caps are checked before allocating") {
  Bytes b = sample();
  pt::Limits small;
  small.max_entries = 3;
  CHECK(code_of([&] { pt::read_zip(b.data(), b.size(), "f.pt", small); }) == "E_LIMIT");
  small = pt::Limits{};
  small.max_file_bytes = 100;
  CHECK(code_of([&] { pt::read_zip(b.data(), b.size(), "f.pt", small); }) == "E_LIMIT");
}
