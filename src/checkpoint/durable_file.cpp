#include "durable_file.h"

#include "errors.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <random>
#include <sys/stat.h>
#include <unistd.h>

namespace sla::checkpoint {

namespace {

[[noreturn]] void write_error(const std::string& what, const std::string& path, int err) {
  throw CheckpointError("E_WRITE", what + (err ? std::string(": ") + std::strerror(err) : std::string()), path);
}

std::string parent_folder(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

mode_t final_mode(const std::string& path, std::optional<unsigned> new_file_mode) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) return st.st_mode & 07777;
  if (new_file_mode) return static_cast<mode_t>(*new_file_mode & 07777);
  mode_t mask = ::umask(0);
  ::umask(mask);
  return 0666 & ~mask;
}

// Closes and unlinks the temp unless released after the rename.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  }
  ~TempFile() {
    close();
    if (!released_) ::unlink(path_.c_str());
  }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  int close() {
    int rc = 0;
    if (fd_ >= 0) rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }
  void release() { released_ = true; }

 private:
  std::string path_;
  int fd_ = -1;
  bool released_ = false;
};

}  // namespace

void write_file_durably(const std::string& path, const uint8_t* data, size_t size,
                        const std::function<void(const std::string& temp_path)>& validate,
                        std::optional<unsigned> new_file_mode) {
  if (path.empty() || path.back() == '/') write_error("not a file path", path, 0);
  TempFile temp(durable_temp_path(path));
  if (temp.fd() < 0) write_error("cannot create a temp file in " + parent_folder(path), path, errno);

  for (size_t done = 0; done < size;) {
    ssize_t n = ::write(temp.fd(), data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) write_error("write failed after " + std::to_string(done) + " of " + std::to_string(size) + " bytes", path, n < 0 ? errno : ENOSPC);
    done += static_cast<size_t>(n);
  }
  // A failed fsync may have dropped the data for good (the pages are marked clean): fatal.
  if (::fsync(temp.fd()) != 0) write_error("fsync failed", path, errno);
  if (::fchmod(temp.fd(), final_mode(path, new_file_mode)) != 0) write_error("chmod failed", path, errno);
  if (temp.close() != 0) write_error("close failed", path, errno);

  try {
    validate(temp.path());
  } catch (const CheckpointError& e) {
    write_error("the written file did not validate (" + std::string(e.what()) + ")", path, 0);
  }

  if (::rename(temp.path().c_str(), path.c_str()) != 0) write_error("rename failed", path, errno);
  temp.release();
  int dir = ::open(parent_folder(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) write_error("written, but the folder cannot be opened to fsync it", path, errno);
  int rc = ::fsync(dir);
  int err = errno;
  ::close(dir);
  if (rc != 0) write_error("written, but fsync of the folder failed", path, err);
}

std::string durable_temp_path(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::random_device entropy;
  const uint64_t tag = (uint64_t(entropy()) << 32) ^ entropy() ^ uint64_t(::getpid());
  char suffix[24];
  std::snprintf(suffix, sizeof suffix, "%016llx", static_cast<unsigned long long>(tag));
  return parent_folder(path) + "/." + base + "." + suffix + ".tmp";
}

bool is_durable_temp_name(std::string_view name) {
  constexpr std::string_view kSuffix = ".tmp";
  constexpr size_t kTagLength = 16;
  // "." + at least one character + "." + 16 hex + ".tmp"
  if (name.size() < 1 + 1 + 1 + kTagLength + kSuffix.size() || name.front() != '.') return false;
  if (name.substr(name.size() - kSuffix.size()) != kSuffix) return false;
  std::string_view rest = name.substr(0, name.size() - kSuffix.size());
  if (rest[rest.size() - kTagLength - 1] != '.') return false;
  for (char c : rest.substr(rest.size() - kTagLength)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace sla::checkpoint
