// Folder kinds and the file-system helpers of the validator.
#include "verify_internal.h"

#include "mapped_file.h"
#include "safetensors.h"
#include "sla_state.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <unistd.h>

namespace sla::checkpoint::verify_detail {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr uintmax_t kMaxTextFileBytes = 4u << 20;  // configs and model cards; larger files are not configs
constexpr size_t kMaxFilesScanned = 256;             // per folder, so a verify next to $HOME stays quick

}  // namespace

// ---- small helpers ------------------------------------------------------------------------------

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool is_folder(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

// The content of a regular file of at most kMaxTextFileBytes (never blocks on a FIFO or device).
std::optional<std::string> read_small_text(const fs::path& p) {
  uint64_t size = 0;
  int fd = -1;
  try {
    fd = open_regular_file(p.string(), &size);
  } catch (const CheckpointError&) {
    return std::nullopt;
  }
  std::string text;
  if (size <= kMaxTextFileBytes) {
    text.resize(size_t(size));
    size_t got = 0;
    while (got < text.size()) {
      ssize_t n = ::read(fd, text.data() + got, text.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += size_t(n);
    }
    text.resize(got);
  }
  ::close(fd);
  if (size > kMaxTextFileBytes) return std::nullopt;
  return text;
}

std::vector<fs::path> files_in(const fs::path& folder) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end && out.size() < kMaxFilesScanned; it.increment(ec))
    if (is_file(it->path())) out.push_back(it->path());
  std::sort(out.begin(), out.end());
  return out;
}

// The step of a checkpoint-<step> name; -1 for any other name.
long long checkpoint_step(const fs::path& p) {
  const std::string name = p.filename().string();
  if (name.rfind("checkpoint-", 0) != 0) return -1;
  const std::string step = name.substr(std::strlen("checkpoint-"));
  if (step.empty() || step.size() > 15 || !std::all_of(step.begin(), step.end(), ::isdigit)) return -1;
  return std::stoll(step);
}

// checkpoint-<step> folders under `folder` that hold an sla_attention.pt, newest (highest step) first.
std::vector<fs::path> checkpoint_files_under(const fs::path& folder, const fs::path& except) {
  std::vector<std::pair<long long, fs::path>> found;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const long long step = checkpoint_step(it->path());
    if (step < 0 || !is_folder(it->path())) continue;
    std::error_code same_ec;
    if (!except.empty() && fs::equivalent(it->path(), except, same_ec)) continue;
    fs::path file = it->path() / kSlaFileName;
    if (is_file(file)) found.emplace_back(step, file);
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

bool is_checkpoint_name(const fs::path& folder) {
  return folder.filename().string().rfind("checkpoint-", 0) == 0;
}

std::string classify(const fs::path& path, const fs::path& folder, bool path_is_file) {
  if (path_is_file) return path.extension() == ".safetensors" ? "sla-twin" : "sla-file";
  const std::string text = fs::absolute(folder).lexically_normal().string();
  if (text.find("/snapshots/") != std::string::npos || is_folder(folder / ".cache" / "huggingface")) return "snapshot";
  if (is_checkpoint_name(folder) || is_file(folder / "training_state.json")) return "checkpoint";
  if (is_file(folder / "transformer" / "config.json") || is_file(folder / "model_index.json")) return "pipeline-output";
  if (is_file(folder / "pytorch_lora_weights.safetensors")) return "lora-output";
  return "folder";
}

}  // namespace sla::checkpoint::verify_detail

namespace sla::checkpoint {

using namespace verify_detail;

std::string newest_checkpoint_folder(const std::string& folder) {
  std::string best;
  long long best_step = -1;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const long long step = checkpoint_step(it->path());
    if (step > best_step && is_folder(it->path())) best_step = step, best = it->path().string();
  }
  return best;
}

}  // namespace sla::checkpoint
