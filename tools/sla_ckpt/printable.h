// Text output of the subcommands that read untrusted files (inspect, verify, convert): strings
// from a file (writer, keys, names, messages quoting them) must not reach the terminal raw, where
// a newline or an ANSI/OSC escape could forge a line such as "verify: ok" or retitle the window.
// printable() escapes them; say() prints one escaped line. JSON output is escaped by the JSON
// writer instead, through json_text().
#pragma once

#include "sla/checkpoint/text_escape.h"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>
#include <string_view>

namespace sla::cli {

// Control characters (C0, DEL, C1), bidirectional controls and bytes that are not UTF-8 become
// \n, \r, \t, \xNN or \uNNNN; everything else is kept as it is (sla/checkpoint/text_escape.h).
using sla::checkpoint::printable;

// Prints line, escaped, and a newline.
inline void say(std::FILE* to, std::string_view line) { fmt::print(to, "{}\n", printable(line)); }

// The --json text of every subcommand: strings that are not UTF-8 (a path is bytes on Linux, a
// file's strings are untrusted) show U+FFFD instead of failing the dump. indent -1: one line.
template <class Json>  // nlohmann::json or ordered_json (its keys in insertion order), unconverted
std::string json_text(const Json& value, int indent = 2) {
  return value.dump(indent, ' ', false, Json::error_handler_t::replace);
}

}  // namespace sla::cli
