// The settings schema's helpers: membership, message texts, JSON form and the state key.
#include "sla_settings.h"

#include "sla_state.h"  // settings_to_json

#include <nlohmann/json.hpp>

#include <type_traits>

namespace sla::checkpoint {
namespace {

template <class T, std::size_t N>
std::string list_text(const T (&items)[N], const char* last_separator) {
  std::string out;
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0) out += i + 1 == N ? last_separator : ", ";
    if constexpr (std::is_integral_v<T>) out += std::to_string(items[i]);
    else out += items[i];
  }
  return out;
}

}  // namespace

bool feature_map_allowed(std::string_view name) {
  for (const char* f : kFeatureMaps)
    if (name == f) return true;
  return false;
}

bool variant_allowed(std::string_view name) {
  for (const char* v : kVariants)
    if (name == v) return true;
  return false;
}

std::string block_sizes_text(const char* last_separator) { return list_text(kBlockSizes, last_separator); }
std::string feature_maps_text(const char* last_separator) { return list_text(kFeatureMaps, last_separator); }
std::string variants_text(const char* last_separator) { return list_text(kVariants, last_separator); }
std::string setting_keys_text() { return list_text(kSettingKeys, ", "); }

bool operator==(const SlaSettings& a, const SlaSettings& b) {
  return a.topk == b.topk && a.feature_map == b.feature_map && a.blkq == b.blkq && a.blkk == b.blkk &&
         a.tie_feature_map_qk == b.tie_feature_map_qk;
}

nlohmann::ordered_json settings_to_json(const SlaSettings& s) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j[kSettingTopk] = s.topk;
  j[kSettingFeatureMap] = s.feature_map;
  j[kSettingBlkq] = s.blkq;
  j[kSettingBlkk] = s.blkk;
  j[kSettingTieFeatureMapQk] = s.tie_feature_map_qk;
  return j;
}

std::string make_state_key(int64_t head_dim, std::string_view dtype_token) {
  return std::to_string(head_dim) + kStateKeySeparator + std::string(dtype_token);
}

StateKey parse_state_key(std::string_view key) {
  StateKey out;
  const std::size_t colon = key.find(kStateKeySeparator);
  const std::string_view digits = key.substr(0, colon);
  if (colon != std::string_view::npos) out.dtype_token = std::string(key.substr(colon + 1));
  bool digits_ok = !digits.empty() && digits.size() <= kStateKeyMaxDigits;
  int64_t d = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') digits_ok = false;
    else d = d * 10 + (c - '0');
  }
  out.head_dim = digits_ok ? d : 0;
  bool token_ok = colon != std::string_view::npos && !out.dtype_token.empty();
  for (char c : out.dtype_token)
    token_ok &= (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  out.well_formed = out.head_dim > 0 && token_ok;
  return out;
}

}  // namespace sla::checkpoint
