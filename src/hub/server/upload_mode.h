// The preupload decision the Hub makes for each file: "lfs" or "regular" (hub-protocol.md 3.2).
// LFS when the size is at least 10 MiB, when the repo's .gitattributes gives the path
// filter=lfs (the last matching line wins, as in git), or when the 512-byte sample looks binary
// (contains a NUL byte). Size-0 files are always regular. Pattern matching follows gitattributes
// closely enough for the Hub's patterns: a pattern without '/' matches the file name at any depth,
// one with '/' matches the whole path, and '*' may cross '/' there (so "saved_model/**/*" works).
#pragma once

#include <cstdint>
#include <string>

namespace sla::hub::server {

constexpr uint64_t kLfsSizeThreshold = 10ull << 20;

bool gitattributes_says_lfs(const std::string& gitattributes, const std::string& path);

bool wants_lfs(const std::string& gitattributes, const std::string& path, uint64_t size, const std::string& sample);

}  // namespace sla::hub::server
