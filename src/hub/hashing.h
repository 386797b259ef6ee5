// The two content ids of the Hub: sha256 (LFS files, blob names in the cache) and the git blob
// sha1, sha1("blob <size>\0" + data) (regular files). Lower-case hex.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace slahub {

std::string sha256_hex(std::string_view data);
std::string git_blob_sha1_hex(std::string_view data);

// Streamed over the file; throws std::runtime_error naming the path when it cannot be read.
std::string sha256_file_hex(const std::string& path);
std::string git_blob_sha1_file_hex(const std::string& path);

}  // namespace slahub
