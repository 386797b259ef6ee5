// sla-ckpt hub serve: run the local Hub-compatible server (src/hub/server) until SIGINT/SIGTERM.
#include "cli.h"

#include "sla/checkpoint/durable_file.h"
#include "sla/hub_server/hub_server.h"
#include "sla/hub/common/hub_text.h"

#include <fmt/core.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <memory>
#include <thread>

namespace sla::cli {
namespace {

struct ServeOptions {
  sla::hub::server::ServerOptions server;
  std::vector<std::string> fault_specs;
  std::string fault_file;
  std::string port_file;
  std::string token_file;
  std::string token_on_command_line;  // deprecated: visible to every user through ps
};

constexpr const char* kTokenEnv = "SLA_HUB_TOKEN";

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) throw std::runtime_error("cannot read " + path);
  return text.str();
}

// The token, from --token-file (whole file, surrounding whitespace and line ends dropped, like
// the client's token file), else from --token, else from $SLA_HUB_TOKEN; empty: none.
std::string configured_token(const ServeOptions& opts) {
  if (!opts.token_file.empty()) {
    std::string token = sla::hub::trim(read_text_file(opts.token_file));
    if (token.empty()) throw std::invalid_argument("--token-file " + opts.token_file + " is empty");
    return token;
  }
  if (!opts.token_on_command_line.empty()) {
    fmt::print(stderr, "hub serve: warning: --token shows the token to every user of this machine (ps); "
                       "use --token-file or ${}\n", kTokenEnv);
    return opts.token_on_command_line;
  }
  const char* env = std::getenv(kTokenEnv);
  return env ? sla::hub::trim(env) : std::string();
}

// Stops the server on SIGINT/SIGTERM. The signals are blocked in every thread (they inherit the
// mask) and taken by one sigwait thread, so stop() runs in ordinary thread context.
class SignalStopper {
 public:
  explicit SignalStopper(sla::hub::server::HubServer& server) {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
    watcher_ = std::thread([this, &server] {
      int signal = 0;
      sigwait(&signals_, &signal);
      if (!done_) fmt::print(stderr, "hub serve: stopping on {}\n", signal == SIGINT ? "SIGINT" : "SIGTERM");
      server.stop();
    });
  }
  ~SignalStopper() {
    done_ = true;
    pthread_kill(watcher_.native_handle(), SIGTERM);  // wakes the watcher when the server ended by itself
    watcher_.join();
  }

 private:
  sigset_t signals_;
  std::atomic<bool> done_{false};
  std::thread watcher_;
};

// The server's lines go to stderr, as "hub serve: <line>".
void log_to_stderr(sla::checkpoint::LogLevel, std::string_view line) { fmt::print(stderr, "hub serve: {}\n", line); }

Exit run_serve(ServeOptions& opts) {
  for (const auto& spec : opts.fault_specs) opts.server.faults.push_back(sla::hub::server::parse_fault_spec(spec));
  if (!opts.fault_file.empty()) {
    for (auto& f : sla::hub::server::parse_fault_file(opts.fault_file)) opts.server.faults.push_back(f);
  }
  if (opts.server.multipart_chunk == 0) throw std::invalid_argument("--multipart-chunk must be positive");
  opts.server.token = configured_token(opts);
  opts.server.log = log_to_stderr;
  signal(SIGPIPE, SIG_IGN);  // a client that hangs up mid-body must not kill the server
  sla::hub::server::HubServer server(opts.server);
  SignalStopper stopper(server);
  int port = server.bind();
  if (!opts.port_file.empty()) {
    const std::string text = std::to_string(port) + "\n";
    sla::checkpoint::write_file_durably(opts.port_file, reinterpret_cast<const uint8_t*>(text.data()), text.size(),
                                [](const std::string&) {});
  }
  fmt::print(stderr, "hub serve: root {}{}{}\n", opts.server.root, opts.server.token.empty() ? "" : ", token required",
             opts.server.faults.empty() ? "" : fmt::format(", {} fault(s) armed", opts.server.faults.size()));
  fmt::print(stderr, "listening on http://{}:{}\n", opts.server.host, port);
  server.listen();
  return kOk;
}

}  // namespace

Subcommand register_hub(CLI::App& parent) {
  auto opts = std::make_shared<ServeOptions>();
  Subcommand sub;
  sub.app = parent.add_subcommand("hub", "Local Hugging Face Hub-compatible server");
  sub.app->require_subcommand(1);
  CLI::App* serve = sub.app->add_subcommand("serve", "Serve repos stored under --root over HTTP (loopback by default)");
  serve->footer(
      "Example:\n"
      "  sla-ckpt hub serve --root ./hub-data --port 8080 &\n"
      "  HF_ENDPOINT=http://127.0.0.1:8080 HF_HUB_DISABLE_XET=1 HF_TOKEN=x sla-ckpt push ./model me/model\n"
      "Token: --token-file FILE or $SLA_HUB_TOKEN (--token VALUE is deprecated: ps shows it). With a token,\n"
      "writes and private repos need it and public repos are readable anonymously; without one, private\n"
      "repos still need some Authorization header.\n"
      "Fault injection (tests): --fault 'drop:path=big.bin,after=1M,times=1', kinds drop, truncate,\n"
      "status (code=500|429|...), corrupt, ignore-range; times=N or always; see src/hub/server/include/faults.h.");
  serve->add_option("--root", opts->server.root, "Folder that holds repos, objects and refs (created if missing)")
      ->required();
  serve->add_option("--host", opts->server.host, "Address to listen on")->capture_default_str();
  serve->add_option("--port", opts->server.port, "Port; 0 picks a free one")->capture_default_str()->check(CLI::Range(0, 65535));
  serve->add_option("--port-file", opts->port_file, "Write the port here once listening (for scripts and tests)");
  auto* token_file = serve->add_option("--token-file", opts->token_file,
                                       "File holding the token that writes and private repos need")
                         ->check(CLI::ExistingFile);
  serve->add_option("--token", opts->token_on_command_line, "Deprecated (ps shows it): use --token-file or $SLA_HUB_TOKEN")
      ->excludes(token_file);
  serve->add_option("--user", opts->server.user, "Name whoami reports; namespace of repos created without one")
      ->capture_default_str();
  serve->add_option("--fault", opts->fault_specs, "Inject a fault on content GETs: KIND[:key=value,...] (repeatable)");
  serve->add_option("--fault-file", opts->fault_file, "JSON array of faults ({\"kind\": ..., \"path\": ..., ...})")
      ->check(CLI::ExistingFile);
  serve->add_option("--multipart-threshold", opts->server.multipart_threshold,
                    "LFS objects larger than this many bytes are uploaded in parts")
      ->capture_default_str();
  serve->add_option("--multipart-chunk", opts->server.multipart_chunk, "Part size of multipart LFS uploads")
      ->capture_default_str();
  serve->add_option("--max-file-size", opts->server.max_file_size,
                    "Largest LFS object (bytes) an upload may announce; larger ones get a 413")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  serve->add_option("--stale-upload-age", opts->server.stale_upload_age_s,
                    "Seconds after which an idle unfinished upload or temp file is removed")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  serve->add_flag("--log-requests", opts->server.log_requests, "Log every request on stderr");
  sub.name = "hub serve";
  sub.run = [opts, serve]() -> int {
    if (!serve->parsed()) return int(kUnusable);
    try {
      return run_serve(*opts);
    } catch (const std::exception& e) {  // every failure is before listening: bad arguments or root
      throw CliError(kUnusable, e.what());
    }
  };
  return sub;
}

}  // namespace sla::cli
