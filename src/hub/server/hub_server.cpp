#include "sla/hub_server/hub_server.h"

#include "call.h"
#include "http_error.h"
#include "url_codec.h"

#include <fmt/core.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <thread>

namespace sla::hub::server {
namespace {

using nlohmann::json;

constexpr size_t kThreads = 64;  // keep-alive connections hold a thread each
// httplib 0.11.4 lets an idle keep-alive connection wait out this timeout even after stop(), so it
// bounds how long a shutdown takes; clients check pooled connections before reuse.
constexpr time_t kKeepAliveSeconds = 2;

// The Host header, if it is a plain host[:port]; it makes answered URLs match what the client used.
std::string base_url_for(const httplib::Request& req, const ServerOptions& options, int port) {
  static const std::regex host_re(R"([A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?)");
  std::string host = req.get_header_value("Host");
  if (std::regex_match(host, host_re)) return "http://" + host;
  return "http://" + options.host + ":" + std::to_string(port);
}

std::string header_safe(const std::string& text) {
  std::string out;
  for (char c : text.substr(0, 400)) out += (c >= 0x20 && c < 0x7f) ? c : ' ';
  return out;
}

void reply_error(httplib::Response& res, int status, const std::string& code, const std::string& message) {
  res.status = status;
  if (!code.empty()) res.set_header("X-Error-Code", code);
  res.set_header("X-Error-Message", header_safe(message));
  res.set_content(json{{"error", message}}.dump(), "application/json");
}

// Sets call.authenticated; a 401 for a token that is not the configured one (as on the Hub, a
// wrong token is refused even where no token is needed).
void authenticate(Call& call, const ServerOptions& options) {
  std::string auth = call.req.get_header_value("Authorization");
  if (auth.empty()) return;
  const std::string prefix = "Bearer ";
  if (!options.token.empty() && (auth.size() < prefix.size() || !equal_constant_time(auth, prefix + options.token))) {
    throw HttpError(401, "Unauthorized", "Invalid credentials in Authorization header");
  }
  call.authenticated = true;
}

// Calls outside any repo (whoami, repo creation, YAML validation) need the token when one is set.
void require_login(const Call& call, const ServerOptions& options) {
  if (call.authenticated || options.token.empty()) return;
  throw HttpError(401, "Unauthorized", "Authorization header is required: this server was started with a token");
}

// Anonymous callers read public repos; a private repo answers them like a missing one (the Hub's
// 401 RepoNotFound, so its existence does not leak), and writes need the token when one is set.
void require_access(const ServerContext& ctx, const Call& call, const RepoRef& repo, bool write) {
  if (call.authenticated) return;
  if (write) require_login(call, ctx.options);
  if (!ctx.store.repo_exists(repo) || ctx.store.is_private(repo)) {
    throw HttpError(401, "RepoNotFound", "Repository not found: " + repo.id() + " (private repos need a token)");
  }
}

bool is_repo_type(const std::string& s) { return s == "models" || s == "datasets"; }

[[noreturn]] void not_found(const Call& call) {
  throw HttpError(404, "", "Not found: " + call.req.method + " " + call.req.path);
}

// huggingface_hub with hf_xet installed (its default) uploads LFS files through Xet, with no
// fallback to LFS; hf_xet reports only the status, so the fix goes to the server's log as well.
[[noreturn]] void refuse_xet(ServerContext& ctx, const Call& call) {
  const std::string message = "this server speaks Git LFS, not Xet: set HF_HUB_DISABLE_XET=1 for the client";
  log_to(ctx.options.log, LogLevel::kWarning, fmt::format("{} {}: {}", call.req.method, call.req.path, message));
  throw HttpError(501, "", message);
}

// /api/...
void route_api(ServerContext& ctx, Call& call) {
  const auto& s = call.segments;
  const std::string& m = call.req.method;
  bool get = m == "GET" || m == "HEAD";
  if (s.size() == 2 && is_repo_type(s[1]) && get) return handle_list_repos(ctx, call, s[1]);
  if (s.size() < 4 || !is_repo_type(s[1])) require_login(call, ctx.options);
  if (s.size() == 2 && s[1] == "whoami-v2" && get) return handle_whoami(ctx, call);
  if (s.size() == 3 && s[1] == "repos" && s[2] == "create" && m == "POST") return handle_create_repo(ctx, call);
  if (s.size() == 2 && s[1] == "validate-yaml" && m == "POST") return handle_validate_yaml(ctx, call);
  if (s.size() == 3 && s[1] == "repos" && s[2] == "delete" && m == "DELETE") return handle_delete_repo(ctx, call);
  if (s.size() < 4 || !is_repo_type(s[1])) not_found(call);
  RepoRef repo = make_repo_ref(s[1], s[2], s[3]);
  bool read = get || (s.size() >= 6 && s[4] == "paths-info");
  require_access(ctx, call, repo, !read);
  if (s.size() == 4 && get) return handle_repo_info(ctx, call, repo, "main");
  const std::string& action = s[4];
  if (s.size() == 5 && action == "refs" && get) return handle_list_refs(ctx, call, repo);
  if (s.size() == 5 && action == "settings" && m == "PUT") return handle_repo_settings(ctx, call, repo);
  if (s.size() >= 6) {
    if (action == "commits" && get) return handle_list_commits(ctx, call, repo, join_segments(s, 5));
    if (action == "tag" && m == "POST") return handle_create_tag(ctx, call, repo, join_segments(s, 5));
    if (action == "tag" && m == "DELETE") return handle_delete_tag(ctx, call, repo, join_segments(s, 5));
    if (action == "branch" && m == "DELETE") return handle_delete_branch(ctx, call, repo, join_segments(s, 5));
    if (action == "super-squash" && m == "POST") return handle_super_squash(ctx, call, repo, join_segments(s, 5));
    if (action == "revision" && get) return handle_repo_info(ctx, call, repo, join_segments(s, 5));
    if (action == "tree" && get) return handle_tree(ctx, call, repo, s[5], join_segments(s, 6));
    if (action == "branch" && m == "POST") return handle_create_branch(ctx, call, repo, join_segments(s, 5));
    if (action == "paths-info" && m == "POST") return handle_paths_info(ctx, call, repo, join_segments(s, 5));
    if (action == "preupload" && m == "POST") return handle_preupload(ctx, call, repo, join_segments(s, 5));
    if (action == "commit" && m == "POST") return handle_commit(ctx, call, repo, join_segments(s, 5));
    if (action == "xet-write-token" || action == "xet-read-token") refuse_xet(ctx, call);
  }
  not_found(call);
}

// /{P}{ns}/{name}/resolve/{REV}/{path} and /{P}{ns}/{name}.git/info/lfs/objects/{batch,verify}
void route_web(ServerContext& ctx, Call& call) {
  const auto& s = call.segments;
  size_t at = 0;
  std::string type = "models";
  if (!s.empty() && (s[0] == "datasets")) {
    type = s[0];
    at = 1;
  }
  if (s.size() < at + 2) not_found(call);
  const std::string& ns = s[at];
  const std::string& name = s[at + 1];
  const std::string& m = call.req.method;
  const std::string git_suffix = ".git";
  bool is_git = name.size() > git_suffix.size() && name.compare(name.size() - 4, 4, git_suffix) == 0;
  if (is_git && s.size() == at + 6 && s[at + 2] == "info" && s[at + 3] == "lfs" && s[at + 4] == "objects" &&
      m == "POST") {
    RepoRef repo = make_repo_ref(type, ns, name.substr(0, name.size() - 4));
    require_access(ctx, call, repo, true);
    if (s[at + 5] == "batch") return handle_lfs_batch(ctx, call, repo);
    if (s[at + 5] == "verify") return handle_lfs_verify(ctx, call, repo);
  }
  if (!is_git && s.size() >= at + 5 && s[at + 2] == "resolve" && (m == "GET" || m == "HEAD")) {
    RepoRef repo = make_repo_ref(type, ns, name);
    require_access(ctx, call, repo, false);
    return handle_resolve(ctx, call, repo, s[at + 3], join_segments(s, at + 4));
  }
  not_found(call);
}

void route(ServerContext& ctx, Call& call) {
  const auto& s = call.segments;
  // Upload and blob URLs are signed instead: the client sends them no authorization.
  if (!s.empty() && s[0] == "_lfs") return handle_lfs_upload(ctx, call);
  if (!s.empty() && s[0] == "_blob") return handle_blob(ctx, call);
  authenticate(call, ctx.options);
  if (s.empty()) not_found(call);
  if (s[0] == "api") return route_api(ctx, call);
  route_web(ctx, call);
}

// Sends the answer already in res, then closes the connection: the bytes of a body left unread
// must not be parsed as the next request. (httplib closes the socket after a content provider
// that fails, here once it has written the whole answer.)
void close_after_answer(httplib::Response& res) {
  std::string body = std::move(res.body);
  std::string content_type = res.get_header_value("Content-Type");
  res.body.clear();
  res.headers.erase("Content-Type");
  res.set_header("Content-Length", std::to_string(body.size()));
  res.set_header("Connection", "close");
  res.set_content_provider(content_type.empty() ? "application/json" : content_type,
                           [body](size_t, httplib::DataSink& sink) {
                             sink.write(body.data(), body.size());
                             return false;
                           });
}

// The largest body any handler accepts: a basic LFS PUT, a multipart part, or a commit.
uint64_t largest_request_body(const ServerOptions& options) {
  return std::max({options.multipart_threshold, multipart_chunk_for(options, options.max_file_size),
                   kCommitBodyLimit, kJsonBodyLimit});
}

// Checked after the headers and before any byte of the body is read: the method is one the
// server serves through its streaming handlers (httplib would read the body of others, PRI for
// one, whole into memory), and the declared length is well-formed, single and not beyond what
// any handler accepts. Returns an answer to send (and close) instead of routing, or nothing.
std::optional<HttpError> screen_request(const httplib::Request& req, uint64_t max_body) {
  static const std::set<std::string> methods = {"GET", "HEAD", "POST", "PUT", "DELETE"};
  if (!methods.count(req.method)) return HttpError(405, "", "method " + req.method + " is not served here");
  size_t lengths = req.get_header_value_count("Content-Length");
  bool chunked = req.has_header("Transfer-Encoding");
  if (lengths > 1 || (lengths == 1 && chunked)) {
    return HttpError(400, "", "a request needs one Content-Length or Transfer-Encoding, not several");
  }
  if (chunked && req.get_header_value("Transfer-Encoding") != "chunked") {
    return HttpError(400, "", "only Transfer-Encoding: chunked is supported");
  }
  if (lengths == 1) {
    std::string text = req.get_header_value("Content-Length");
    if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != std::string::npos) {
      return HttpError(400, "", "Content-Length is not a decimal number of at most 19 digits");
    }
    if (std::stoull(text) > max_body) {
      return HttpError(413, "", "request body of " + text + " bytes is larger than any this server accepts (" +
                                    std::to_string(max_body) + ")");
    }
  }
  return std::nullopt;
}

}  // namespace

