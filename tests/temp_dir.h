// Scaffolding for tests that write files: a fresh folder of their own, removed with everything in
// it at the end of the test, and a listing of what the code under test left in it.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>

namespace sla::test {

// A new folder under the system temp folder ($TMPDIR or /tmp), "<prefix>_XXXXXX" made unique by
// mkdtemp (mode 0700); removed, contents included, by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "sla_test") {
    std::string name = (std::filesystem::temp_directory_path() / (prefix + "_XXXXXX")).string();
    if (::mkdtemp(name.data()) == nullptr) throw std::runtime_error("cannot create a temp folder " + name);
    path = name;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // <folder>/<name>.
  std::filesystem::path operator/(const std::filesystem::path& name) const { return std::filesystem::path(path) / name; }

  std::string path;
};

// Every entry below dir, at any depth, as a path relative to dir; a symlink is listed under its
// own name, never followed or resolved. Empty when dir does not exist.
inline std::set<std::string> entries_under(const std::filesystem::path& dir) {
  std::set<std::string> out;
  if (!std::filesystem::exists(dir)) return out;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir))
    out.insert(entry.path().lexically_relative(dir).string());
  return out;
}

}  // namespace sla::test
