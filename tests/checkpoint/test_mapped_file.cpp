// A file that shrinks while it is read (a trainer rewriting it) and inputs that are not regular
// files: the reader must report them as one error, never die of SIGBUS or block on open.
#include "sla/checkpoint/errors.h"
#include "sla/checkpoint/mapped_file.h"
#include "sla/checkpoint/pt_reader.h"
#include "sla/checkpoint/sla_state.h"
#include "sla/checkpoint/tensor_stats.h"

#include "pt_builder.h"
#include "temp_dir.h"

#include <catch.hpp>

#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <fstream>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

using namespace sla::checkpoint;
using sla::checkpoint::test::error_of;
using sla::test::TempDir;

namespace {

void write_bytes(const std::string& path, size_t size, char fill) {
  std::ofstream(path, std::ios::binary) << std::string(size, fill);
}

SlaFile one_entry(int64_t d) {
  SlaEntry e;
  e.key = std::to_string(d) + ":bf16";
  e.head_dim = d;
  e.dtype_token = "bf16";
  e.weight.shape = {d, d};
  e.bias.shape = {d};
  e.weight.values.assign(size_t(d * d), 0.5f);
  e.bias.values.assign(size_t(d), -0.25f);
  SlaFile f;
  f.entries = {e};
  return f;
}

}  // namespace

TEST_CASE("a mapped file truncated after open reads zeros and reports the change") {
  TempDir dir;
  const std::string path = dir.path + "/f.bin";
  const size_t size = 1 << 20;
  write_bytes(path, size, 'x');
  auto mapped = MappedFile::open(path, size);
  CHECK_FALSE(mapped->changed());
  REQUIRE(::truncate(path.c_str(), 4096) == 0);
  // Past the new end: without the guard this access is SIGBUS and the test process dies here.
  volatile uint8_t past = mapped->data()[size / 2];
  CHECK(past == 0);
  CHECK(mapped->data()[100] == 'x');  // before the new end, the bytes are the file's
  CHECK(mapped->data()[size - 1] == 0);
  CHECK(mapped->changed());
  std::string message = error_of([&] { mapped->check_unchanged(); });
  CHECK(message.rfind("E_CHANGED: file changed while reading", 0) == 0);
  CHECK(message.find(path) != std::string::npos);
}

TEST_CASE("a mapped file rewritten in place (same size) is reported as changed") {
  TempDir dir;
  const std::string path = dir.path + "/f.bin";
  write_bytes(path, 8192, 'x');
  auto mapped = MappedFile::open(path, 8192);
  struct timespec times[2] = {{0, UTIME_OMIT}, {12345, 0}};  // a different mtime, as any write gives
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
  CHECK(mapped->changed());
}

TEST_CASE("a .pt truncated between reading its structure and summarising its tensors") {
  // inspect's order: read_pt_file (zip, pickle), then statistics over the tensors' bytes.
  TempDir dir;
  const std::string path = dir.path + "/sla_attention.pt";
  write_sla_file(path, one_entry(512));  // a 1 MiB weight: most of the file
  pt::PtFile file = pt::read_pt_file(path);
  const pt::Value* weight = file.root->get("state")->get("512:bf16")->get("proj_l.weight");
  REQUIRE(weight != nullptr);
  REQUIRE(::truncate(path.c_str(), 1024) == 0);
  pt::TensorStats stats = pt::tensor_stats(*weight->tensor);  // reads zeros where the file was
  CHECK(stats.finite == 512 * 512);
  std::string message = error_of([&] { file.check_unchanged(); });
  CHECK(message.rfind("E_CHANGED: file changed while reading", 0) == 0);
  // and a fresh read of what is left is an ordinary, one-line refusal
  CHECK(error_of([&] { load_sla_file(path); }).rfind("E_", 0) == 0);
}

TEST_CASE("inputs that are not regular files are refused at once") {
  TempDir dir;
  const std::string fifo = dir.path + "/fifo.pt";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const std::string sock = dir.path + "/sock.pt";
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  struct Case {
    std::string path, words;
  };
  for (const Case& c : {Case{fifo, "is a FIFO"}, Case{sock, "is a socket"}, Case{"/dev/zero", "is a character device"},
                        Case{dir.path, "is a folder"}}) {
    auto start = std::chrono::steady_clock::now();
    std::string message = error_of([&] { MappedFile::open(c.path, 1 << 20); });
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
    INFO(message);
    CHECK(message.rfind("E_IO: " + c.words + ", not a regular file", 0) == 0);
    CHECK(error_of([&] { load_sla_file(c.path); }) == message);
  }
  ::close(fd);
}
