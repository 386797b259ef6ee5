#include "sla/checkpoint/durable_file.h"

#include "pt_builder.h"
#include "temp_dir.h"

#include <catch.hpp>

#include <fstream>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <set>

using sla::checkpoint::test::code_of;
using sla::checkpoint::test::error_of;
using sla::test::entries_under;
using sla::test::TempDir;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void spit(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

void write(const std::string& path, const std::string& text) {
  sla::checkpoint::write_file_durably(path, reinterpret_cast<const uint8_t*>(text.data()), text.size(), [](const std::string&) {});
}

}  // namespace

TEST_CASE("durable write creates the file with the umask mode and leaves no temp") {
  TempDir dir;
  std::string target = dir.path + "/out.pt";
  std::string seen_temp;
  sla::checkpoint::write_file_durably(target, reinterpret_cast<const uint8_t*>("abc"), 3, [&](const std::string& temp) {
    seen_temp = temp;
    CHECK(slurp(temp) == "abc");  // validation reads the complete temp, in the same folder
  });
  CHECK(seen_temp.rfind(dir.path + "/.out.pt.", 0) == 0);
  CHECK(slurp(target) == "abc");
  struct stat st {};
  REQUIRE(::stat(target.c_str(), &st) == 0);
  mode_t mask = ::umask(0);
  ::umask(mask);
  CHECK((st.st_mode & 0777) == (0666 & ~mask));
  CHECK(entries_under(dir.path) == std::set<std::string>{"out.pt"});
}

TEST_CASE("durable write replaces an existing file and keeps its mode") {
  TempDir dir;
  std::string target = dir.path + "/out.pt";
  spit(target, "old contents");
  ::chmod(target.c_str(), 0640);
  write(target, "new");
  CHECK(slurp(target) == "new");
  struct stat st {};
  ::stat(target.c_str(), &st);
  CHECK((st.st_mode & 0777) == 0640);
  CHECK(entries_under(dir.path).size() == 1);
}

TEST_CASE("durable write: a validation failure leaves the target untouched and removes the temp") {
  TempDir dir;
  std::string target = dir.path + "/out.pt";
  spit(target, "precious");
  std::string e = error_of([&] {
    sla::checkpoint::write_file_durably(target, reinterpret_cast<const uint8_t*>("bad"), 3, [](const std::string& temp) {
      throw sla::checkpoint::CheckpointError("E_CRC", "crc mismatch", temp);
    });
  });
  CHECK(e.rfind("E_WRITE: the written file did not validate (E_CRC: crc mismatch in ", 0) == 0);
  CHECK(e.find(" in " + target) != std::string::npos);
  CHECK(slurp(target) == "precious");
  CHECK(entries_under(dir.path) == std::set<std::string>{"out.pt"});
}

TEST_CASE("durable write: unusable folders give E_WRITE naming the path") {
  TempDir dir;
  spit(dir.path + "/file", "x");
  CHECK(error_of([&] { write(dir.path + "/file/out.pt", "x"); }).rfind("E_WRITE: cannot create a temp file in " + dir.path + "/file: Not a directory", 0) == 0);
  CHECK(code_of([&] { write(dir.path + "/missing/out.pt", "x"); }) == "E_WRITE");
  CHECK(code_of([&] { write(dir.path + "/", "x"); }) == "E_WRITE");
  if (::geteuid() != 0) {  // root ignores permission bits
    std::string locked = dir.path + "/locked";
    ::mkdir(locked.c_str(), 0555);
    CHECK(code_of([&] { write(locked + "/out.pt", "x"); }) == "E_WRITE");
  }
  // rename onto a directory fails after validation: the temp must still go away.
  ::mkdir((dir.path + "/adir").c_str(), 0755);
  spit(dir.path + "/adir/keep", "k");
  CHECK(error_of([&] { write(dir.path + "/adir", "x"); }).find("rename failed") != std::string::npos);
  for (const std::string& name : entries_under(dir.path)) CHECK(name[0] != '.');  // no temp left behind
}

TEST_CASE("durable write: running out of space mid-write leaves the target untouched") {
  TempDir dir;
  std::string target = dir.path + "/out.pt";
  spit(target, "precious");
  pid_t child = ::fork();
  if (child == 0) {
    // A file size limit makes write() fail part-way, like a full disk.
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = {4096, 4096};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    std::string big(1 << 20, 'x');
    std::string code = code_of([&] { write(target, big); });
    ::_exit(code == "E_WRITE" ? 0 : 1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(slurp(target) == "precious");
  CHECK(entries_under(dir.path) == std::set<std::string>{"out.pt"});
}

TEST_CASE("durable write gives a new file the requested mode and keeps an existing file's") {
  TempDir dir;
  std::string target = dir.path + "/secret";
  sla::checkpoint::write_file_durably(target, reinterpret_cast<const uint8_t*>("k1"), 2, [](const std::string&) {}, 0600);
  struct stat st {};
  REQUIRE(::stat(target.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  ::chmod(target.c_str(), 0640);
  sla::checkpoint::write_file_durably(target, reinterpret_cast<const uint8_t*>("k2"), 2, [](const std::string&) {}, 0600);
  REQUIRE(::stat(target.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);
  CHECK(slurp(target) == "k2");
}

TEST_CASE("a killed durable write's temp name is recognised, and nothing else is") {
  TempDir dir;
  std::string seen_temp;
  sla::checkpoint::write_file_durably(dir.path + "/refs.json", reinterpret_cast<const uint8_t*>("{}"), 2,
                              [&](const std::string& temp) { seen_temp = temp.substr(temp.rfind('/') + 1); });
  CHECK(sla::checkpoint::is_durable_temp_name(seen_temp));
  // The generator that the durable write, the Hub cache and the Hub server share.
  const std::string a = sla::checkpoint::durable_temp_path("/some/folder/refs.json");
  CHECK(a.rfind("/some/folder/.refs.json.", 0) == 0);
  CHECK(sla::checkpoint::is_durable_temp_name(a.substr(a.rfind('/') + 1)));
  CHECK(a != sla::checkpoint::durable_temp_path("/some/folder/refs.json"));
  CHECK(sla::checkpoint::durable_temp_path("refs.json").rfind("./.refs.json.", 0) == 0);
  CHECK(sla::checkpoint::is_durable_temp_name(".main.0123456789abcdef.tmp"));
  CHECK_FALSE(sla::checkpoint::is_durable_temp_name("main.0123456789abcdef.tmp"));    // not hidden
  CHECK_FALSE(sla::checkpoint::is_durable_temp_name(".main.0123456789abcdeg.tmp"));   // not hex
  CHECK_FALSE(sla::checkpoint::is_durable_temp_name(".main.0123456789abcde.tmp"));    // 15 digits
  CHECK_FALSE(sla::checkpoint::is_durable_temp_name("..0123456789abcdef.tmp"));       // no target name
  CHECK_FALSE(sla::checkpoint::is_durable_temp_name(".gitattributes"));
  CHECK_FALSE(sla::checkpoint::is_durable_temp_name(".tmp"));
}
