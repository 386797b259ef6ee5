// A byte-count progress bar on stderr, fed by the Hub library's progress callbacks (on_total /
// progress). On a terminal it is redrawn in place; without one (logs, CI) a line is printed every
// few seconds once a transfer runs that long (SLA_CKPT_PROGRESS_INTERVAL_S, default 5), so logs
// show life, and short transfers print nothing. finish() (on success) ends the bar at 100 %.
// Thread-safe: downloads and part uploads report from several threads. Drawing is the tool's job;
// the library only reports bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace sla::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ~ProgressBar();  // ends the line when something was drawn
  void set_total(uint64_t bytes);
  void add(uint64_t bytes);
  void finish();  // the work is done: the bar ends at 100 % (bytes skipped or reused count as done)

 private:
  void draw(bool force);
  std::string label_;
  bool tty_;
  std::chrono::duration<double> interval_;  // between lines without a terminal
  std::mutex mutex_;
  uint64_t total_ = 0, done_ = 0;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace sla::cli
