#include "sla_source.h"

#include "sla/checkpoint/mapped_file.h"
#include "sla/checkpoint/sla_state.h"

#include <filesystem>

namespace fs = std::filesystem;

namespace sla::hub {

std::optional<std::string> newest_checkpoint_sla_file(const std::string& folder) {
  std::optional<std::string> best;
  long long best_step = -1;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const std::string prefix = "checkpoint-";
    if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) continue;
    const std::string step = name.substr(prefix.size());
    if (step.find_first_not_of("0123456789") != std::string::npos || step.size() > 18) continue;
    const fs::path file = it->path() / sla::checkpoint::kSlaFileName;
    if (!fs::is_regular_file(file, ec)) continue;
    if (std::stoll(step) > best_step) {
      best_step = std::stoll(step);
      best = file.string();
    }
  }
  return best;
}

std::optional<SlaSource> find_sla_source(const std::string& folder, const std::string& sla_from) {
  if (!sla_from.empty()) return SlaSource{sla_from, "--sla-from", true};
  const fs::path own = fs::path(folder) / sla::checkpoint::kSlaFileName;
  // Any entry of that name is the folder's own, a broken one (a dangling link) too: verify refuses
  // it, rather than a checkpoint's file standing in for it unnoticed.
  if (sla::checkpoint::entry_exists(own.string())) return SlaSource{own.string(), "the folder's own", false};
  if (auto newest = newest_checkpoint_sla_file(folder))
    return SlaSource{*newest, "the newest checkpoint's (" + fs::path(*newest).parent_path().filename().string() + ")", true};
  return std::nullopt;
}

}  // namespace sla::hub
