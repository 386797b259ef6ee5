// A byte-count progress bar on stderr, drawn only when stderr is a terminal (quiet in logs and
// tests), fed by the Hub library's progress callbacks (on_total / progress). Thread-safe:
// downloads and part uploads report from several threads. Drawing is the tool's job; the library
// only reports bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace slackpt::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ~ProgressBar();  // ends the line when something was drawn
  void set_total(uint64_t bytes);
  void add(uint64_t bytes);

 private:
  void draw(bool force);
  std::string label_;
  bool enabled_;
  std::mutex mutex_;
  uint64_t total_ = 0, done_ = 0;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace slackpt::cli
