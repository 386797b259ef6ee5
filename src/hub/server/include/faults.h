// Fault injection for tests ("hub serve --fault SPEC"): each fault hits GETs of file content
// (resolve of a regular file, the blob URL of an LFS file) whose repo path matches a glob, a given
// number of times, so a test can say "the first GET of big.bin drops after 1 MiB".
//
// SPEC is KIND[:key=value,...]; a --fault-file holds a JSON array of objects with the same keys
// plus "kind". Keys: path (glob, '*' also matches '/', default "*"), times (a count or "always",
// default 1), after (bytes, with an optional K/M/G suffix in KiB units), code, retry_after.
//   drop          send `after` bytes (default 1M) of the body, then close the connection
//   truncate      Content-Length says the full size; send only `after` bytes (default: half) and close
//   status        answer `code` (default 500) with no content; 429 and 503 carry
//                 Retry-After: `retry_after` (default 1)
//   corrupt       send the full length, with bytes changed so the sha256 cannot match
//   ignore-range  answer a Range request with 200 and the whole body
#pragma once

#include "sla/checkpoint/log.h"

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace sla::hub::server {

using sla::checkpoint::LogFn;
using sla::checkpoint::LogLevel;
using sla::checkpoint::log_to;

struct Fault {
  enum Kind { kDrop, kTruncate, kStatus, kCorrupt, kIgnoreRange } kind = kStatus;
  std::string path_glob = "*";
  int64_t times = 1;  // < 0: every time
  std::optional<uint64_t> after;
  int code = 500;
  int retry_after = 1;
};

const char* fault_kind_name(Fault::Kind kind);

// Throws std::invalid_argument naming the bad part of the spec.
Fault parse_fault_spec(const std::string& spec);
std::vector<Fault> parse_fault_file(const std::string& path);

// The faults of one server; thread-safe.
class FaultPlan {
 public:
  // log gets one kInfo line per fault taken: "fault drop on big.bin (0 left)".
  explicit FaultPlan(std::vector<Fault> faults = {}, LogFn log = {}) : faults_(std::move(faults)), log_(std::move(log)) {}
  bool empty() const { return faults_.empty(); }
  // The first fault for this repo path with uses left, used up by one; nothing when none applies.
  std::optional<Fault> take(const std::string& repo_path);

 private:
  std::mutex mutex_;
  std::vector<Fault> faults_;
  LogFn log_;
};

}  // namespace sla::hub::server
