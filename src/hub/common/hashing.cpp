#include "hashing.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

namespace sla::hub {
namespace {

using DigestCtx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

class Digest {
 public:
  explicit Digest(const EVP_MD* md) : ctx_(EVP_MD_CTX_new(), &EVP_MD_CTX_free) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), md, nullptr) != 1) throw std::runtime_error("openssl: digest init failed");
  }
  void update(const void* data, size_t size) {
    if (EVP_DigestUpdate(ctx_.get(), data, size) != 1) throw std::runtime_error("openssl: digest update failed");
  }
  std::string hex() {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), out, &len) != 1) throw std::runtime_error("openssl: digest final failed");
    return hex_of(out, len);
  }

 private:
  DigestCtx ctx_;
};

std::string git_blob_header(uint64_t size) { return "blob " + std::to_string(size) + '\0'; }

// Feeds the whole file to digest; returns its size.
uint64_t hash_file(const std::string& path, Digest& digest) {
  std::unique_ptr<FILE, decltype(&fclose)> f(fopen(path.c_str(), "rb"), &fclose);
  if (!f) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  std::vector<char> buf(1 << 20);
  uint64_t total = 0;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), f.get())) > 0) {
    digest.update(buf.data(), n);
    total += n;
  }
  if (ferror(f.get())) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  return total;
}

uint64_t file_size(const std::string& path) {
  std::unique_ptr<FILE, decltype(&fclose)> f(fopen(path.c_str(), "rb"), &fclose);
  if (!f || fseeko(f.get(), 0, SEEK_END) != 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  return static_cast<uint64_t>(ftello(f.get()));
}

}  // namespace

std::string hex_of(const void* bytes, size_t size) {
  static const char* digits = "0123456789abcdef";
  const auto* p = static_cast<const unsigned char*>(bytes);
  std::string s(2 * size, '0');
  for (size_t i = 0; i < size; ++i) {
    s[2 * i] = digits[p[i] >> 4];
    s[2 * i + 1] = digits[p[i] & 15];
  }
  return s;
}

struct ContentHasher::State {
  Kind kind;
  uint64_t total_size;
  Digest digest;
  State(Kind k, uint64_t size) : kind(k), total_size(size), digest(k == Kind::kSha256 ? EVP_sha256() : EVP_sha1()) { begin(); }
  void begin() {
    if (kind == Kind::kGitBlobSha1) {
      std::string header = git_blob_header(total_size);
      digest.update(header.data(), header.size());
    }
  }
};

ContentHasher::ContentHasher(Kind kind, uint64_t total_size) : state_(std::make_unique<State>(kind, total_size)) {}
ContentHasher::~ContentHasher() = default;
ContentHasher::ContentHasher(ContentHasher&&) noexcept = default;
ContentHasher& ContentHasher::operator=(ContentHasher&&) noexcept = default;
void ContentHasher::update(const void* data, size_t size) { state_->digest.update(data, size); }
void ContentHasher::restart() { state_ = std::make_unique<State>(state_->kind, state_->total_size); }
std::string ContentHasher::hex() { return state_->digest.hex(); }

std::string sha256_hex(std::string_view data) {
  Digest d(EVP_sha256());
  d.update(data.data(), data.size());
  return d.hex();
}

std::string git_blob_sha1_hex(std::string_view data) {
  Digest d(EVP_sha1());
  std::string header = git_blob_header(data.size());
  d.update(header.data(), header.size());
  d.update(data.data(), data.size());
  return d.hex();
}

std::string sha256_file_hex(const std::string& path) {
  Digest d(EVP_sha256());
  hash_file(path, d);
  return d.hex();
}

std::string git_blob_sha1_file_hex(const std::string& path) {
  Digest d(EVP_sha1());
  std::string header = git_blob_header(file_size(path));
  d.update(header.data(), header.size());
  hash_file(path, d);
  return d.hex();
}

}  // namespace sla::hub
