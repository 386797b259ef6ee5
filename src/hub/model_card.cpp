#include "model_card.h"

#include <fmt/core.h>

namespace slahub {

std::string sla_card_section(const slackpt::SlaFile& sla) {
  std::string states;
  for (const auto& entry : sla.entries) states += (states.empty() ? "" : ", ") + entry.key;
  const std::string variant = sla.has_extension ? sla.variant() : sla.variant() + " (assumed: the file does not record it)";
  std::string s;
  s += std::string(kCardSectionBegin) + "\n";
  s += "## Sparse-Linear Attention (SLA)\n\n";
  s += std::string(kSlaRequiredLine) + "\n\n";
  s += "Load `sla_attention.pt` with the same settings; without it the attention runs untrained.\n\n";
  s += "| setting | value |\n|---|---|\n";
  s += fmt::format("| topk | {} |\n", sla.settings.topk);
  s += fmt::format("| feature_map | {} |\n", sla.settings.feature_map);
  s += fmt::format("| blkq | {} |\n", sla.settings.blkq);
  s += fmt::format("| blkk | {} |\n", sla.settings.blkk);
  s += fmt::format("| tie_feature_map_qk | {} |\n", sla.settings.tie_feature_map_qk ? "true" : "false");
  s += fmt::format("| variant | {} |\n", variant);
  s += fmt::format("| attention states (head_dim:dtype) | {} |\n", states.empty() ? "none" : states);
  s += fmt::format("| format version | {} |\n", sla.version);
  s += std::string(kCardSectionEnd) + "\n";
  return s;
}

std::string with_sla_section(const std::string& card, const slackpt::SlaFile& sla) {
  const std::string section = sla_card_section(sla);
  const auto begin = card.find(kCardSectionBegin);
  if (begin != std::string::npos) {
    const auto end = card.find(kCardSectionEnd, begin);
    if (end != std::string::npos) {
      auto after = end + std::string(kCardSectionEnd).size();
      if (after < card.size() && card[after] == '\n') ++after;
      return card.substr(0, begin) + section + card.substr(after);
    }
  }
  if (card.empty()) return "---\ntags:\n- sla\n- sparse-linear-attention\n---\n\n" + section;
  return card + (card.back() == '\n' ? "\n" : "\n\n") + section;
}

}  // namespace slahub
