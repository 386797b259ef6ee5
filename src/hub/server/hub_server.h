// "sla-ckpt hub serve": a local server that speaks enough of the Hugging Face Hub protocol
// (hub-protocol.md section 8) for the real huggingface_hub client and our libcurl client: repos
// (models and datasets), preupload, LFS batch with basic and multipart uploads, NDJSON commits,
// pull-request refs, revision and tree listings, and resolve with Range. Storage is described in
// repo_store.h; fault injection for tests in faults.h.
#pragma once

#include "faults.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace slahub::server {

struct ServerOptions {
  std::string root;
  std::string host = "127.0.0.1";
  int port = 0;        // 0: any free port
  std::string token;   // when set, API calls need "authorization: Bearer <token>"
  std::string user = "user";  // the whoami name, and the namespace of repos created without one
  std::vector<Fault> faults;
  uint64_t multipart_threshold = 64ull << 20;  // LFS objects above this are uploaded in parts
  uint64_t multipart_chunk = 16ull << 20;
  bool log_requests = false;
};

class HubServer {
 public:
  explicit HubServer(ServerOptions options);
  ~HubServer();

  // Binds the listening socket; returns the port (the chosen one when options.port is 0).
  // Throws std::runtime_error when the address cannot be bound.
  int bind();
  // Serves until stop(); call bind() first.
  void listen();
  // Thread-safe; makes listen() return.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace slahub::server
