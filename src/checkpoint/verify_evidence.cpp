// Evidence that a model was trained with SLA.
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

// ---- evidence that the model was trained with SLA --------------------------------------------------

// True when `text` sets attention_mechanism to sla in JSON ("--attention_mechanism": "sla"),
// YAML (attention_mechanism: sla) or TOML (attention_mechanism = "sla").
bool sets_attention_mechanism_sla(const std::string& text) {
  static const std::string key = "attention_mechanism";
  for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + 1)) {
    size_t i = at + key.size();
    while (i < text.size() && (text[i] == '"' || text[i] == '\'' || text[i] == ' ' || text[i] == '\t')) ++i;
    if (i >= text.size() || (text[i] != ':' && text[i] != '=')) continue;
    ++i;
    while (i < text.size() && (text[i] == '"' || text[i] == '\'' || text[i] == ' ' || text[i] == '\t')) ++i;
    size_t start = i;
    while (i < text.size() && (std::isalnum(static_cast<unsigned char>(text[i])) || text[i] == '_' || text[i] == '-')) ++i;
    if (lower(text.substr(start, i - start)) == "sla") return true;
  }
  return false;
}

// A model-card line saying SLA is on, e.g. SimpleTuner's
// "SLA: Enabled (you MUST use SLA for inference; sla_attention.pt contains attention weights)".
std::optional<std::string> model_card_sla_line(const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    size_t pos = line.find("SLA");
    bool word = pos != std::string::npos &&
                (pos == 0 || !std::isalpha(static_cast<unsigned char>(line[pos - 1]))) &&
                (pos + 3 >= line.size() || !std::isalpha(static_cast<unsigned char>(line[pos + 3])));
    if (!word) continue;
    const std::string l = lower(line);
    if (l.find("disabled") != std::string::npos || l.find("not enabled") != std::string::npos) continue;
    if (l.find("enabled") != std::string::npos || l.find("required") != std::string::npos ||
        l.find("must use") != std::string::npos)
      return line;
  }
  return std::nullopt;
}

bool is_config_name(const fs::path& p) {
  const std::string ext = lower(p.extension().string());
  return ext == ".json" || ext == ".yaml" || ext == ".yml" || ext == ".toml";
}

Evidence gather_evidence(const fs::path& folder, bool file_present, const VerifyOptions& options) {
  Evidence ev;
  if (file_present) ev.reasons.push_back("the SLA file is present");
  if (options.expect_sla) ev.reasons.push_back("--expect-sla");

  std::vector<fs::path> folders = {folder};
  if (folder.has_parent_path() && folder.parent_path() != folder) folders.push_back(folder.parent_path());
  for (const auto& f : folders) {
    if (auto card = read_small_text(f / "README.md"); card && model_card_sla_line(*card))
      ev.reasons.push_back("model card " + (f / "README.md").string());
    for (const auto& p : files_in(f)) {
      if (!is_config_name(p)) continue;
      if (auto text = read_small_text(p); text && sets_attention_mechanism_sla(*text))
        ev.reasons.push_back("training config " + p.string() + " (attention_mechanism = sla)");
    }
  }
  ev.sibling_files = checkpoint_files_under(folder, {});
  if (is_checkpoint_name(folder) && folder.has_parent_path()) {
    auto more = checkpoint_files_under(folder.parent_path(), folder);
    ev.sibling_files.insert(ev.sibling_files.end(), more.begin(), more.end());
  }
  if (!ev.sibling_files.empty()) ev.reasons.push_back("checkpoint file " + ev.sibling_files.front().string());
  return ev;
}

}  // namespace sla::checkpoint::verify_detail
