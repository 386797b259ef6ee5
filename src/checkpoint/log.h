// How the Hub libraries (client and server) hand text to their caller instead of printing it: a
// log callback, called from any thread the library runs on. An empty LogFn means silent. Only
// tools/ decides where the lines go (stderr, a file, nowhere).
// To move to src/checkpoint (the ground floor) when that layer takes a shared log type.
#pragma once

#include <functional>
#include <string_view>

namespace slahub {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

using LogFn = std::function<void(LogLevel level, std::string_view message)>;

// Calls log when it is set.
inline void log_to(const LogFn& log, LogLevel level, std::string_view message) {
  if (log) log(level, message);
}

}  // namespace slahub