struct HubServer::Impl {
  explicit Impl(ServerOptions options) : ctx{RepoStore(options.root), FaultPlan(options.faults, options.log), options} {}

  void serve(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader* reader) {
    // httplib has already decoded req.path as a whole; routing needs the raw path so that an
    // encoded '/' (refs%2Fpr%2F1) stays inside its segment.
    std::string raw_path = req.target.substr(0, req.target.find('?'));
    // Ranges are answered by serve_object alone: httplib 0.11.4 would otherwise also slice every
    // body (error JSON included) without bounds checks. The Request is httplib's non-const local,
    // handed to handlers as const, so clearing it here is well defined.
    const_cast<httplib::Request&>(req).ranges.clear();
    Call call{req, res, reader, {}, base_url_for(req, ctx.options, port)};
    try {
      call.segments = decode_path_segments(raw_path);
      route(ctx, call);
    } catch (const HttpError& e) {
      reply_error(res, e.status(), e.code(), e.what());
    } catch (const std::exception& e) {
      log_to(ctx.options.log, LogLevel::kError, fmt::format("{} {}: internal error: {}", req.method, raw_path, e.what()));
      reply_error(res, 500, "", std::string("internal server error: ") + e.what());
    }
    finish_body(call);
  }

  // Bytes of a body left unread would be parsed as the next request on this connection: drain a
  // small body the handler never read, and close the connection after a large one or one that
  // broke off midway.
  static void finish_body(Call& call) {
    if (call.body_state == Call::BodyState::kUnread && call.body_reader) {
      try {
        call.stream_body(kDrainLimit, [](const char*, size_t) {});
      } catch (const std::exception&) {
      }
    }
    if (call.body_state == Call::BodyState::kBroken) close_after_answer(call.res);
  }

