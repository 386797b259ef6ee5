// A whole file mapped read-only: storages read from it are views, never copies. The mapping
// lives as long as any shared_ptr to it (tensors hold one through their storage).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace slackpt {

class MappedFile {
 public:
  // Throws CheckpointError E_IO when the file cannot be opened or mapped, E_LIMIT above max_bytes.
  static std::shared_ptr<const MappedFile> open(const std::string& path, uint64_t max_bytes);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size) : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

}  // namespace slackpt
