// The seam between the Hub client and the network (style.md habit 17): the client builds
// HttpRequests and reads HttpResponses; curl_transport.cpp talks to libcurl, and the unit tests use
// a fake that scripts statuses, headers, truncated bodies and dropped connections.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sla::hub {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "GET";  // GET | HEAD | POST | PUT
  std::string url;
  HeaderList headers;

  // The body: `body` from memory, or `body_file` (a byte range of a file, read when sent, so a
  // multi-GB upload never sits in memory). At most one of them is used; body_file wins.
  std::string body;
  struct FileRange {
    std::string path;
    uint64_t offset = 0;
    uint64_t length = 0;
  };
  std::optional<FileRange> body_file;

  // When set, a 2xx response body is handed to the sink chunk by chunk (with the status, so a
  // resumed download can tell 206 from a 200 that ignored its Range) instead of being kept in
  // HttpResponse::body; error bodies are still kept (for messages). Returning false aborts.
  std::function<bool(int status, const char* data, size_t size)> sink;

  // Read by HubClient::perform, which follows redirects itself; a transport never follows them.
  bool follow_redirects = false;
  // A body kept in memory (not streamed to the sink) larger than this fails the request.
  uint64_t max_body_bytes = uint64_t{64} << 20;
  long connect_timeout_s = 10;
  long stall_timeout_s = 30;  // abort when less than 1 byte/s flows for this long
};

struct HttpResponse {
  int status = 0;
  HeaderList headers;  // names lower-cased, in arrival order (of the final response)
  std::string body;    // empty when streamed to the sink
  std::string url;     // the final URL (after redirects, when followed)

  // The last value of a header (case-insensitive name), or nothing.
  std::optional<std::string> header(const std::string& name) const;
};

// The request did not complete: refused or dropped connection, timeout, a body cut short, an answer
// over max_body_bytes or with more than 256 KiB of headers. Data already handed to the sink stays
// delivered; the caller may resume from there.
// unreachable: no connection could be made at all (host not resolved, connection refused).
class TransportError : public std::runtime_error {
 public:
  explicit TransportError(const std::string& message, bool unreachable = false)
      : std::runtime_error(message), unreachable_(unreachable) {}
  bool unreachable() const noexcept { return unreachable_; }

 private:
  bool unreachable_;
};

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  // Safe to call from several threads at once.
  virtual HttpResponse perform(const HttpRequest& request) = 0;
};

// libcurl, with a pool of easy handles so connections are kept alive between requests. http and
// https only; redirects are answered as they are (3xx), never followed.
std::unique_ptr<HttpTransport> make_curl_transport();

}  // namespace sla::hub
