#include "hub_server.h"

#include "call.h"
#include "http_error.h"
#include "url_codec.h"

#include <fmt/core.h>

#include <regex>

namespace slahub::server {
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

// Everything but the signed upload and blob URLs needs the token, when one is configured.
void check_token(const Call& call, const ServerOptions& options) {
  if (options.token.empty()) return;
  const std::string& first = call.segments.empty() ? std::string() : call.segments[0];
  if (first == "_lfs" || first == "_blob") return;
  std::string auth = call.req.get_header_value("Authorization");
  if (auth.empty()) {
    throw HttpError(401, "Unauthorized", "Authorization header is required: this server was started with --token");
  }
  const std::string prefix = "Bearer ";
  if (auth.size() < prefix.size() || !equal_constant_time(auth, prefix + options.token)) {
    throw HttpError(401, "Unauthorized", "Invalid credentials in Authorization header");
  }
}

bool is_repo_type(const std::string& s) { return s == "models" || s == "datasets"; }

[[noreturn]] void not_found(const Call& call) {
  throw HttpError(404, "", "Not found: " + call.req.method + " " + call.req.path);
}

// /api/...
void route_api(ServerContext& ctx, Call& call) {
  const auto& s = call.segments;
  const std::string& m = call.req.method;
  bool get = m == "GET" || m == "HEAD";
  if (s.size() == 2 && s[1] == "whoami-v2" && get) return handle_whoami(ctx, call);
  if (s.size() == 3 && s[1] == "repos" && s[2] == "create" && m == "POST") return handle_create_repo(ctx, call);
  if (s.size() == 2 && s[1] == "validate-yaml" && m == "POST") return handle_validate_yaml(ctx, call);
  if (s.size() < 4 || !is_repo_type(s[1])) not_found(call);
  RepoRef repo = make_repo_ref(s[1], s[2], s[3]);
  if (s.size() == 4 && get) return handle_repo_info(ctx, call, repo, "main");
  const std::string& action = s[4];
  if (s.size() >= 6) {
    if (action == "revision" && get) return handle_repo_info(ctx, call, repo, join_segments(s, 5));
    if (action == "tree" && get) return handle_tree(ctx, call, repo, s[5], join_segments(s, 6));
    if (action == "branch" && m == "POST") return handle_create_branch(ctx, call, repo, join_segments(s, 5));
    if (action == "paths-info" && m == "POST") return handle_paths_info(ctx, call, repo, join_segments(s, 5));
    if (action == "preupload" && m == "POST") return handle_preupload(ctx, call, repo, join_segments(s, 5));
    if (action == "commit" && m == "POST") return handle_commit(ctx, call, repo, join_segments(s, 5));
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
    if (s[at + 5] == "batch") return handle_lfs_batch(ctx, call, repo);
    if (s[at + 5] == "verify") return handle_lfs_verify(ctx, call);
  }
  if (!is_git && s.size() >= at + 5 && s[at + 2] == "resolve" && (m == "GET" || m == "HEAD")) {
    return handle_resolve(ctx, call, make_repo_ref(type, ns, name), s[at + 3], join_segments(s, at + 4));
  }
  not_found(call);
}

void route(ServerContext& ctx, Call& call) {
  check_token(call, ctx.options);
  const auto& s = call.segments;
  if (s.empty()) not_found(call);
  if (s[0] == "api") return route_api(ctx, call);
  if (s[0] == "_lfs") return handle_lfs_upload(ctx, call);
  if (s[0] == "_blob") return handle_blob(ctx, call);
  route_web(ctx, call);
}

}  // namespace

struct HubServer::Impl {
  explicit Impl(ServerOptions options) : ctx{RepoStore(options.root), FaultPlan(options.faults), options} {}

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
      fmt::print(stderr, "hub serve: {} {}: internal error: {}\n", req.method, raw_path, e.what());
      reply_error(res, 500, "", std::string("internal server error: ") + e.what());
    }
    finish_body(call);
  }

  // Bytes of a body left unread would be parsed as the next request on this connection: drain a
  // body the handler never read, and close the connection after a body that broke off midway.
  static void finish_body(Call& call) {
    if (call.body_state == Call::BodyState::kUnread && call.body_reader) {
      try {
        call.stream_body([](const char*, size_t) {});
      } catch (const std::exception&) {
      }
    }
    if (call.body_state != Call::BodyState::kBroken) return;
    auto& res = call.res;
    std::string body = std::move(res.body);
    std::string content_type = res.get_header_value("Content-Type");
    res.body.clear();
    res.headers.erase("Content-Type");
    res.set_header("Content-Length", std::to_string(body.size()));
    res.set_header("Connection", "close");
    // A provider that fails after writing makes httplib close the socket once the answer is out.
    res.set_content_provider(content_type.empty() ? "application/json" : content_type,
                             [body](size_t, httplib::DataSink& sink) {
                               sink.write(body.data(), body.size());
                               return false;
                             });
  }

  ServerContext ctx;
  httplib::Server http;
  int port = 0;
};

HubServer::HubServer(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  auto& http = impl_->http;
  Impl* impl = impl_.get();
  http.new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
  http.set_keep_alive_max_count(1000);
  http.set_keep_alive_timeout(kKeepAliveSeconds);
  http.set_read_timeout(120);
  http.set_write_timeout(120);
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
    http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      fmt::print(stderr, "hub serve: {} {} -> {}\n", req.method, req.target, res.status);
    });
  }
}

HubServer::~HubServer() = default;

int HubServer::bind() {
  auto& opts = impl_->ctx.options;
  int port = opts.port == 0 ? impl_->http.bind_to_any_port(opts.host) : opts.port;
  if (port <= 0 || (opts.port != 0 && !impl_->http.bind_to_port(opts.host, opts.port))) {
    throw std::runtime_error("cannot listen on " + opts.host + ":" + std::to_string(opts.port) +
                             " (address in use, or not a local address?)");
  }
  impl_->port = port;
  return port;
}

void HubServer::listen() { impl_->http.listen_after_bind(); }

void HubServer::stop() { impl_->http.stop(); }

}  // namespace slahub::server
