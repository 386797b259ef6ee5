#include "mapped_file.h"

#include "errors.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <mutex>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace sla::checkpoint {

namespace {

[[noreturn]] void io_error(const std::string& what, const std::string& path) {
  throw CheckpointError("E_IO", what + ": " + std::strerror(errno), path);
}

const char* file_type(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

int64_t mtime_ns(const struct stat& st) { return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec; }

// ---- the SIGBUS guard ---------------------------------------------------------------------------
// A fixed table of live mappings (no allocation and no locks in the handler). A slot is claimed
// with `used`, then published by storing `end` and `begin`; the handler reads begin/end only.
constexpr int kGuardSlots = 1024;
struct GuardSlot {
  std::atomic<bool> used{false};
  std::atomic<uintptr_t> begin{0}, end{0};  // [begin, end) page-rounded; begin 0 = not published
  std::atomic<bool> faulted{false};
};
GuardSlot g_slots[kGuardSlots];
struct sigaction g_previous {};
uintptr_t g_page = 4096;
std::once_flag g_install_once;

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(info->si_addr);
  for (GuardSlot& slot : g_slots) {
    const uintptr_t begin = slot.begin.load(std::memory_order_acquire), end = slot.end.load(std::memory_order_acquire);
    if (begin == 0 || at < begin || at >= end) continue;
    // The file shrank under the mapping: zero pages from the faulting page to the end, so the
    // access (and every later one) reads zeros; the owner reports the file as changed.
    const uintptr_t page = at & ~(g_page - 1);
    void* p = ::mmap(reinterpret_cast<void*>(page), end - page, PROT_READ, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
      slot.faulted.store(true, std::memory_order_release);
      return;
    }
    break;
  }
  // Not one of our mappings: what would have happened without us.
  if ((g_previous.sa_flags & SA_SIGINFO) && g_previous.sa_sigaction) return g_previous.sa_sigaction(sig, info, context);
  if (!(g_previous.sa_flags & SA_SIGINFO) && g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN)
    return g_previous.sa_handler(sig);
  ::signal(SIGBUS, SIG_DFL);
  ::raise(SIGBUS);  // blocked until we return; a fault would also repeat and take the default action
}

void install_guard() {
  std::call_once(g_install_once, [] {
    long page = ::sysconf(_SC_PAGESIZE);
    if (page > 0) g_page = uintptr_t(page);
    struct sigaction action {};
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGBUS, &action, &g_previous);
  });
}

int register_mapping(const uint8_t* data, size_t size) {
  install_guard();
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t end = (begin + size + g_page - 1) & ~(g_page - 1);
  for (int i = 0; i < kGuardSlots; ++i) {
    bool expected = false;
    if (!g_slots[i].used.compare_exchange_strong(expected, true)) continue;
    g_slots[i].faulted.store(false);
    g_slots[i].end.store(end, std::memory_order_release);
    g_slots[i].begin.store(begin, std::memory_order_release);
    return i;
  }
  return -1;
}

void unregister_mapping(int slot) {
  if (slot < 0) return;
  g_slots[slot].begin.store(0, std::memory_order_release);
  g_slots[slot].end.store(0, std::memory_order_release);
  g_slots[slot].used.store(false, std::memory_order_release);
}

}  // namespace

int open_regular_file(const std::string& path, uint64_t* size) {
  // stat first: open() itself blocks on a FIFO without a writer, and fails oddly on a socket.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int saved = errno;
    std::error_code ec;  // a dangling link (a snapshot whose blob is missing) says where it points
    if (saved == ENOENT && std::filesystem::is_symlink(std::filesystem::symlink_status(path, ec))) {
      const std::string target = std::filesystem::read_symlink(path, ec).string();
      throw CheckpointError("E_IO", "is a symbolic link to a missing file (" + target + ")", path);
    }
    errno = saved;
    io_error("cannot open", path);
  }
  if (!S_ISREG(st.st_mode)) throw CheckpointError("E_IO", std::string("is ") + file_type(st.st_mode) + ", not a regular file", path);
  // O_NONBLOCK: should the path be swapped for a FIFO after the stat, open still returns at once.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) io_error("cannot open", path);
  if (::fstat(fd, &st) != 0) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    io_error("cannot stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw CheckpointError("E_IO", std::string("is ") + file_type(st.st_mode) + ", not a regular file", path);
  }
  *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

bool entry_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(std::filesystem::symlink_status(path, ec));
}

void throw_file_changed(const std::string& path) {
  throw CheckpointError("E_CHANGED", "file changed while reading (rewritten or truncated by another process); read it again",
                        path);
}

MappedFile::MappedFile(std::string path, int fd, const uint8_t* data, size_t size, int slot)
    : path_(std::move(path)), fd_(fd), data_(data), size_(size), slot_(slot) {
  struct stat st {};
  if (::fstat(fd_, &st) == 0) mtime_ns_ = mtime_ns(st);
}

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path, uint64_t max_bytes) {
  uint64_t size = 0;
  int fd = open_regular_file(path, &size);
  if (size > max_bytes) {
    ::close(fd);
    throw CheckpointError("E_LIMIT", "file has " + std::to_string(size) + " bytes, cap is " + std::to_string(max_bytes),
                          path);
  }
  if (size == 0) return std::shared_ptr<const MappedFile>(new MappedFile(path, fd, nullptr, 0, -1));
  // MAP_POPULATE maps the page-cache pages in one go instead of one fault per page.
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    io_error("cannot map", path);
  }
  const auto* data = static_cast<const uint8_t*>(p);
  int slot = register_mapping(data, size);
  if (slot < 0) {  // more live mappings than the guard tracks: refuse rather than risk SIGBUS
    ::munmap(p, size);
    ::close(fd);
    throw CheckpointError("E_LIMIT", "more than " + std::to_string(kGuardSlots) + " files mapped at once", path);
  }
  return std::shared_ptr<const MappedFile>(new MappedFile(path, fd, data, size, slot));
}

bool MappedFile::changed() const {
  if (slot_ >= 0 && g_slots[slot_].faulted.load(std::memory_order_acquire)) return true;
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return true;
  return static_cast<uint64_t>(st.st_size) != size_ || mtime_ns(st) != mtime_ns_;
}

void MappedFile::check_unchanged() const {
  if (changed()) throw_file_changed(path_);
}

MappedFile::~MappedFile() {
  unregister_mapping(slot_);
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  ::close(fd_);
}

}  // namespace sla::checkpoint
