// Text output of the subcommands that read untrusted files (inspect, verify, convert): strings
// from a file (writer, keys, names, messages quoting them) must not reach the terminal raw, where
// a newline or an ANSI/OSC escape could forge a line such as "verify: ok" or retitle the window.
// printable() escapes them; say() prints one escaped line. JSON output is escaped by the JSON
// writer instead and does not go through here.
#pragma once

#include <fmt/core.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace sla::cli {

// Control characters (C0, DEL, C1), bidirectional overrides and bytes that are not UTF-8 become
// \n, \r, \t, \xNN or \uNNNN; everything else is kept as it is.
inline std::string printable(std::string_view s) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  auto escape_byte = [&](unsigned char c) {
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else out += {'\\', 'x', hex[c >> 4], hex[c & 15]};
  };
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) escape_byte(c);
      else out += char(c);
      ++i;
      continue;
    }
    // One UTF-8 sequence: its length, code point, and whether it is well formed (shortest form,
    // no surrogates, at most U+10FFFF).
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
    uint32_t cp = n == 4 ? c & 0x07 : n == 3 ? c & 0x0f : c & 0x1f;
    bool ok = n != 0 && i + n <= s.size() && c <= 0xf4;
    for (size_t k = 1; ok && k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      ok = (cc & 0xc0) == 0x80;
      cp = (cp << 6) | (cc & 0x3f);
    }
    ok = ok && cp >= (n == 2 ? 0x80u : n == 3 ? 0x800u : 0x10000u) && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
    if (!ok) {
      escape_byte(c);
      ++i;
      continue;
    }
    bool control = cp <= 0x9f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) ||
                   cp == 0x2028 || cp == 0x2029;
    if (control) out += {'\\', 'u', hex[(cp >> 12) & 15], hex[(cp >> 8) & 15], hex[(cp >> 4) & 15], hex[cp & 15]};
    else out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

// Prints line, escaped, and a newline.
inline void say(std::FILE* to, std::string_view line) { fmt::print(to, "{}\n", printable(line)); }

}  // namespace sla::cli
