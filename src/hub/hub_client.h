// The Hub client core (hub-protocol.md sections 0, 1, 5.3 and 6): where the Hub is, who we are,
// how URLs are spelled, how every call is sent (Hub headers, retries with backoff) and how HTTP
// failures become typed errors. Upload and download build on it (upload.h, download.h).
#pragma once

#include "sla/hub/common/hub_text.h"

#include "transport.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

namespace sla::hub {

inline constexpr const char* kHfHubCompatVersion = "1.29.0";
// Redirects followed per request (curl's default limit of 50 made small and explicit).
inline constexpr int kMaxRedirects = 10;

// A failed Hub operation. code is the Hub's X-Error-Code when it sent one (RepoNotFound,
// RevisionNotFound, EntryNotFound, GatedRepo, ...), else one of ours: E_HUB_AUTH (401/403),
// E_HUB_NOT_FOUND (404 without a code), E_HUB_HTTP (another status), E_HUB_UNREACHABLE (no connection could be made), E_HUB_NETWORK (the exchange broke off), E_HUB_INTEGRITY (size or hash mismatch),
// E_HUB_PROTOCOL (an answer we cannot use), E_HUB_UNSAFE (a value the server sent, or a revision
// name, that would escape the cache or cannot be checked: untrusted.h). status is 0 when no HTTP
// answer applies.
class HubError : public std::runtime_error {
 public:
  HubError(std::string code, const std::string& message, int status = 0, std::string url = {});
  const std::string& code() const noexcept { return code_; }
  int status() const noexcept { return status_; }
  const std::string& url() const noexcept { return url_; }

 private:
  std::string code_;
  int status_;
  std::string url_;
};

// True when the error means the input cannot be used (the repo, revision or file does not exist,
// the repo is gated or disabled, authentication failed, the endpoint cannot be reached, or a value is
// unsafe), as opposed to a check that failed (integrity, protocol). Tools map it to exit code 2.
bool is_unusable_input(const HubError& error);

enum class RepoType { kModel, kDataset };
RepoType parse_repo_type(const std::string& name);  // "model" | "dataset"; throws std::invalid_argument

struct RepoRef {
  std::string id;  // "namespace/name"
  RepoType type = RepoType::kModel;

  std::string plural() const;      // models | datasets
  std::string web_prefix() const;  // "" | "datasets/"
};

// Throws std::invalid_argument unless id is namespace/name with [A-Za-z0-9._-], <= 96 chars, no
// "--" or "..", no trailing ".git".
void check_repo_id(const std::string& id);

// Environment lookups go through this so tests can script them.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_environment();

struct HubConfig {
  std::string endpoint = "https://huggingface.co";  // no trailing '/'
  std::optional<std::string> token;
  std::string user_agent;

  // HF_ENDPOINT; HF_TOKEN, HUGGING_FACE_HUB_TOKEN, then the token file (HF_TOKEN_PATH or $HF_HOME/token).
  static HubConfig from_environment(const EnvLookup& env, const std::string& toolkit_version);
};

std::string hf_home(const EnvLookup& env);  // HF_HOME > $XDG_CACHE_HOME/huggingface > ~/.cache/huggingface

// percent_encode, trim and is_lower_hex: hub_text.h (shared with the server).

// The protocol's backoff (section 6). sleep is injectable so tests run fast.
struct RetryPolicy {
  int max_retries = 5;
  double first_wait_s = 1, max_wait_s = 8;
  std::function<void(double seconds)> sleep;  // default: std::this_thread::sleep_for
};

class HubClient {
 public:
  HubClient(HubConfig config, HttpTransport& transport, RetryPolicy retry = {});

  const HubConfig& config() const { return config_; }
  HttpTransport& transport() { return transport_; }
  const RetryPolicy& retry_policy() const { return retry_; }

  std::string api_url(const RepoRef& repo, const std::string& tail) const;  // {E}/api/{Ts}/{ID}/{tail}
  std::string resolve_url(const RepoRef& repo, const std::string& revision, const std::string& path) const;

  // The Hub headers: authorization (when a token is known) and user-agent.
  HeaderList hub_headers() const;

  // One exchange, under the rules every request obeys: the token goes only to the endpoint's own
  // origin (scheme, host, port); when request.follow_redirects, 3xx answers are followed here (the
  // transport never follows), to http(s) only, at most kMaxRedirects, the token dropped as soon as
  // a hop leaves the endpoint. 303 (and 301/302 after a POST) continue as a GET without a body.
  HttpResponse perform(HttpRequest request);

  // Sends the request through perform(), retrying 408/429/5xx and dropped connections with backoff when `retry`;
  // a status >= 400 after that throws the mapped HubError. 3xx is returned.
  HttpResponse send(const HttpRequest& request, bool retry);
  // The wait before retry number `attempt` (0-based) after `response` (null: no answer).
  double backoff_seconds(int attempt, const HttpResponse* response) const;
  void sleep(double seconds) const;

  nlohmann::json send_json(const std::string& method, const std::string& url, const nlohmann::json* body, bool retry);

  // GET /api/{Ts}/{ID}/revision/{REV} -> the 40-hex commit of REV.
  std::string revision_sha(const RepoRef& repo, const std::string& revision);

  // POST /api/{Ts}/{ID}/branch/{BRANCH} from the default branch (as huggingface_hub's
  // create_branch); a branch that already exists is fine.
  void create_branch(const RepoRef& repo, const std::string& branch);

  // POST /api/repos/create; an existing repo is fine. Returns the repo URL.
  std::string create_repo(const RepoRef& repo, bool private_repo);

 private:
  HubConfig config_;
  std::string endpoint_origin_;
  HttpTransport& transport_;
  RetryPolicy retry_;
};

// The HubError for a response with status >= 400 (section 5.3 order of X-Error-Code checks).
HubError error_from_response(const HttpRequest& request, const HttpResponse& response);

bool is_retryable_status(int status);  // 408 429 500 502 503 504
bool is_commit_sha(const std::string& revision);  // ^[0-9a-f]{40}$

}  // namespace sla::hub
