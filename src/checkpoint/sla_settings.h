// The one schema of SLA settings and state keys (../shared/docs/sla-format.md): the key names,
// their types, allowed values and defaults, and the "<head_dim>:<dtype token>" state key. Every
// reader and writer of settings (the .pt and its safetensors twin, the validator, regenerate, the
// module's SlaConfig) goes through here; tests/checkpoint/test_settings_keys.py fails when a key name is
// written as a string literal in a second source file.
// Dependency-free (the standard library only): the torch-free kernels' support table
// (src/sla/kernels/support.h) takes its block sizes from here. The JSON form, settings_to_json, is
// declared in sla_state.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sla::checkpoint {

// ---- keys ----------------------------------------------------------------------------------------
// The five keys of the file's "settings" dict, in the order SimpleTuner writes them.
inline constexpr const char* kSettingTopk = "topk";
inline constexpr const char* kSettingFeatureMap = "feature_map";
inline constexpr const char* kSettingBlkq = "blkq";
inline constexpr const char* kSettingBlkk = "blkk";
inline constexpr const char* kSettingTieFeatureMapQk = "tie_feature_map_qk";
inline constexpr const char* kSettingKeys[] = {kSettingTopk, kSettingFeatureMap, kSettingBlkq, kSettingBlkk,
                                               kSettingTieFeatureMapQk};
// Accepted in an `--sla_config` (the module's choice of linear-branch variant), recorded in the
// file's extension key, never in "settings".
inline constexpr const char* kSettingVariant = "variant";

// ---- allowed values and defaults -------------------------------------------------------------------
// topk: a number in (0, 1].
inline constexpr double kDefaultTopk = 0.2;
constexpr bool topk_allowed(double topk) { return topk > 0.0 && topk <= 1.0; }

// blkq and blkk: the block sizes (rows of q and k per block). The one table of them: the kernels'
// support matrix (src/sla/kernels/support.h) refers to it and generate_instantiations.py reads this
// line (keep it on one line).
inline constexpr int kBlockSizes[] = {32, 64, 128};
inline constexpr int64_t kDefaultBlkq = 64;
inline constexpr int64_t kDefaultBlkk = 64;
constexpr bool block_size_allowed(int64_t block) {
  for (int64_t b : kBlockSizes)
    if (b == block) return true;
  return false;
}

inline constexpr const char* kFeatureMaps[] = {"softmax", "elu", "relu"};
inline constexpr const char* kDefaultFeatureMap = "softmax";
inline constexpr bool kDefaultTieFeatureMapQk = true;

inline constexpr const char* kVariants[] = {"all", "complement"};
inline constexpr const char* kDefaultVariant = "all";

bool feature_map_allowed(std::string_view name);
bool variant_allowed(std::string_view name);

// "32, 64 or 128", "softmax, elu or relu", "all or complement" and "32|64|128", "softmax|elu|relu"
// for messages.
std::string block_sizes_text(const char* last_separator = " or ");
std::string feature_maps_text(const char* last_separator = " or ");
std::string variants_text(const char* last_separator = " or ");
// "topk, feature_map, blkq, blkk, tie_feature_map_qk"
std::string setting_keys_text();

// The settings as stored in the file.
struct SlaSettings {
  double topk = kDefaultTopk;
  std::string feature_map = kDefaultFeatureMap;  // kFeatureMaps
  int64_t blkq = kDefaultBlkq;                    // kBlockSizes
  int64_t blkk = kDefaultBlkk;                    // kBlockSizes
  bool tie_feature_map_qk = kDefaultTieFeatureMapQk;
};

bool operator==(const SlaSettings& a, const SlaSettings& b);
inline bool operator!=(const SlaSettings& a, const SlaSettings& b) { return !(a == b); }

// ---- state keys ------------------------------------------------------------------------------------
// "<head_dim>:<dtype token>", e.g. "128:bf16": what SimpleTuner writes and reads.
inline constexpr char kStateKeySeparator = ':';
inline constexpr std::size_t kStateKeyMaxDigits = 6;

std::string make_state_key(int64_t head_dim, std::string_view dtype_token);

struct StateKey {
  int64_t head_dim = 0;     // 0 when the part before ':' is not 1..6 decimal digits
  std::string dtype_token;  // the part after ':' (empty without one)
  bool well_formed = false; // head_dim > 0 and a token of [a-z0-9_]+ (SimpleTuner skips other keys)
};
StateKey parse_state_key(std::string_view key);

}  // namespace sla::checkpoint
