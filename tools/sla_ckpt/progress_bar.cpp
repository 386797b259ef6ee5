#include "progress_bar.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace slackpt::cli {

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), enabled_(isatty(STDERR_FILENO) == 1), start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (drawn_) {
    draw(true);
    std::fputc('\n', stderr);
  }
}

void ProgressBar::set_total(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  total_ = bytes;
}

void ProgressBar::add(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  done_ += bytes;
  draw(false);
}

void ProgressBar::draw(bool force) {
  if (!enabled_ || total_ == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  drawn_ = true;
  const double fraction = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
  const int width = 30, filled = static_cast<int>(fraction * width);
  const double seconds = std::chrono::duration<double>(now - start_).count();
  const double mib = 1024.0 * 1024.0;
  std::fprintf(stderr, "\r%s [%.*s%*s] %5.1f%% %8.1f/%.1f MiB %7.1f MiB/s", label_.c_str(), filled,
               "##############################", width - filled, "", fraction * 100, done_ / mib, total_ / mib,
               seconds > 0 ? done_ / mib / seconds : 0.0);
  std::fflush(stderr);
}

}  // namespace slackpt::cli
