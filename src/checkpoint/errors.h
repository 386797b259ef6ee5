// The one error type of the checkpoint library. Every failure is one line that names the
// problem, its code (the codes of checkpoint-safety.md section 7, e.g. E_CRC) and where it is
// (record, offset, key), e.g. "E_CRC: crc mismatch in sla_attention/data/0".
#pragma once

#include <stdexcept>
#include <string>

namespace sla::checkpoint {

class CheckpointError : public std::runtime_error {
 public:
  CheckpointError(std::string code, const std::string& message, std::string where = {})
      : std::runtime_error(format(code, message, where)), code_(std::move(code)), where_(std::move(where)) {}

  const std::string& code() const noexcept { return code_; }
  const std::string& where() const noexcept { return where_; }

 private:
  static std::string format(const std::string& code, const std::string& message, const std::string& where) {
    return code + ": " + message + (where.empty() ? "" : " in " + where);
  }
  std::string code_;
  std::string where_;
};

}  // namespace sla::checkpoint
