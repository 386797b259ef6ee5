// Everything a Hub server sends is untrusted (issue 11): an ETag names a blob file, a commit id a
// snapshot folder, a tree path a file below it, a Location the next host we talk to. Each value is
// checked here before it reaches a path or a request, and refused with a one-line HubError whose
// code is E_HUB_UNSAFE, naming the field and the (escaped) value. Paths are also checked where they
// are built (cache_layout.cpp): joined under the cache or --local-dir root, symlinks included.
#pragma once

#include "hub_client.h"

#include <string>
#include <string_view>

namespace sla::hub {

inline constexpr const char* kUnsafeCode = "E_HUB_UNSAFE";

// The value made printable on one line: bytes below 0x20, 0x7f and above 0x7f as \xNN, '\' and '"'
// escaped; longer than 400 bytes is cut ("..."). sla::checkpoint::quoted_value(value, 400).
std::string escape_untrusted(std::string_view value);

// Throws HubError(E_HUB_UNSAFE): `<field> "<escaped value>" is refused: <why> (<where>)`.
[[noreturn]] void refuse_value(const std::string& field, std::string_view value, const std::string& why,
                               const std::string& where);

// An ETag as the Hub sends it: W/ prefix and quotes stripped, then 40 (git blob sha1) or 64
// (sha256) lower-case hex, so that it is a file name and the content hash can always be checked.
std::string checked_etag(const std::string& raw, const std::string& field, const std::string& where);

// 40 lower-case hex (X-Repo-Commit, the revision answer's sha).
std::string checked_commit(const std::string& value, const std::string& field, const std::string& where);

// A relative path made of '/'-separated components: not empty, no empty, "." or ".." component,
// no backslash, NUL or control character (C0, DEL, and C1 as UTF-8), components <= 255 bytes,
// <= 4096 bytes in all. Other UTF-8 is fine: file names on the Hub may use any script.
void check_relative_path(const std::string& path, const std::string& field, const std::string& where);

// root + "/" + relative, after check_relative_path(relative) and a walk over the components that
// already exist: one that is a symlink must resolve inside root (a dangling link is allowed only as
// the last component, which callers replace by rename, never write through). Nothing is created.
std::string confined_path(const std::string& root, const std::string& relative);

// "scheme://host:port" with scheme and host lower-cased, the default port made explicit and any
// user info dropped; empty when the URL is not http(s).
std::string url_origin(const std::string& url);

// The absolute URL a Location header points to from base_url (absolute, "//host/...", "/path",
// "?query" or a relative path). Refused unless it is http(s), printable ASCII without spaces.
std::string resolve_location(const std::string& base_url, const std::string& location);

}  // namespace sla::hub
