#include "untrusted.h"

#include "sla/checkpoint/text_escape.h"
#include "sla/hub/common/hub_text.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <memory>

namespace sla::hub {
namespace {

constexpr size_t kMaxShownBytes = 400;
constexpr size_t kMaxComponentBytes = 255;  // NAME_MAX
constexpr size_t kMaxPathBytes = 4096;      // PATH_MAX


std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// realpath(3), or nothing when the path does not resolve.
std::optional<std::string> real_path(const std::string& path) {
  std::unique_ptr<char, decltype(&std::free)> resolved(::realpath(path.c_str(), nullptr), &std::free);
  if (!resolved) return std::nullopt;
  return std::string(resolved.get());
}

bool is_inside(const std::string& path, const std::string& root) {
  return path == root || (path.size() > root.size() && path.compare(0, root.size(), root) == 0 &&
                          (root.back() == '/' || path[root.size()] == '/'));
}

}  // namespace

std::string escape_untrusted(std::string_view value) { return sla::checkpoint::quoted_value(value, kMaxShownBytes); }

void refuse_value(const std::string& field, std::string_view value, const std::string& why, const std::string& where) {
  throw HubError(kUnsafeCode, field + " \"" + escape_untrusted(value) + "\" is refused: " + why +
                                  (where.empty() ? "" : " (" + escape_untrusted(where) + ")"));
}

std::string checked_etag(const std::string& raw, const std::string& field, const std::string& where) {
  std::string etag = raw;
  while (etag.rfind("W/", 0) == 0) etag.erase(0, 2);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, etag.size() - 2);
  if ((etag.size() != 40 && etag.size() != 64) || !is_lower_hex(etag))
    refuse_value(field, raw, "an ETag must be 40 (git sha1) or 64 (sha256) lower-case hex digits", where);
  return etag;
}

std::string checked_commit(const std::string& value, const std::string& field, const std::string& where) {
  if (value.size() != 40 || !is_lower_hex(value)) refuse_value(field, value, "a commit id must be 40 lower-case hex digits", where);
  return value;
}

void check_relative_path(const std::string& path, const std::string& field, const std::string& where) {
  const auto refuse = [&](const std::string& why) { refuse_value(field, path, why, where); };
  if (path.empty()) refuse("empty path");
  if (path.size() > kMaxPathBytes) refuse("longer than " + std::to_string(kMaxPathBytes) + " bytes");
  for (size_t i = 0; i < path.size(); ++i) {
    const auto c = static_cast<unsigned char>(path[i]);
    if (c == 0) refuse("NUL byte");
    if (c < 0x20 || c == 0x7f) refuse("control character");
    // U+0080..U+009F in UTF-8: the C1 controls (0x9b is a terminal's CSI).
    if (c == 0xc2 && i + 1 < path.size() && static_cast<unsigned char>(path[i + 1]) < 0xa0) refuse("control character");
    if (c == '\\') refuse("backslash");
  }
  if (path.front() == '/') refuse("absolute path");
  for (size_t start = 0;;) {
    const size_t end = path.find('/', start);
    const std::string component = path.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (component.empty()) refuse("empty path component");
    if (component == "." || component == "..") refuse("'" + component + "' component");
    if (component.size() > kMaxComponentBytes) refuse("a component longer than " + std::to_string(kMaxComponentBytes) + " bytes");
    if (end == std::string::npos) break;
    start = end + 1;
  }
}

std::string confined_path(const std::string& root, const std::string& relative) {
  check_relative_path(relative, "path", root);
  const std::string joined = root + "/" + relative;
  const auto real_root = real_path(root);
  if (!real_root) return joined;  // the root does not exist yet, so nothing below it does
  std::string prefix = root;
  for (size_t start = 0;;) {
    const size_t end = relative.find('/', start);
    const bool last = end == std::string::npos;
    prefix = root + "/" + relative.substr(0, last ? std::string::npos : end);
    struct stat st {};
    if (::lstat(prefix.c_str(), &st) != 0) break;  // absent: it and everything below will be ours
    if (S_ISLNK(st.st_mode)) {
      const auto target = real_path(prefix);
      if (!target && !last)
        refuse_value("path", relative, "'" + prefix + "' is a dangling symlink", root);
      if (target && !is_inside(*target, *real_root))
        refuse_value("path", relative, "'" + prefix + "' is a symlink to '" + *target + "', outside " + *real_root, root);
    }
    if (last) break;
    start = end + 1;
  }
  return joined;
}

std::string url_origin(const std::string& url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return {};
  const std::string scheme = lower(url.substr(0, scheme_end));
  if (scheme != "http" && scheme != "https") return {};
  const size_t authority_start = scheme_end + 3;
  const size_t authority_end = url.find_first_of("/?#", authority_start);
  std::string authority = url.substr(authority_start, authority_end == std::string::npos ? std::string::npos
                                                                                          : authority_end - authority_start);
  const auto at = authority.rfind('@');
  if (at != std::string::npos) authority.erase(0, at + 1);
  std::string host = authority, port;
  const auto bracket = authority.rfind(']');
  const auto colon = authority.rfind(':');
  if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return {};
  if (port.empty()) port = scheme == "https" ? "443" : "80";
  return scheme + "://" + lower(host) + ":" + port;
}

std::string resolve_location(const std::string& base_url, const std::string& location) {
  for (unsigned char c : location)  // a URL is ASCII (RFC 3986: anything else is percent-encoded)
    if (c <= 0x20 || c >= 0x7f) refuse_value("Location", location, "control character, space or non-ASCII byte in a URL", base_url);
  const std::string target = location.substr(0, location.find('#'));
  std::string url;
  const auto colon = target.find(':');
  const auto first_delimiter = target.find_first_of("/?");
  if (colon != std::string::npos && colon > 0 && (first_delimiter == std::string::npos || colon < first_delimiter)) {
    url = target;  // has a scheme
  } else if (target.rfind("//", 0) == 0) {
    url = base_url.substr(0, base_url.find("://") + 1) + target;
  } else {
    const std::string origin_part = base_url.substr(0, base_url.find_first_of("/?#", base_url.find("://") + 3));
    const std::string base_no_query = base_url.substr(0, base_url.find_first_of("?#"));
    if (target.empty()) {
      url = base_no_query;
    } else if (target.front() == '/') {
      url = origin_part + target;
    } else if (target.front() == '?') {
      url = base_no_query + target;
    } else {
      const std::string path = base_no_query.substr(origin_part.size());
      url = origin_part + path.substr(0, path.rfind('/') + 1) + (path.empty() ? "/" : "") + target;
    }
  }
  if (url_origin(url).empty()) refuse_value("Location", location, "only http and https redirects are followed", base_url);
  return url;
}

}  // namespace sla::hub
