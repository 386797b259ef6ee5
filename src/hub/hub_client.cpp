#include "hub_client.h"

#include "sla/hub/common/hub_text.h"
#include "untrusted.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace sla::hub {

HubError::HubError(std::string code, const std::string& message, int status, std::string url)
    : std::runtime_error(code + ": " + message), code_(std::move(code)), status_(status), url_(std::move(url)) {}

bool is_unusable_input(const HubError& error) {
  static const char* const kUnusable[] = {"RepoNotFound", "RevisionNotFound", "EntryNotFound", "GatedRepo", "DisabledRepo",
                                          "E_HUB_NOT_FOUND", "E_HUB_AUTH", "E_HUB_UNREACHABLE", "E_HUB_UNSAFE"};
  for (const char* code : kUnusable)
    if (error.code() == code) return true;
  return false;
}

RepoType parse_repo_type(const std::string& name) {
  if (name == "model") return RepoType::kModel;
  if (name == "dataset") return RepoType::kDataset;
  throw std::invalid_argument("repo type must be model or dataset, got '" + name + "'");
}

std::string RepoRef::plural() const { return type == RepoType::kModel ? "models" : "datasets"; }
std::string RepoRef::web_prefix() const { return type == RepoType::kModel ? "" : "datasets/"; }

void check_repo_id(const std::string& id) {
  static const std::regex shape("^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$");
  const auto bad = [&](const std::string& why) { throw std::invalid_argument("repo id '" + id + "': " + why); };
  if (!std::regex_match(id, shape)) bad("must be namespace/name using letters, digits, '.', '_' and '-'");
  if (id.size() > 96) bad("longer than 96 characters");
  if (id.find("--") != std::string::npos || id.find("..") != std::string::npos) bad("'--' and '..' are not allowed");
  if (id.size() >= 4 && id.compare(id.size() - 4, 4, ".git") == 0) bad("must not end with .git");
}

EnvLookup process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (!value) return std::nullopt;
    return std::string(value);
  };
}

namespace {

std::string expand_home(const std::string& path, const EnvLookup& env) {
  if (path.rfind("~", 0) == 0) return env("HOME").value_or("") + path.substr(1);
  return path;
}

std::optional<std::string> non_empty(const std::optional<std::string>& value) {
  if (value && !value->empty()) return value;
  return std::nullopt;
}

}  // namespace

std::string hf_home(const EnvLookup& env) {
  if (auto home = non_empty(env("HF_HOME"))) return expand_home(*home, env);
  if (auto xdg = non_empty(env("XDG_CACHE_HOME"))) return expand_home(*xdg, env) + "/huggingface";
  return env("HOME").value_or("") + "/.cache/huggingface";
}

HubConfig HubConfig::from_environment(const EnvLookup& env, const std::string& toolkit_version) {
  HubConfig config;
  if (auto endpoint = non_empty(env("HF_ENDPOINT"))) {
    config.endpoint = *endpoint;
    while (!config.endpoint.empty() && config.endpoint.back() == '/') config.endpoint.pop_back();
  }
  if (auto token = non_empty(env("HF_TOKEN"))) {
    config.token = *token;
  } else if (auto legacy = non_empty(env("HUGGING_FACE_HUB_TOKEN"))) {
    config.token = *legacy;
  } else {
    // The whole file, every \r and \n deleted, surrounding whitespace trimmed; empty means none.
    const std::string path = expand_home(non_empty(env("HF_TOKEN_PATH")).value_or(hf_home(env) + "/token"), env);
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::stringstream text;
      text << in.rdbuf();
      std::string token = text.str();
      token.erase(std::remove_if(token.begin(), token.end(), [](char c) { return c == '\r' || c == '\n'; }), token.end());
      token = trim(token);
      if (!token.empty()) config.token = token;
    }
  }
  config.user_agent = "sla-toolkit/" + toolkit_version + "; hf_hub/" + kHfHubCompatVersion;
  return config;
}

