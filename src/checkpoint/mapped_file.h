// A whole file mapped read-only: storages read from it are views, never copies. The mapping
// lives as long as any shared_ptr to it (tensors hold one through their storage).
//
// Hostile or busy files: only regular files are opened, and never with a blocking open (a FIFO
// would wait for a writer forever). A file that shrinks while it is mapped (a trainer rewriting
// it) would kill the process with SIGBUS on the first access past its new end: a process-wide
// SIGBUS handler, installed on first use, maps zero pages over the part of a registered mapping
// that faulted and marks it; readers then see zeros instead of dying, and changed() reports it.
// Every reader of a MappedFile must call check_unchanged() after its last read (and when a read
// fails) so that whatever the zeros made of the content is reported as "file changed while
// reading", never as a verdict on the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace sla::checkpoint {

// Opens path read-only without blocking, after checking that it is a regular file; returns the
// descriptor (O_CLOEXEC) and its size. Throws CheckpointError E_IO naming what the path is
// instead ("a FIFO", "a socket", "a character device", ...) or why it cannot be opened.
int open_regular_file(const std::string& path, uint64_t* size);

// Whether the folder holds an entry of that name, whatever it is: a dangling symbolic link, a
// FIFO, a folder: where a file is expected, these are broken files, not absent ones.
bool entry_exists(const std::string& path);

// The error every reader reports when the bytes it read were not the file's bytes throughout.
[[noreturn]] void throw_file_changed(const std::string& path);

class MappedFile {
 public:
  // Throws CheckpointError E_IO when the file cannot be opened or mapped or is not a regular
  // file, E_LIMIT above max_bytes.
  static std::shared_ptr<const MappedFile> open(const std::string& path, uint64_t max_bytes);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // True when part of the mapping faulted (the file shrank) or the file's size or mtime differ
  // from what they were at open.
  bool changed() const;
  // Throws CheckpointError E_CHANGED ("file changed while reading") when changed().
  void check_unchanged() const;

 private:
  MappedFile(std::string path, int fd, const uint8_t* data, size_t size, int slot);
  std::string path_;
  int fd_;
  const uint8_t* data_;
  size_t size_;
  int slot_;  // in the SIGBUS guard's table; -1 when not registered (empty file)
  int64_t mtime_ns_ = 0;
};

}  // namespace sla::checkpoint
