// The one error type of the server's request handlers: an HTTP status plus the Hub's
// X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound, ...; empty when the status says it
// all). The router turns it into a JSON body {"error": message} and the X-Error-* headers the
// huggingface_hub client maps to its exception types.
#pragma once

#include <stdexcept>
#include <string>

namespace sla::hub::server {

class HttpError : public std::runtime_error {
 public:
  HttpError(int status, std::string code, const std::string& message)
      : std::runtime_error(message), status_(status), code_(std::move(code)) {}
  int status() const noexcept { return status_; }
  const std::string& code() const noexcept { return code_; }

 private:
  int status_;
  std::string code_;
};

inline HttpError bad_request(const std::string& message) { return HttpError(400, "", message); }

}  // namespace sla::hub::server
