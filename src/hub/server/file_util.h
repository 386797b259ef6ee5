// Small POSIX file helpers of the server: atomic writes (whole files through the project's one
// durable write, streamed uploads through temp files committed by rename), whole-file reads, folder listing and removal, an exclusive
// lock on a file, and an incremental sha256.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sla::hub::server {

// Creates every missing folder of path (like mkdir -p). Throws naming the folder.
void make_dirs(const std::string& path);

// Replaces path with data through write_file_durably (src/checkpoint): temp file beside it, fsync,
// rename, fsync of the folder; a new file gets mode 0600.
void write_file_atomic(const std::string& path, std::string_view data);

// Writes data to a fresh temp file in folder and fsyncs it; returns its path (nothing is left
// behind on failure). commit_temp_file or a rename puts it in place.
std::string write_temp_file(const std::string& folder, std::string_view data);

// Renames a fully written, fsynced temp file into place and syncs the folder.
void commit_temp_file(const std::string& temp_path, const std::string& path);

// Reads the whole file; throws naming the path when it is missing or unreadable.
std::string read_file(const std::string& path);

bool file_exists(const std::string& path);
// Size in bytes, or -1 when there is no such file.
int64_t file_size_or_missing(const std::string& path);

// A file descriptor that closes itself.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  ~Fd();
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

// Opens a fresh temp file in folder (mode 0600), named by durable_temp_path (".upload.<16 hex>.tmp"
// in src/checkpoint); returns its path through temp_path.
Fd open_temp_file(const std::string& folder, std::string& temp_path);
// Writes all of data at offset (pwrite loop); throws on error.
void write_at(int fd, const char* data, size_t size, uint64_t offset);
void sync_fd(int fd, const std::string& what);

// Collects small pieces (httplib hands request bodies over 4 KiB at a time) into large writes.
class BufferedFileWriter {
 public:
  BufferedFileWriter(int fd, uint64_t offset) : fd_(fd), offset_(offset) { buffer_.reserve(kCapacity); }
  void append(const char* data, size_t size);
  void flush();

 private:
  static constexpr size_t kCapacity = 1 << 20;
  int fd_;
  uint64_t offset_;
  std::string buffer_;
};

// Names in a folder, without "." and ".."; empty when it cannot be opened.
std::vector<std::string> list_dir(const std::string& path);
// Removes a file, or a folder and everything below it (no symlinks are followed); missing is fine.
void remove_tree(const std::string& path);
// Removes one file and fsyncs its folder, so the removal survives a crash; throws on failure.
void remove_file_durably(const std::string& path);
// fsyncs the folder that holds path.
void sync_parent_dir(const std::string& path);
// Seconds since the entry, or anything directly inside a folder, was last modified (the newest
// mtime counts); -1 when it does not exist.
int64_t seconds_since_modified(const std::string& path);

// Takes an exclusive, non-blocking flock() on path (created if missing) for the life of the Fd;
// an invalid Fd when another process holds it. Throws when the file cannot be opened.
Fd lock_file(const std::string& path);

// Streams the file through sha256; returns the hex digest.
std::string sha256_of_file(const std::string& path);

std::string random_hex(size_t bytes);

}  // namespace sla::hub::server
