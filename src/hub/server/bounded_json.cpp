#include "bounded_json.h"

#include "http_error.h"

namespace sla::hub::server {

nlohmann::json parse_json_bounded(std::string_view text, const std::string& what, JsonLimits limits) {
  using json = nlohmann::json;
  size_t values = 0;
  // depth is the number of containers around the event: 0 for the top-level value.
  json::parser_callback_t guard = [&](int depth, json::parse_event_t event, json&) {
    bool opens = event == json::parse_event_t::object_start || event == json::parse_event_t::array_start;
    if (opens && depth >= limits.max_depth) {
      throw bad_request(what + ": JSON nested deeper than " + std::to_string(limits.max_depth) + " levels");
    }
    if ((opens || event == json::parse_event_t::value) && ++values > limits.max_values) {
      throw HttpError(413, "", what + ": more than " + std::to_string(limits.max_values) + " JSON values");
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), guard);
  } catch (const json::parse_error& e) {
    throw bad_request(what + ": not valid JSON (error at byte " + std::to_string(e.byte) + ")");
  }
}

}  // namespace sla::hub::server
