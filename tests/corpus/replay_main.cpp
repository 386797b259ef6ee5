// Replays the fuzz entry point over files and folders (the corpus, saved crashes) without
// libFuzzer, so ordinary and sanitizer builds run it under CTest.
// Usage: sla_fuzz_replay PATH...   (folders are read one level deep, in name order)
// Exit 0 when every input was read or refused with a CheckpointError; a crash, a sanitizer report
// or any other exception fails the run and names the input.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace fs = std::filesystem;

namespace {

// The corpus holds sparse or very large files meant for the size cap of the file reader; a buffer
// entry point cannot test that, and reading them would only cost memory.
constexpr std::uintmax_t kMaxReplayBytes = 64u << 20;

std::vector<fs::path> inputs_of(const std::vector<std::string>& args) {
  std::vector<fs::path> files;
  for (const auto& arg : args) {
    const fs::path path(arg);
    if (fs::is_directory(path)) {
      std::vector<fs::path> in_folder;
      for (const auto& item : fs::directory_iterator(path)) {
        if (item.is_regular_file()) in_folder.push_back(item.path());
      }
      std::sort(in_folder.begin(), in_folder.end());
      files.insert(files.end(), in_folder.begin(), in_folder.end());
    } else if (fs::is_regular_file(path)) {
      files.push_back(path);
    } else {
      throw std::runtime_error("no such file or folder: " + arg);
    }
  }
  return files;
}

std::vector<uint8_t> read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PATH...\n", argv[0]);
    return 2;
  }
  try {
    int replayed = 0, skipped = 0, failed = 0;
    for (const auto& file : inputs_of({argv + 1, argv + argc})) {
      if (fs::file_size(file) > kMaxReplayBytes) {
        ++skipped;
        continue;
      }
      // Named before running so a crash or sanitizer report can be traced to its input.
      std::fprintf(stderr, "replay: %s\n", file.c_str());
      const std::vector<uint8_t> bytes = read_all(file);
      try {
        LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
        ++replayed;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "replay: FINDING: %s: uncaught %s\n", file.c_str(), e.what());
        ++failed;
      }
    }
    std::fprintf(stderr, "replay: %d inputs replayed, %d skipped (> %ju bytes), %d findings\n", replayed, skipped,
                 kMaxReplayBytes, failed);
    return failed == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "replay: error: %s\n", e.what());
    return 2;
  }
}
