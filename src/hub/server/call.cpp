#include "call.h"

#include "bounded_json.h"
#include "http_error.h"
#include "sla/hub/common/hub_text.h"

#include <limits>
#include <regex>

namespace sla::hub::server {

bool Call::flag(const std::string& name) const {
  if (!req.has_param(name.c_str())) return false;
  std::string v = req.get_param_value(name.c_str());
  return v == "1" || v == "true" || v == "True";
}

std::optional<uint64_t> Call::declared_length() const {
  if (!req.has_header("Content-Length")) return std::nullopt;
  std::string text = req.get_header_value("Content-Length");
  if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != std::string::npos) {
    return std::numeric_limits<uint64_t>::max();
  }
  return std::stoull(text);
}

uint64_t Call::stream_body(uint64_t limit, const std::function<void(const char*, size_t)>& receive) const {
  if (!body_reader || body_state != BodyState::kUnread) return 0;
  body_state = BodyState::kBroken;  // until the reader reports the whole body
  auto too_large = [limit] { return HttpError(413, "", "request body larger than " + std::to_string(limit) + " bytes"); };
  if (declared_length().value_or(0) > limit) throw too_large();  // unread: the connection closes
  uint64_t total = 0;
  std::exception_ptr failure;
  bool complete = (*body_reader)([&](const char* data, size_t size) {
    try {
      if (total + size > limit) throw too_large();
      receive(data, size);
      total += size;
      return true;
    } catch (...) {
      failure = std::current_exception();
      return false;
    }
  });
  if (failure) std::rethrow_exception(failure);
  if (!complete) throw bad_request("the request body ended early");
  body_state = BodyState::kRead;
  return total;
}

std::string Call::read_body(size_t limit) const {
  std::string body;
  stream_body(limit, [&](const char* data, size_t size) { body.append(data, size); });
  return body;
}

nlohmann::json Call::read_json_object(size_t limit) const {
  nlohmann::json doc = parse_json_bounded(read_body(limit), "request body");
  if (!doc.is_object()) throw bad_request("the request body is not a JSON object");
  return doc;
}

void Call::reply_json(int status, const nlohmann::json& body, const std::string& content_type) {
  res.status = status;
  res.set_content(body.dump(), content_type.c_str());
}

bool is_valid_repo_part(const std::string& part) {
  static const std::regex allowed(R"([A-Za-z0-9][A-Za-z0-9._-]*)");
  return part.size() <= 96 && std::regex_match(part, allowed) && part.find("--") == std::string::npos &&
         part.find("..") == std::string::npos && part.back() != '.' && part.back() != '-' &&
         !(part.size() >= 4 && part.compare(part.size() - 4, 4, ".git") == 0);
}

RepoRef make_repo_ref(const std::string& type_plural, const std::string& ns, const std::string& name) {
  if (!is_valid_repo_part(ns) || !is_valid_repo_part(name)) {
    throw HttpError(404, "RepoNotFound", "Repository not found: '" + ns + "/" + name + "' is not a valid repo id");
  }
  return RepoRef{type_plural, ns, name};
}

std::string join_segments(const std::vector<std::string>& segments, size_t from) {
  std::string out;
  for (size_t i = from; i < segments.size(); ++i) {
    if (!out.empty()) out += '/';
    out += segments[i];
  }
  return out;
}

bool is_sha256_hex(const std::string& s) {
  return s.size() == 64 && is_lower_hex(s);
}

}  // namespace sla::hub::server
