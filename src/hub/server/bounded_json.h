// JSON from request bodies, parsed with bounded cost: nlohmann::json's parser with a callback that
// counts nesting depth and values as they are read, so a body of "[[[[..." or of millions of tiny
// values is refused at the cap, before the tree under it is built (memory stays proportional to
// the caps, not to the body).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace sla::hub::server {

struct JsonLimits {
  int max_depth = 32;           // nested objects/arrays; Hub bodies need 4 at most
  size_t max_values = 200000;   // values of any kind, containers included
};

// Parses text; throws a 400 HttpError naming `what` when it is not JSON or nests deeper than
// max_depth, and a 413 HttpError when it holds more than max_values values.
nlohmann::json parse_json_bounded(std::string_view text, const std::string& what, JsonLimits limits = {});

}  // namespace sla::hub::server
