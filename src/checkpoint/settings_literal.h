// sla_config text as SimpleTuner accepts it: a Python-dict literal ({'topk': 0.15,
// 'tie_feature_map_qk': False}) or JSON. One reader for every caller (SlaConfig::parse, the
// regenerate plan), in the ground floor because it is plain text handling.
#pragma once

#include <sstream>
#include <string>
#include <vector>

namespace sla::checkpoint {

// "a" + b + ... for any streamable values, for the messages of sla_config's readers (fmt is not
// used: LibTorch ships its own fmt headers, which would shadow the system library's).
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

// The one error of every sla_config reader: std::invalid_argument("sla_config: " + message).
[[noreturn]] void settings_error(const std::string& message);

// The literal as JSON text, token by token: strings are copied with their escapes re-encoded,
// True/False/None are rewritten only outside strings, a trailing comma before } or ] is dropped.
// `json_words`, when given, receives one note per JSON word (true/false/null), which Python's
// ast.literal_eval (SimpleTuner's parser) rejects. Throws std::invalid_argument ("sla_config: ...")
// for an unterminated string, a bad escape or a bare word.
std::string settings_literal_to_json(const std::string& text, std::vector<std::string>* json_words = nullptr);

}  // namespace sla::checkpoint
