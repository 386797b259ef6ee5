// Splits [0, n) into contiguous chunks of at least min_chunk elements and runs fn(begin, end, i)
// for each on its own thread (the first on the caller's), one chunk per hardware thread. Large
// checkpoints are hashed and summarised this way so that inspect costs about one read of the file.
#pragma once

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace sla::checkpoint {

// How many chunks parallel_chunks will use for n elements.
inline size_t chunk_count(uint64_t n, uint64_t min_chunk) {
  size_t threads = std::max(1u, std::thread::hardware_concurrency());
  return static_cast<size_t>(std::max<uint64_t>(1, std::min<uint64_t>(threads, n / std::max<uint64_t>(1, min_chunk))));
}

template <typename Fn>
void parallel_chunks(uint64_t n, uint64_t min_chunk, Fn fn) {
  size_t chunks = chunk_count(n, min_chunk);
  uint64_t step = n / chunks;
  std::vector<std::thread> workers;
  for (size_t i = 1; i < chunks; ++i) {
    uint64_t begin = i * step, end = i + 1 == chunks ? n : begin + step;
    workers.emplace_back([=, &fn] { fn(begin, end, i); });
  }
  fn(0, chunks == 1 ? n : step, 0);
  for (auto& w : workers) w.join();
}

}  // namespace sla::checkpoint
