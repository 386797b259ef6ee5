#include "model_card.h"

#include <fmt/core.h>

#include <algorithm>
#include <optional>
#include <vector>

namespace sla::hub {

std::string sla_card_section(const sla::checkpoint::SlaFile& sla) {
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

namespace {

const char* const kTags[] = {"sla", "sparse-linear-attention"};

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    const auto end = text.find('\n', start);
    lines.push_back(text.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return lines;
}

std::string trimmed(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

std::string unquoted(std::string s) {
  s = trimmed(s);
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front()) s = s.substr(1, s.size() - 2);
  return s;
}

// The front matter's lines (between the leading "---" and the next "---") with our tags merged.
std::vector<std::string> merge_tags(std::vector<std::string> yaml) {
  size_t key = yaml.size();
  for (size_t i = 0; i < yaml.size(); ++i)
    if (yaml[i].rfind("tags:", 0) == 0) key = i;
  if (key == yaml.size()) {
    yaml.push_back("tags:");
    for (const char* tag : kTags) yaml.push_back(std::string("- ") + tag);
    return yaml;
  }
  const std::string inline_value = trimmed(yaml[key].substr(5));
  if (!inline_value.empty() && inline_value.front() == '[' && inline_value.back() == ']') {  // tags: [a, b]
    std::string inner = trimmed(inline_value.substr(1, inline_value.size() - 2));
    std::vector<std::string> have;
    for (size_t s = 0; s <= inner.size();) {
      const auto comma = inner.find(',', s);
      const std::string item = unquoted(inner.substr(s, comma == std::string::npos ? std::string::npos : comma - s));
      if (!item.empty()) have.push_back(item);
      if (comma == std::string::npos) break;
      s = comma + 1;
    }
    for (const char* tag : kTags)
      if (std::find(have.begin(), have.end(), tag) == have.end()) inner += (inner.empty() ? "" : ", ") + std::string(tag);
    yaml[key] = "tags: [" + inner + "]";
    return yaml;
  }
  std::vector<std::string> have;
  size_t last = key;
  std::string indent;
  if (!inline_value.empty()) {  // tags: single -> a block list
    have.push_back(unquoted(inline_value));
    yaml[key] = "tags:";
    yaml.insert(yaml.begin() + key + 1, "- " + inline_value);
    last = key + 1;
  }
  for (size_t i = last + 1; i < yaml.size(); ++i) {
    const std::string t = trimmed(yaml[i]);
    if (t.rfind("- ", 0) != 0 && t != "-") break;
    if (i == key + 1) indent = yaml[i].substr(0, yaml[i].find('-'));
    have.push_back(unquoted(t.substr(1)));
    last = i;
  }
  for (const char* tag : kTags)
    if (std::find(have.begin(), have.end(), tag) == have.end()) yaml.insert(yaml.begin() + (++last), indent + "- " + tag);
  return yaml;
}

std::string join_lines(const std::vector<std::string>& lines, size_t from, size_t to) {
  std::string out;
  for (size_t i = from; i < to; ++i) out += lines[i] + "\n";
  return out;
}

}  // namespace

std::string with_sla_section(const std::string& card, const sla::checkpoint::SlaFile& sla) {
  const std::string section = sla_card_section(sla);
  // Our previous section becomes a placeholder line that keeps its place; bare SLA lines go.
  const std::string placeholder = "\x01sla-section\x01";
  std::string text = card;
  const auto begin = text.find(kCardSectionBegin);
  if (begin != std::string::npos) {
    const auto end = text.find(kCardSectionEnd, begin);
    if (end != std::string::npos) {
      auto after = end + std::string(kCardSectionEnd).size();
      if (after < text.size() && text[after] == '\n') ++after;
      text.replace(begin, after - begin, placeholder + "\n");
    }
  }
  std::vector<std::string> kept;
  for (const auto& line : split_lines(text))
    if (trimmed(line) != kSlaRequiredLine) kept.push_back(line);
  std::vector<std::string> head, body = kept;
  if (!kept.empty() && trimmed(kept[0]) == "---") {
    size_t close = 1;
    while (close < kept.size() && trimmed(kept[close]) != "---") ++close;
    if (close < kept.size()) {
      head.push_back("---");
      for (auto& l : merge_tags(std::vector<std::string>(kept.begin() + 1, kept.begin() + close))) head.push_back(l);
      head.push_back("---");
      body.assign(kept.begin() + close + 1, kept.end());
    }
  }
  if (head.empty()) {
    head = {"---", "tags:"};
    for (const char* tag : kTags) head.push_back(std::string("- ") + tag);
    head.push_back("---");
    body.insert(body.begin(), "");
  }
  std::string out = join_lines(head, 0, head.size()) + join_lines(body, 0, body.size());
  const auto slot = out.find(placeholder + "\n");
  if (slot != std::string::npos) return out.substr(0, slot) + section + out.substr(slot + placeholder.size() + 1);
  while (out.size() >= 2 && out[out.size() - 1] == '\n' && out[out.size() - 2] == '\n') out.pop_back();
  return out + "\n" + section;
}

}  // namespace sla::hub
