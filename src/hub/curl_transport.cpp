#include "transport.h"

#include "sla/hub/common/hub_text.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <mutex>

namespace sla::hub {

std::optional<std::string> HttpResponse::header(const std::string& name) const {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (auto it = headers.rbegin(); it != headers.rend(); ++it)
    if (it->first == lower) return it->second;
  return std::nullopt;
}

namespace {

// What the callbacks of one transfer share.
struct Transfer {
  const HttpRequest* request = nullptr;
  HttpResponse* response = nullptr;
  CURL* easy = nullptr;
  int fd = -1;               // body_file, opened for the transfer
  uint64_t sent = 0;         // bytes of the body already read
  uint64_t to_send = 0;
  uint64_t header_bytes = 0;
  bool sink_failed = false;
  bool too_large = false;  // headers over kMaxHeaderBytes or a kept body over max_body_bytes
};

constexpr uint64_t kMaxHeaderBytes = 256 << 10;  // the Hub sends a few KiB; libcurl 8 stops at 300 KiB

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  t->header_bytes += size * count;
  if (t->header_bytes > kMaxHeaderBytes) {
    t->too_large = true;
    return 0;  // aborts the transfer
  }
  std::string line(data, size * count);
  if (line.rfind("HTTP/", 0) == 0) {
    t->response->headers.clear();  // a new response (after a redirect or a 100 Continue)
    return size * count;
  }
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    t->response->headers.emplace_back(name, trim(line.substr(colon + 1)));
  }
  return size * count;
}

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  long status = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  if (t->request->sink && status >= 200 && status < 300) {
    if (!t->request->sink(static_cast<int>(status), data, n)) {
      t->sink_failed = true;
      return 0;  // aborts the transfer
    }
    return n;
  }
  if (t->response->body.size() + n > t->request->max_body_bytes) {
    t->too_large = true;
    return 0;
  }
  t->response->body.append(data, n);
  return n;
}

size_t on_read(char* buffer, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const uint64_t want = std::min<uint64_t>(size * count, t->to_send - t->sent);
  if (want == 0) return 0;
  if (t->fd >= 0) {
    const auto& range = *t->request->body_file;
    ssize_t got = pread(t->fd, buffer, want, static_cast<off_t>(range.offset + t->sent));
    if (got <= 0) return CURL_READFUNC_ABORT;
    t->sent += static_cast<uint64_t>(got);
    return static_cast<size_t>(got);
  }
  std::memcpy(buffer, t->request->body.data() + t->sent, want);
  t->sent += want;
  return want;
}

class CurlTransport : public HttpTransport {
 public:
  CurlTransport() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  ~CurlTransport() override {
    for (CURL* easy : idle_) curl_easy_cleanup(easy);
  }

  HttpResponse perform(const HttpRequest& request) override {
    CURL* easy = acquire();
    struct Release {
      CurlTransport* self;
      CURL* easy;
      ~Release() { self->release(easy); }
    } release{this, easy};

    HttpResponse response;
    Transfer t;
    t.request = &request;
    t.response = &response;
    t.easy = easy;
    struct FdCloser {
      int& fd;
      ~FdCloser() {
        if (fd >= 0) close(fd);
      }
    } closer{t.fd};

    curl_easy_setopt(easy, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);  // HubClient::perform follows, under its own rules
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, request.connect_timeout_s);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, request.stall_timeout_s);
    curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, 1L << 20);
    curl_easy_setopt(easy, CURLOPT_UPLOAD_BUFFERSIZE, 2L << 20);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &t);

    curl_slist* headers = nullptr;
    for (const auto& [name, value] : request.headers)
      headers = curl_slist_append(headers, (name + ": " + value).c_str());
    headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip before bodies
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_guard(headers, &curl_slist_free_all);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);

    const bool has_body = request.body_file || !request.body.empty() || request.method == "POST" || request.method == "PUT";
    if (request.body_file) {
      t.fd = open(request.body_file->path.c_str(), O_RDONLY | O_CLOEXEC);
      if (t.fd < 0) throw std::runtime_error("cannot open " + request.body_file->path + ": " + std::strerror(errno));
      t.to_send = request.body_file->length;
    } else {
      t.to_send = request.body.size();
    }
    if (request.method == "HEAD") {
      curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    } else if (has_body) {
      // Upload mode streams from on_read with a known Content-Length; the verb is set explicitly.
      curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(t.to_send));
      curl_easy_setopt(easy, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(easy, CURLOPT_READDATA, &t);
      if (request.method != "PUT") curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    } else if (request.method != "GET") {
      curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }

    const CURLcode rc = curl_easy_perform(easy);
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    response.status = static_cast<int>(status);
    char* final_url = nullptr;
    curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &final_url);
    response.url = final_url ? final_url : request.url;
    if (rc != CURLE_OK) {
      if (t.sink_failed) throw std::runtime_error("writing the download of " + request.url + " failed");
      if (t.too_large)
        throw TransportError("the answer is too large (over " + std::to_string(kMaxHeaderBytes) + " bytes of headers or " +
                             std::to_string(request.max_body_bytes) + " bytes of body) (" + request.method + " " + request.url + ")");
      const bool unreachable = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY;
      throw TransportError(std::string(curl_easy_strerror(rc)) + " (" + request.method + " " + request.url + ")", unreachable);
    }
    return response;
  }

 private:
  CURL* acquire() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!idle_.empty()) {
        CURL* easy = idle_.back();
        idle_.pop_back();
        curl_easy_reset(easy);  // keeps the connection cache
        return easy;
      }
    }
    CURL* easy = curl_easy_init();
    if (!easy) throw std::runtime_error("curl_easy_init failed");
    return easy;
  }
  void release(CURL* easy) {
    std::lock_guard<std::mutex> lock(mutex_);
    idle_.push_back(easy);
  }

  std::mutex mutex_;
  std::vector<CURL*> idle_;
};

}  // namespace

std::unique_ptr<HttpTransport> make_curl_transport() { return std::make_unique<CurlTransport>(); }

}  // namespace sla::hub
