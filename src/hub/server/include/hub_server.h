// "sla-ckpt hub serve": a local server that speaks enough of the Hugging Face Hub protocol
// (hub-protocol.md section 8) for the real huggingface_hub client and our libcurl client: repos
// (models and datasets), preupload, LFS batch with basic and multipart uploads, NDJSON commits,
// pull-request refs, revision and tree listings, and resolve with Range. Storage is described in
// repo_store.h; fault injection for tests in faults.h.
#pragma once

#include "faults.h"
#include "sla/checkpoint/log.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sla::hub::server {

using sla::checkpoint::LogFn;
using sla::checkpoint::LogLevel;
using sla::checkpoint::log_to;

// Who may do what (as on the Hub): reads of public repos are open to anonymous callers; private
// repos are only seen with a token; writes need the token when one is configured. A caller is
// authenticated by "authorization: Bearer <token>" with the configured token or, when none is
// configured, by any Authorization header (then only private repos are out of anonymous reach).
struct ServerOptions {
  std::string root;
  std::string host = "127.0.0.1";
  int port = 0;        // 0: any free port
  std::string token;
  std::string user = "user";  // the whoami name, and the namespace of repos created without one
  std::vector<Fault> faults;
  uint64_t multipart_threshold = 64ull << 20;  // LFS objects above this are uploaded in parts
  uint64_t multipart_chunk = 16ull << 20;      // grown for an object that would need > 10000 parts
  uint64_t max_file_size = 50ull << 30;        // the largest LFS object a batch request may announce
  int64_t stale_upload_age_s = 24 * 3600;      // idle unfinished uploads and temp files are removed
  bool log_requests = false;                   // one kInfo line per request: "GET /path -> 200"
  // Where the server's lines go (requests, faults, internal errors, sweep failures); empty: nowhere.
  LogFn log;
};

class HubServer {
 public:
  explicit HubServer(ServerOptions options);
  ~HubServer();

  // Binds the listening socket, exclusively (a port another server listens on is refused);
  // returns the port (the chosen one when options.port is 0). Throws std::runtime_error naming
  // the address and the reason when it cannot be bound.
  int bind();
  // Serves until stop(), removing stale uploads on the way; call bind() first.
  void listen();
  // Thread-safe; makes listen() return.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sla::hub::server
