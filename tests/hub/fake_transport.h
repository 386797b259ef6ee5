// A scripted HttpTransport for unit tests (style.md habit 17): each request is answered by the
// first rule whose method and URL substring match, in order, each rule used `times` times. A rule
// can cut its body after N bytes (a dropped connection: TransportError after delivering them), or
// throw before answering. Every request is recorded.
#pragma once

#include "sla/hub/hub_client.h"
#include "sla/hub/transport.h"

#include <algorithm>
#include <cctype>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace sla::hub::testing {

struct FakeReply {
  int status = 200;
  HeaderList headers;
  std::string body;
  long drop_after = -1;       // >= 0: deliver this many body bytes, then fail like a dropped connection
  bool refuse = false;        // fail before any answer (connection refused)
};

struct FakeRule {
  std::string method;       // empty: any
  std::string url_contains;
  FakeReply reply;
  int times = 1;            // < 0: forever
};

class FakeTransport : public HttpTransport {
 public:
  void on(const std::string& method, const std::string& url_contains, FakeReply reply, int times = 1) {
    std::lock_guard<std::mutex> lock(mutex_);
    rules_.push_back({method, url_contains, std::move(reply), times});
  }

  HttpResponse perform(const HttpRequest& request) override {
    FakeReply reply;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      requests_.push_back(request);
      requests_.back().sink = nullptr;
      auto it = rules_.begin();
      for (; it != rules_.end(); ++it)
        if ((it->method.empty() || it->method == request.method) && request.url.find(it->url_contains) != std::string::npos) break;
      if (it == rules_.end()) throw std::logic_error("fake transport: no rule for " + request.method + " " + request.url);
      reply = it->reply;
      if (it->times > 0 && --it->times == 0) rules_.erase(it);
    }
    if (reply.refuse) throw TransportError("connection refused (fake)");
    HttpResponse response;
    response.status = reply.status;
    response.url = request.url;
    for (auto& [name, value] : reply.headers) {
      std::string lower = name;
      for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      response.headers.emplace_back(lower, value);
    }
    std::string body = reply.body;
    const bool drop = reply.drop_after >= 0 && static_cast<size_t>(reply.drop_after) < body.size();
    if (drop) body.resize(static_cast<size_t>(reply.drop_after));
    if (request.sink && reply.status >= 200 && reply.status < 300 && request.method != "HEAD") {
      // Deliver in small chunks, like the network does.
      for (size_t at = 0; at < body.size(); at += 7) {
        const size_t n = std::min<size_t>(7, body.size() - at);
        if (!request.sink(reply.status, body.data() + at, n)) throw std::runtime_error("sink refused (fake)");
      }
    } else if (request.method != "HEAD") {
      response.body = body;
    }
    if (drop) throw TransportError("connection dropped (fake)");
    return response;
  }

  std::vector<HttpRequest> requests() {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }
  size_t count(const std::string& method, const std::string& url_contains) {
    size_t n = 0;
    for (const auto& r : requests())
      if (r.method == method && r.url.find(url_contains) != std::string::npos) ++n;
    return n;
  }

 private:
  std::mutex mutex_;
  std::deque<FakeRule> rules_;
  std::vector<HttpRequest> requests_;
};

// A HubClient over a FakeTransport (endpoint http://hub.test, token "secret") whose retry sleeps
// are recorded instead of slept: the base of the client tests' fixtures.
struct FakeHub {
  FakeTransport fake;
  std::vector<double> sleeps;
  HubClient client;

  FakeHub() : client(config(), fake, retry_policy()) {}

 private:
  static HubConfig config() {
    HubConfig c;
    c.endpoint = "http://hub.test";
    c.token = "secret";
    return c;
  }
  RetryPolicy retry_policy() {
    RetryPolicy p;
    p.sleep = [this](double s) { sleeps.push_back(s); };
    return p;
  }
};

}  // namespace sla::hub::testing
