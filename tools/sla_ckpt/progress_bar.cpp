#include "progress_bar.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace sla::cli {
namespace {

double interval_seconds() {
  if (const char* text = std::getenv("SLA_CKPT_PROGRESS_INTERVAL_S")) {
    char* end = nullptr;
    const double value = std::strtod(text, &end);
    if (end != text && value > 0) return value;
  }
  return 5.0;
}

}  // namespace

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)),
      tty_(isatty(STDERR_FILENO) == 1),
      interval_(tty_ ? 0.1 : interval_seconds()),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (drawn_ && tty_) {
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

void ProgressBar::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  done_ = std::max(done_, total_);
  if (drawn_) draw(true);  // a bar that was shown ends at 100 %
}

void ProgressBar::draw(bool force) {
  if (total_ == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && (tty_ ? drawn_ : true) && now - last_draw_ < interval_) return;
  last_draw_ = now;
  drawn_ = true;
  const double fraction = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
  const int width = 30, filled = static_cast<int>(fraction * width);
  const double seconds = std::chrono::duration<double>(now - start_).count();
  const double mib = 1024.0 * 1024.0;
  if (tty_)
    std::fprintf(stderr, "\r%s [%.*s%*s] %5.1f%% %8.1f/%.1f MiB %7.1f MiB/s", label_.c_str(), filled,
                 "##############################", width - filled, "", fraction * 100, done_ / mib, total_ / mib,
                 seconds > 0 ? done_ / mib / seconds : 0.0);
  else
    std::fprintf(stderr, "%s: %5.1f%% %.1f/%.1f MiB %.1f MiB/s %.0f s\n", label_.c_str(), fraction * 100, done_ / mib,
                 total_ / mib, seconds > 0 ? done_ / mib / seconds : 0.0, seconds);
  std::fflush(stderr);
}

}  // namespace sla::cli
