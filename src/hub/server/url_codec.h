// Encodings the server reads and writes: percent-encoding of URL path segments (decoded one
// segment at a time, so "refs%2Fpr%2F1" stays one segment), base64 (preupload samples and inline
// commit files) and the HMAC signatures of the upload and blob URLs the server hands out.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace sla::hub::server {

// Splits the raw request path (no query) at '/' and percent-decodes each segment; empty segments
// are dropped. Throws a 400 HttpError on a malformed escape.
std::vector<std::string> decode_path_segments(const std::string& raw_path);

// Decodes an application/x-www-form-urlencoded body ('+' is a space) into (key, value) pairs.
std::vector<std::pair<std::string, std::string>> decode_form(const std::string& body);

// Percent-encodes a repo path for a URL, keeping '/' (as the client does for resolve paths).
std::string encode_path(const std::string& path);

// Standard base64 with padding; throws a 400 HttpError naming what on bad input.
std::string base64_decode(const std::string& text, const std::string& what);

// Hex HMAC-SHA256 of message under key.
std::string hmac_hex(const std::string& key, const std::string& message);
// Compares two strings in time independent of where they differ.
bool equal_constant_time(const std::string& a, const std::string& b);

}  // namespace sla::hub::server