bool is_retryable_status(int status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

bool is_commit_sha(const std::string& revision) {
  return revision.size() == 40 && is_lower_hex(revision);
}

HubError error_from_response(const HttpRequest& request, const HttpResponse& response) {
  const std::string code_header = response.header("x-error-code").value_or("");
  const std::string server_message = response.header("x-error-message").value_or("");
  // The message: X-Error-Message, then the JSON body's error / error_description / errors[].message,
  // else a short plain-text body.
  std::string detail = server_message;
  auto add = [&](const std::string& part) {
    if (!part.empty() && detail.find(part) == std::string::npos) detail += (detail.empty() ? "" : "; ") + part;
  };
  const auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (body.is_object()) {
    if (body.contains("error")) {
      if (body["error"].is_string()) add(body["error"].get<std::string>());
      else if (body["error"].is_array())
        for (const auto& e : body["error"]) if (e.is_string()) add(e.get<std::string>());
    }
    if (body.contains("error_description") && body["error_description"].is_string())
      add(body["error_description"].get<std::string>());
    if (body.contains("errors") && body["errors"].is_array())
      for (const auto& e : body["errors"])
        if (e.is_object() && e.contains("message") && e["message"].is_string()) add(e["message"].get<std::string>());
  } else if (!response.body.empty() && response.body.size() < 500 && response.body.find('<') == std::string::npos) {
    add(trim(response.body));
  }

  std::string code, what;
  if (code_header == "RevisionNotFound") {
    code = code_header, what = "revision not found";
  } else if (code_header == "EntryNotFound") {
    code = code_header, what = "file not found in the repository";
  } else if (code_header == "GatedRepo") {
    code = code_header, what = "the repository is gated: accept its conditions on the Hub and use a token with access";
  } else if (server_message == "Access to this resource is disabled.") {
    code = "DisabledRepo", what = "the repository is disabled";
  } else if (code_header == "RepoNotFound") {
    code = code_header, what = "repository not found (or private and the token has no access)";
  } else if (response.status == 401) {
    code = "E_HUB_AUTH", what = "authentication failed: set HF_TOKEN or log in (hf auth login)";
  } else if (response.status == 403) {
    code = "E_HUB_AUTH", what = "forbidden: the token lacks the permission (a write token is needed to push)";
  } else if (response.status == 404) {
    code = "E_HUB_NOT_FOUND", what = "not found (no such repository, revision or file)";
  } else if (response.status == 429) {
    code = "E_HUB_HTTP", what = "rate limited";
  } else if (response.status == 416) {
    code = "E_HUB_HTTP", what = "range not satisfiable (Range: " +
                                [&] { for (auto& [n, v] : request.headers) if (n == "Range") return v; return std::string(); }() + ")";
  } else {
    code = code_header.empty() ? "E_HUB_HTTP" : code_header, what = "request failed";
  }
  std::string message = fmt::format("{} (HTTP {} {} {})", what, response.status, request.method, request.url);
  // The server's words are shown escaped: one line, no terminal control sequences.
  if (!detail.empty()) message += ": " + escape_untrusted(detail);
  if (auto id = response.header("x-request-id")) message += " [request id " + escape_untrusted(*id) + "]";
  return HubError(code, message, response.status, request.url);
}

HubClient::HubClient(HubConfig config, HttpTransport& transport, RetryPolicy retry)
    : config_(std::move(config)), endpoint_origin_(url_origin(config_.endpoint)), transport_(transport), retry_(std::move(retry)) {}

std::string HubClient::api_url(const RepoRef& repo, const std::string& tail) const {
  return config_.endpoint + "/api/" + repo.plural() + "/" + repo.id + (tail.empty() ? "" : "/" + tail);
}

std::string HubClient::resolve_url(const RepoRef& repo, const std::string& revision, const std::string& path) const {
  return config_.endpoint + "/" + repo.web_prefix() + repo.id + "/resolve/" + percent_encode(revision, false) + "/" +
         percent_encode(path, true);
}

HeaderList HubClient::hub_headers() const {
  HeaderList headers{{"user-agent", config_.user_agent}};
  if (config_.token) headers.emplace_back("authorization", "Bearer " + *config_.token);
  return headers;
}

double HubClient::backoff_seconds(int attempt, const HttpResponse* response) const {
  if (response && response->status == 429) {
    // RateLimit: "api";r=0;t=N (seconds until reset), else Retry-After: N (integer seconds): N + 1.
    static const std::regex reset_in(R"(t=(\d+))");
    std::smatch m;
    const std::string rate_limit = response->header("ratelimit").value_or("");
    if (std::regex_search(rate_limit, m, reset_in)) return std::stod(m[1]) + 1;
    const std::string retry_after = response->header("retry-after").value_or("");
    if (!retry_after.empty() && std::all_of(retry_after.begin(), retry_after.end(), ::isdigit))
      return std::stod(retry_after) + 1;
  }
  double wait = retry_.first_wait_s;
  for (int i = 0; i < attempt; ++i) wait = std::min(wait * 2, retry_.max_wait_s);
  return wait;
}

void HubClient::sleep(double seconds) const {
  if (retry_.sleep) return retry_.sleep(seconds);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

namespace {

bool is_redirect_status(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

void erase_header(HeaderList& headers, const std::string& name) {
  headers.erase(std::remove_if(headers.begin(), headers.end(),
                               [&](const auto& h) {
                                 return h.first.size() == name.size() &&
                                        std::equal(h.first.begin(), h.first.end(), name.begin(), [](char a, char b) {
                                          return std::tolower(static_cast<unsigned char>(a)) == b;
                                        });
                               }),
                headers.end());
}

}  // namespace

HttpResponse HubClient::perform(HttpRequest request) {
  const std::string first_url = request.url;
  for (int hop = 0;; ++hop) {
    if (endpoint_origin_.empty() || url_origin(request.url) != endpoint_origin_) erase_header(request.headers, "authorization");
    HttpResponse response = transport_.perform(request);
    const auto location = response.header("location");
    if (!request.follow_redirects || !is_redirect_status(response.status) || !location) return response;
    if (hop == kMaxRedirects)
      throw HubError("E_HUB_PROTOCOL",
                     "more than " + std::to_string(kMaxRedirects) + " redirects (" + request.method + " " + first_url +
                         ", last to \"" + escape_untrusted(*location) + "\")",
                     response.status, first_url);
    request.url = resolve_location(request.url, *location);
    if ((response.status == 303 && request.method != "HEAD") ||
        ((response.status == 301 || response.status == 302) && request.method == "POST")) {
      request.method = "GET";
      request.body.clear();
      request.body_file.reset();
      erase_header(request.headers, "content-type");
    }
  }
}

HttpResponse HubClient::send(const HttpRequest& request, bool retry) {
  for (int attempt = 0;; ++attempt) {
    const bool last = !retry || attempt >= retry_.max_retries;
    try {
      HttpResponse response = perform(request);
      if (response.status >= 400) {
        if (last || !is_retryable_status(response.status)) throw error_from_response(request, response);
        sleep(backoff_seconds(attempt, &response));
        continue;
      }
      return response;
    } catch (const TransportError& e) {
      if (last) throw HubError(e.unreachable() ? "E_HUB_UNREACHABLE" : "E_HUB_NETWORK", std::string(e.what()) + (retry ? " (after retries)" : ""), 0, request.url);
      sleep(backoff_seconds(attempt, nullptr));
    }
  }
}

nlohmann::json HubClient::send_json(const std::string& method, const std::string& url, const nlohmann::json* body, bool retry) {
  HttpRequest request;
  request.method = method;
  request.url = url;
  request.headers = hub_headers();
  if (body) {
    request.body = body->dump();
    request.headers.emplace_back("Content-Type", "application/json");
  }
  request.follow_redirects = true;
  const HttpResponse response = send(request, retry);
  auto parsed = nlohmann::json::parse(response.body, nullptr, false);
  if (parsed.is_discarded())
    throw HubError("E_HUB_PROTOCOL", "the answer is not JSON (" + method + " " + url + ")", response.status, url);
  return parsed;
}

std::string HubClient::revision_sha(const RepoRef& repo, const std::string& revision) {
  const std::string url = api_url(repo, "revision/" + percent_encode(revision, false));
  const auto info = send_json("GET", url, nullptr, false);
  if (!info.is_object() || !info.contains("sha") || !info["sha"].is_string())
    throw HubError("E_HUB_PROTOCOL", "revision answer has no 'sha' string (GET " + url + ")", 200, url);
  return checked_commit(info["sha"].get<std::string>(), "revision answer 'sha'", "GET " + url);
}

void HubClient::create_branch(const RepoRef& repo, const std::string& branch) {
  HttpRequest request;
  request.method = "POST";
  request.url = api_url(repo, "branch/" + percent_encode(branch, false));
  request.headers = hub_headers();
  HttpResponse response;
  try {
    response = perform(request);
  } catch (const TransportError& e) {
    throw HubError(e.unreachable() ? "E_HUB_UNREACHABLE" : "E_HUB_NETWORK", e.what(), 0, request.url);
  }
  if (response.status == 409) return;  // exists: fine
  if (response.status >= 400) throw error_from_response(request, response);
}

std::string HubClient::create_repo(const RepoRef& repo, bool private_repo) {
  const auto slash = repo.id.find('/');
  nlohmann::json body{{"name", repo.id.substr(slash + 1)}, {"organization", repo.id.substr(0, slash)}};
  if (repo.type == RepoType::kDataset) body["type"] = "dataset";
  if (private_repo) body["visibility"] = "private";
  const std::string url = config_.endpoint + "/api/repos/create";
  HttpRequest request;
  request.method = "POST";
  request.url = url;
  request.headers = hub_headers();
  request.headers.emplace_back("Content-Type", "application/json");
  request.body = body.dump();
  HttpResponse response;
  try {
    response = perform(request);
  } catch (const TransportError& e) {
    throw HubError(e.unreachable() ? "E_HUB_UNREACHABLE" : "E_HUB_NETWORK", e.what(), 0, url);
  }
  if (response.status == 409) return config_.endpoint + "/" + repo.web_prefix() + repo.id;  // exists: fine
  if (response.status >= 400) throw error_from_response(request, response);
  const auto parsed = nlohmann::json::parse(response.body, nullptr, false);
  if (parsed.is_object() && parsed.contains("url") && parsed["url"].is_string()) return parsed["url"].get<std::string>();
  return config_.endpoint + "/" + repo.web_prefix() + repo.id;
}

}  // namespace sla::hub
