#include "mapped_file.h"

#include "errors.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace slackpt {

namespace {
[[noreturn]] void io_error(const std::string& what, const std::string& path) {
  throw CheckpointError("E_IO", what + ": " + std::strerror(errno), path);
}
}  // namespace

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path, uint64_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_error("cannot open", path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    io_error("cannot stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw CheckpointError("E_IO", "not a regular file", path);
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes) {
    ::close(fd);
    throw CheckpointError("E_LIMIT", "file has " + std::to_string(size) + " bytes, cap is " + std::to_string(max_bytes),
                          path);
  }
  if (size == 0) {
    ::close(fd);
    return std::shared_ptr<const MappedFile>(new MappedFile(path, nullptr, 0));
  }
  // MAP_POPULATE maps the page-cache pages in one go instead of one fault per page.
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  int saved = errno;
  ::close(fd);
  if (p == MAP_FAILED) {
    errno = saved;
    io_error("cannot map", path);
  }
  return std::shared_ptr<const MappedFile>(new MappedFile(path, static_cast<const uint8_t*>(p), size));
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace slackpt