  // Removes stale uploads every so often until stop().
  void sweep_until_stopped() {
    const auto period = std::chrono::seconds(std::clamp<int64_t>(ctx.options.stale_upload_age_s / 2, 1, 600));
    std::unique_lock<std::mutex> lock(sweep_mutex);
    while (!stopping) {
      sweep_wake.wait_for(lock, period, [this] { return stopping; });
      if (stopping) break;
      lock.unlock();  // stop() must not wait for a sweep
      try {
        ctx.store.remove_stale_uploads(ctx.options.stale_upload_age_s);
      } catch (const std::exception& e) {
        log_to(ctx.options.log, LogLevel::kWarning, fmt::format("removing stale uploads: {}", e.what()));
      }
      lock.lock();
    }
  }

  static constexpr uint64_t kDrainLimit = 1 << 20;

  ServerContext ctx;
  httplib::Server http;
  int port = 0;
  std::mutex sweep_mutex;
  std::condition_variable sweep_wake;
  bool stopping = false;
};

HubServer::HubServer(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  auto& http = impl_->http;
  Impl* impl = impl_.get();
  http.new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
  http.set_keep_alive_max_count(1000);
  http.set_keep_alive_timeout(kKeepAliveSeconds);
  http.set_read_timeout(120);
  http.set_write_timeout(120);
  // httplib's default adds SO_REUSEPORT, with which a second server binds the same port and the
  // kernel splits connections between them. SO_REUSEADDR alone still lets a restart bind over
  // TIME_WAIT connections, but not over a socket that is listening.
  http.set_socket_options([](auto sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  const uint64_t max_body = largest_request_body(impl->ctx.options);
  http.set_payload_max_length(max_body);
  http.set_pre_routing_handler([max_body](const httplib::Request& req, httplib::Response& res) {
    std::optional<HttpError> refusal = screen_request(req, max_body);
    if (!refusal) return httplib::Server::HandlerResponse::Unhandled;
    reply_error(res, refusal->status(), refusal->code(), refusal->what());
    close_after_answer(res);
    return httplib::Server::HandlerResponse::Handled;
  });
  auto plain = [impl](const httplib::Request& req, httplib::Response& res) { impl->serve(req, res, nullptr); };
  auto with_body = [impl](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    impl->serve(req, res, &reader);
  };
  http.Get(".*", plain);  // also HEAD
  http.Post(".*", with_body);
  http.Post(".*", plain);  // a POST without a body (Content-Length: 0)
  http.Put(".*", with_body);
  http.Put(".*", plain);
  http.Delete(".*", with_body);
  http.Delete(".*", plain);
  if (impl->ctx.options.log_requests) {
    http.set_logger([impl](const httplib::Request& req, const httplib::Response& res) {
      log_to(impl->ctx.options.log, LogLevel::kInfo, fmt::format("{} {} -> {}", req.method, req.target, res.status));
    });
  }
}

HubServer::~HubServer() = default;

int HubServer::bind() {
  auto& opts = impl_->ctx.options;
  errno = 0;
  int port = opts.port == 0 ? impl_->http.bind_to_any_port(opts.host) : opts.port;
  if (port <= 0 || (opts.port != 0 && !impl_->http.bind_to_port(opts.host, opts.port))) {
    int error = errno;
    throw std::runtime_error("cannot listen on " + opts.host + ":" + std::to_string(opts.port) + ": " +
                             (error != 0 ? std::strerror(error) : "not a local address?"));
  }
  impl_->port = port;
  return port;
}

void HubServer::listen() {
  std::thread sweeper([impl = impl_.get()] { impl->sweep_until_stopped(); });
  impl_->http.listen_after_bind();
  stop();
  sweeper.join();
}

void HubServer::stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->sweep_mutex);
    impl_->stopping = true;
  }
  impl_->sweep_wake.notify_all();
  impl_->http.stop();
}

}  // namespace sla::hub::server
