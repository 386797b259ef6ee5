#include "file_util.h"

#include "sla/checkpoint/durable_file.h"
#include "sla/hub/common/hashing.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <vector>

namespace sla::hub::server {
namespace {

std::runtime_error io_error(const std::string& what, const std::string& path) {
  return std::runtime_error(what + " " + path + ": " + std::strerror(errno));
}

std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

void sync_dir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) throw io_error("cannot open folder", dir);
  sync_fd(fd.get(), dir);
}

}  // namespace

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

void make_dirs(const std::string& path) {
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    partial = path.substr(0, pos);
    if (partial.empty()) continue;
    if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) throw io_error("cannot create folder", partial);
  }
}

Fd open_temp_file(const std::string& folder, std::string& temp_path) {
  for (int attempt = 0; attempt < 16; ++attempt) {
    temp_path = sla::checkpoint::durable_temp_path(folder + "/upload");
    Fd fd(::open(temp_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (fd.get() >= 0) return fd;
    if (errno != EEXIST) throw io_error("cannot create temp file", temp_path);
  }
  throw std::runtime_error("cannot create a unique temp file in " + folder);
}

void write_at(int fd, const char* data, size_t size, uint64_t offset) {
  while (size > 0) {
    ssize_t n = ::pwrite(fd, data, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("write failed: ") + std::strerror(errno));
    }
    data += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

void BufferedFileWriter::append(const char* data, size_t size) {
  if (buffer_.size() + size > kCapacity) flush();
  if (size >= kCapacity) {
    write_at(fd_, data, size, offset_);
    offset_ += size;
    return;
  }
  buffer_.append(data, size);
}

void BufferedFileWriter::flush() {
  write_at(fd_, buffer_.data(), buffer_.size(), offset_);
  offset_ += buffer_.size();
  buffer_.clear();
}

void sync_fd(int fd, const std::string& what) {
  // A failed fsync leaves pages marked clean, so it is fatal for this write, never retried.
  if (::fsync(fd) != 0) throw io_error("fsync failed for", what);
}

void commit_temp_file(const std::string& temp_path, const std::string& path) {
  if (::rename(temp_path.c_str(), path.c_str()) != 0) {
    int saved = errno;
    ::unlink(temp_path.c_str());
    errno = saved;
    throw io_error("cannot rename into", path);
  }
  sync_dir(parent_of(path));
}

std::string write_temp_file(const std::string& folder, std::string_view data) {
  std::string temp;
  Fd fd = open_temp_file(folder, temp);
  try {
    write_at(fd.get(), data.data(), data.size(), 0);
    sync_fd(fd.get(), temp);
  } catch (...) {
    ::unlink(temp.c_str());
    throw;
  }
  return temp;
}

void write_file_atomic(const std::string& path, std::string_view data) {
  // The one durable write of the project; every file of the server root is private to it (0600).
  sla::checkpoint::write_file_durably(path, reinterpret_cast<const uint8_t*>(data.data()), data.size(),
                              [](const std::string&) {}, 0600);
}

std::string read_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw io_error("cannot open", path);
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw io_error("cannot read", path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool file_exists(const std::string& path) { return file_size_or_missing(path) >= 0; }

int64_t file_size_or_missing(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  return static_cast<int64_t>(st.st_size);
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(path.c_str());
  if (!dir) return names;
  while (const dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  ::closedir(dir);
  return names;
}

void remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    for (const auto& name : list_dir(path)) remove_tree(path + "/" + name);
    if (::rmdir(path.c_str()) != 0 && errno != ENOENT) throw io_error("cannot remove folder", path);
  } else if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    throw io_error("cannot remove", path);
  }
}

void remove_file_durably(const std::string& path) {
  if (::unlink(path.c_str()) != 0) throw io_error("cannot remove", path);
  sync_dir(parent_of(path));
}

void sync_parent_dir(const std::string& path) { sync_dir(parent_of(path)); }

int64_t seconds_since_modified(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return -1;
  std::time_t newest = st.st_mtime;
  if (S_ISDIR(st.st_mode)) {
    for (const auto& name : list_dir(path)) {
      struct stat inner {};
      if (::lstat((path + "/" + name).c_str(), &inner) == 0) newest = std::max(newest, inner.st_mtime);
    }
  }
  return std::max<int64_t>(0, static_cast<int64_t>(std::time(nullptr) - newest));
}

Fd lock_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (fd.get() < 0) throw io_error("cannot open lock file", path);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return Fd();
    throw io_error("cannot lock", path);
  }
  return fd;
}

std::string sha256_of_file(const std::string& path) { return sha256_file_hex(path); }

std::string random_hex(size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  if (RAND_bytes(raw.data(), static_cast<int>(bytes)) != 1) throw std::runtime_error("openssl: no random bytes");
  return hex_of(raw.data(), raw.size());
}

}  // namespace sla::hub::server
