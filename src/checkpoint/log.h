// How the libraries hand text to their caller instead of printing it: a log callback, called
// from any thread the library runs on. An empty LogFn means silent. Only the caller (tools/, an
// example, a test) decides where the lines go. In the ground floor so every library can take one.
#pragma once

#include <functional>
#include <string_view>

namespace sla::checkpoint {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

using LogFn = std::function<void(LogLevel level, std::string_view message)>;

// Calls log when it is set.
inline void log_to(const LogFn& log, LogLevel level, std::string_view message) {
  if (log) log(level, message);
}

}  // namespace sla::checkpoint
