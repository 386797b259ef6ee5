// What every request handler of the server gets: the shared state (store, faults, options) and
// one request with its decoded path segments, its body reader and the response to fill.
#pragma once

#include "sla/hub_server/faults.h"
#include "sla/hub_server/hub_server.h"
#include "repo_store.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace sla::hub::server {

// Request size limits (the README lists them). Every body is streamed against one of these, and
// the pre-routing check refuses a declared length above the largest before anything is read.
constexpr uint64_t kJsonBodyLimit = 8ull << 20;        // JSON API bodies (preupload, LFS batch, ...)
constexpr uint64_t kCommitBodyLimit = 1ull << 30;      // one NDJSON commit, inline files included
constexpr uint64_t kCommitLineLimit = 16ull << 20;     // one NDJSON line (an inline file < 10 MiB in base64)
constexpr uint64_t kCommitMetadataLimit = 32ull << 20; // paths and messages a commit keeps in memory
constexpr size_t kMaxBatchObjects = 1000;              // objects per LFS batch request
constexpr uint64_t kMaxPartsPerObject = 10000;         // parts of one multipart LFS upload
constexpr size_t kMaxBatchAnswer = 16ull << 20;        // bytes of URLs one LFS batch answer may hold

// The part size of a multipart upload of `size` bytes: the configured chunk, or larger so that no
// object needs more than kMaxPartsPerObject parts.
uint64_t multipart_chunk_for(const ServerOptions& options, uint64_t size);

struct ServerContext {
  RepoStore store;
  FaultPlan faults;
  ServerOptions options;
};

struct Call {
  const httplib::Request& req;
  httplib::Response& res;
  const httplib::ContentReader* body_reader;  // null when the request has no body
  std::vector<std::string> segments;          // the path, split at '/' and decoded per segment
  std::string base_url;                       // "http://<Host>", for absolute URLs in answers
  // Whether the body was read to its end: a keep-alive connection is only reusable when it was.
  enum class BodyState { kUnread, kRead, kBroken };
  mutable BodyState body_state = BodyState::kUnread;
  // The request carries the configured token, or (no token configured) any Authorization header.
  bool authenticated = false;

  bool is_head() const { return req.method == "HEAD"; }
  bool flag(const std::string& name) const;  // query "name=1" or "name=true"
  // The Content-Length the client declared; nothing when absent (chunked). The pre-routing check
  // of hub_server.cpp has already refused a malformed one.
  std::optional<uint64_t> declared_length() const;
  // The whole body; a 413 HttpError beyond limit.
  std::string read_body(size_t limit) const;
  // The body as a JSON object (parse_json_bounded); a 400 HttpError when it is not one.
  nlohmann::json read_json_object(size_t limit) const;
  // Streams the body to receive(data, size); returns the number of bytes. A 413 HttpError, before
  // anything is read when the declared length says so, once the body passes limit bytes.
  uint64_t stream_body(uint64_t limit, const std::function<void(const char*, size_t)>& receive) const;
  void reply_json(int status, const nlohmann::json& body, const std::string& content_type = "application/json");
};

// The repo named by a type ("models"/"datasets"), namespace and name; a 404 RepoNotFound
// HttpError when they do not form a valid Hub repo id.
RepoRef make_repo_ref(const std::string& type_plural, const std::string& ns, const std::string& name);
bool is_valid_repo_part(const std::string& part);
std::string join_segments(const std::vector<std::string>& segments, size_t from);
bool is_sha256_hex(const std::string& s);

// Handlers, grouped by file: api_handlers.cpp, lfs_handlers.cpp, download_handlers.cpp.
void handle_whoami(ServerContext& ctx, Call& call);
void handle_create_repo(ServerContext& ctx, Call& call);
void handle_validate_yaml(ServerContext& ctx, Call& call);
void handle_repo_info(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision);
void handle_tree(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision,
                 const std::string& path);
void handle_paths_info(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision);
void handle_create_branch(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& branch);
void handle_preupload(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision);
void handle_commit(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision);
void handle_list_refs(ServerContext& ctx, Call& call, const RepoRef& repo);
void handle_list_commits(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision);
void handle_create_tag(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision);
void handle_delete_tag(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& tag);
void handle_delete_branch(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& branch);
void handle_super_squash(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& branch);
void handle_repo_settings(ServerContext& ctx, Call& call, const RepoRef& repo);
void handle_delete_repo(ServerContext& ctx, Call& call);
// GET /api/models and /api/datasets: the repos of a type (public ones only for anonymous callers).
void handle_list_repos(ServerContext& ctx, Call& call, const std::string& type_plural);

void handle_lfs_batch(ServerContext& ctx, Call& call, const RepoRef& repo);
void handle_lfs_verify(ServerContext& ctx, Call& call, const RepoRef& repo);
// /_lfs/<type>/<ns>/<name>/<oid>[/part/<n> | /complete]: the signed upload targets handed out by
// the batch; the object becomes part of that repo once its bytes are checked.
void handle_lfs_upload(ServerContext& ctx, Call& call);

void handle_resolve(ServerContext& ctx, Call& call, const RepoRef& repo, const std::string& revision,
                    const std::string& path);
// /_blob/<sha256>/<path>: the signed content URL LFS resolves redirect to.
void handle_blob(ServerContext& ctx, Call& call);

}  // namespace sla::hub::server
