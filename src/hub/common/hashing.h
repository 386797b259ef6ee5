// The two content ids of the Hub: sha256 (LFS files, blob names in the cache) and the git blob
// sha1, sha1("blob <size>\0" + data) (regular files). Lower-case hex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace sla::hub {

// Lower-case hex of size bytes (two digits a byte): the form of every digest, signature and
// random id the client and the server write.
std::string hex_of(const void* bytes, size_t size);

std::string sha256_hex(std::string_view data);
std::string git_blob_sha1_hex(std::string_view data);

// Streamed over the file; throws std::runtime_error naming the path when it cannot be read.
std::string sha256_file_hex(const std::string& path);
std::string git_blob_sha1_file_hex(const std::string& path);

// An incremental content id, fed as bytes arrive (downloads hash while they stream, so the check
// before use costs no second read). The git sha1 needs the total size up front (its header).
class ContentHasher {
 public:
  enum class Kind { kSha256, kGitBlobSha1 };
  ContentHasher(Kind kind, uint64_t total_size);
  ~ContentHasher();
  ContentHasher(ContentHasher&&) noexcept;
  ContentHasher& operator=(ContentHasher&&) noexcept;

  void update(const void* data, size_t size);
  void restart();     // forget everything fed so far
  std::string hex();  // finishes; call once

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace sla::hub
