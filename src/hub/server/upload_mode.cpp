#include "upload_mode.h"

#include <fnmatch.h>

#include <sstream>

namespace sla::hub::server {
namespace {

bool pattern_matches(const std::string& pattern, const std::string& path) {
  if (pattern.find('/') == std::string::npos) {
    std::string name = path.substr(path.rfind('/') + 1);
    return fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
  }
  std::string anchored = pattern.front() == '/' ? pattern.substr(1) : pattern;
  return fnmatch(anchored.c_str(), path.c_str(), 0) == 0;
}

}  // namespace

bool gitattributes_says_lfs(const std::string& gitattributes, const std::string& path) {
  std::istringstream lines(gitattributes);
  std::string line;
  bool lfs = false;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string pattern;
    if (!(fields >> pattern) || pattern[0] == '#' || !pattern_matches(pattern, path)) continue;
    std::string attribute;
    while (fields >> attribute) {
      if (attribute == "filter=lfs") {
        lfs = true;
      } else if (attribute.rfind("filter=", 0) == 0 || attribute == "-filter" || attribute == "!filter") {
        lfs = false;
      }
    }
  }
  return lfs;
}

bool wants_lfs(const std::string& gitattributes, const std::string& path, uint64_t size, const std::string& sample) {
  if (size == 0) return false;
  return size >= kLfsSizeThreshold || gitattributes_says_lfs(gitattributes, path) ||
         sample.find('\0') != std::string::npos;
}

}  // namespace sla::hub::server
