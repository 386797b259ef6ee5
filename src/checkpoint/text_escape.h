// Untrusted text (names and strings from a file, values a server sent) shown in a one-line message
// or on a terminal: a newline or an ANSI/OSC escape in it must not break the line, forge one such
// as "verify: ok", or retitle the window. One escaper serves the readers' errors, the Hub client's
// errors and the command-line tools' text output.
#pragma once

#include "utf8.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sla::checkpoint::detail {

enum class EscapeStyle {
  kQuotedAscii,   // quoted_value
  kTerminalUtf8,  // printable
};

inline std::string escape_text(std::string_view s, EscapeStyle style, size_t max_bytes) {
  static const char* hex = "0123456789abcdef";
  const bool terminal = style == EscapeStyle::kTerminalUtf8;
  std::string out;
  out.reserve(s.size() < max_bytes ? s.size() : max_bytes);
  const auto escape_byte = [&](unsigned char c) {
    if (terminal && c == '\n') out += "\\n";
    else if (terminal && c == '\r') out += "\\r";
    else if (terminal && c == '\t') out += "\\t";
    else out += {'\\', 'x', hex[c >> 4], hex[c & 15]};
  };
  for (size_t i = 0; i < s.size();) {
    if (out.size() >= max_bytes) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      if (!terminal && (c == '\\' || c == '"')) out += '\\';
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    uint32_t cp = 0;
    const size_t n = terminal && c >= 0x80 ? utf8_sequence_at(s, i, cp) : 0;
    if (n == 0) {  // C0, DEL, or (quoted) any byte above 0x7f, or (terminal) a byte that is not UTF-8
      escape_byte(c);
      ++i;
      continue;
    }
    // C1 controls (0x9b is a terminal's CSI), bidirectional embeddings, overrides and isolates
    // (text that reads differently than it is), line and paragraph separators.
    const bool control = cp <= 0x9f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) ||
                         cp == 0x2028 || cp == 0x2029;
    if (control) out += {'\\', 'u', hex[(cp >> 12) & 15], hex[(cp >> 8) & 15], hex[(cp >> 4) & 15], hex[cp & 15]};
    else out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

}  // namespace sla::checkpoint::detail

namespace sla::checkpoint {

// For a value quoted in a one-line message ("<value>"): printable ASCII is kept with '\' and '"'
// escaped, every other byte (controls, DEL, anything above 0x7f) becomes \xNN. When the escaped
// text reaches max_bytes it is cut there and ends with "...".
inline std::string quoted_value(std::string_view value, size_t max_bytes) {
  return detail::escape_text(value, detail::EscapeStyle::kQuotedAscii, max_bytes);
}

// For a line of terminal text: well-formed UTF-8 is kept as it is; control characters (C0, DEL, C1),
// bidirectional controls and line separators become \n, \r, \t, \xNN or \uNNNN, and bytes that are
// not UTF-8 \xNN. Nothing is cut.
inline std::string printable(std::string_view text) {
  return detail::escape_text(text, detail::EscapeStyle::kTerminalUtf8, std::string::npos);
}

}  // namespace sla::checkpoint
