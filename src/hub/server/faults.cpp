#include "sla/hub_server/faults.h"

#include <fnmatch.h>
#include <nlohmann/json.hpp>

#include <fmt/core.h>

#include <map>
#include <stdexcept>

#include "file_util.h"

namespace sla::hub::server {
namespace {

const std::map<std::string, Fault::Kind>& kinds() {
  static const std::map<std::string, Fault::Kind> table = {{"drop", Fault::kDrop},
                                                           {"truncate", Fault::kTruncate},
                                                           {"status", Fault::kStatus},
                                                           {"corrupt", Fault::kCorrupt},
                                                           {"ignore-range", Fault::kIgnoreRange}};
  return table;
}

uint64_t parse_bytes(const std::string& text) {
  size_t used = 0;
  unsigned long long value = 0;
  try {
    value = std::stoull(text, &used);
  } catch (const std::exception&) {
    throw std::invalid_argument("fault: bad byte count '" + text + "'");
  }
  std::string suffix = text.substr(used);
  uint64_t unit = suffix.empty() ? 1 : suffix == "K" ? 1ull << 10 : suffix == "M" ? 1ull << 20 : suffix == "G" ? 1ull << 30 : 0;
  if (unit == 0 || text[0] == '-') throw std::invalid_argument("fault: bad byte count '" + text + "'");
  return value * unit;
}

int parse_int(const std::string& key, const std::string& text) {
  try {
    size_t used = 0;
    int v = std::stoi(text, &used);
    if (used == text.size() && v >= 0) return v;
  } catch (const std::exception&) {
  }
  throw std::invalid_argument("fault: bad " + key + " '" + text + "'");
}

void set_key(Fault& fault, const std::string& key, const std::string& value) {
  if (key == "path") {
    if (value.empty()) throw std::invalid_argument("fault: empty path glob");
    fault.path_glob = value;
  } else if (key == "times") {
    fault.times = value == "always" ? -1 : parse_int(key, value);
  } else if (key == "after") {
    fault.after = parse_bytes(value);
  } else if (key == "code") {
    fault.code = parse_int(key, value);
    if (fault.code < 400 || fault.code > 599) throw std::invalid_argument("fault: code must be 400..599");
  } else if (key == "retry_after") {
    fault.retry_after = parse_int(key, value);
  } else {
    throw std::invalid_argument("fault: unknown key '" + key + "' (path, times, after, code, retry_after)");
  }
}

Fault::Kind parse_kind(const std::string& name) {
  auto it = kinds().find(name);
  if (it == kinds().end()) {
    throw std::invalid_argument("fault: unknown kind '" + name + "' (drop, truncate, status, corrupt, ignore-range)");
  }
  return it->second;
}

}  // namespace

const char* fault_kind_name(Fault::Kind kind) {
  for (const auto& [name, k] : kinds()) {
    if (k == kind) return name.c_str();
  }
  return "?";
}

Fault parse_fault_spec(const std::string& spec) {
  Fault fault;
  size_t colon = spec.find(':');
  fault.kind = parse_kind(spec.substr(0, colon));
  if (colon == std::string::npos) return fault;
  std::string rest = spec.substr(colon + 1);
  size_t start = 0;
  while (start <= rest.size()) {
    size_t comma = rest.find(',', start);
    std::string item = rest.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    size_t eq = item.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("fault: expected key=value, got '" + item + "'");
    set_key(fault, item.substr(0, eq), item.substr(eq + 1));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return fault;
}

std::vector<Fault> parse_fault_file(const std::string& path) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument("fault file " + path + ": " + e.what());
  }
  if (!doc.is_array()) throw std::invalid_argument("fault file " + path + ": expected a JSON array");
  std::vector<Fault> faults;
  for (const auto& item : doc) {
    if (!item.is_object() || !item.contains("kind") || !item["kind"].is_string()) {
      throw std::invalid_argument("fault file " + path + ": every entry needs a \"kind\"");
    }
    Fault fault;
    fault.kind = parse_kind(item["kind"].get<std::string>());
    for (const auto& [key, value] : item.items()) {
      if (key == "kind") continue;
      set_key(fault, key, value.is_string() ? value.get<std::string>() : value.dump());
    }
    faults.push_back(fault);
  }
  return faults;
}

std::optional<Fault> FaultPlan::take(const std::string& repo_path) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& fault : faults_) {
    if (fault.times == 0 || fnmatch(fault.path_glob.c_str(), repo_path.c_str(), 0) != 0) continue;
    if (fault.times > 0) --fault.times;
    log_to(log_, LogLevel::kInfo, fmt::format("fault {} on {} ({} left)", fault_kind_name(fault.kind), repo_path,
                                              fault.times < 0 ? std::string("always") : std::to_string(fault.times)));
    return fault;
  }
  return std::nullopt;
}

}  // namespace sla::hub::server
