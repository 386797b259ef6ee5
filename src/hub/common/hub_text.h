// Small text helpers that the Hub client and the Hub server both need.
#pragma once

#include <string>
#include <string_view>

namespace sla::hub {

// s without leading and trailing ASCII white space (" \t\r\n\f\v").
std::string trim(std::string_view s);

// True when s is non-empty and only lower-case hex digits [0-9a-f] (the Hub's sha256, sha1 and
// commit ids).
bool is_lower_hex(std::string_view s);

// Percent-encoding as Python's urllib.parse.quote: keep [A-Za-z0-9_.~-], and '/' only when asked.
std::string percent_encode(std::string_view text, bool keep_slash);

}  // namespace sla::hub
