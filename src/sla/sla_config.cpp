// SlaConfig parsing. SimpleTuner accepts `--sla_config` as JSON or as a Python-dict literal
// ({'topk': 0.15, 'tie_feature_map_qk': False}); the literal becomes JSON through the checkpoint
// library's settings_literal_to_json, then every key is validated against the allowed values.
#include "sla_config.h"

#include "sla/checkpoint/settings_literal.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>
#include <stdexcept>

namespace sla {
namespace {

using namespace sla::checkpoint;  // the settings schema (sla_settings.h)

std::string allowed_keys() { return setting_keys_text() + ", " + kSettingVariant; }

std::string show(const nlohmann::json& value) { return value.dump(); }

double read_topk(const nlohmann::json& value) {
  if (!value.is_number() || !topk_allowed(value.get<double>()))
    settings_error(concat(kSettingTopk, " must be a number with 0 < ", kSettingTopk, " <= 1, got ", show(value)));
  return value.get<double>();
}

int64_t read_block(const char* key, const nlohmann::json& value) {
  const bool integral = value.is_number_integer() ||
                        (value.is_number_float() && std::floor(value.get<double>()) == value.get<double>());
  const double number = value.is_number() ? value.get<double>() : 0.0;
  if (!integral || !block_size_allowed(static_cast<int64_t>(number)))
    settings_error(concat(key, " must be one of ", block_sizes_text(", "), ", got ", show(value)));
  return static_cast<int64_t>(number);
}

FeatureMap read_feature_map(const nlohmann::json& value) {
  if (value.is_string() && feature_map_allowed(value.get<std::string>())) {
    if (const auto f = feature_map_named(value.get<std::string>())) return *f;
  }
  settings_error(concat(kSettingFeatureMap, " must be one of ", feature_maps_text(", "), ", got ", show(value)));
}

Variant read_variant(const nlohmann::json& value) {
  if (value.is_string() && variant_allowed(value.get<std::string>())) {
    if (const auto v = variant_named(value.get<std::string>())) return *v;
  }
  settings_error(concat(kSettingVariant, " must be one of ", variants_text(", "), ", got ", show(value)));
}

bool read_bool(const char* key, const nlohmann::json& value) {
  if (!value.is_boolean()) settings_error(concat(key, " must be one of true, false, got ", show(value)));
  return value.get<bool>();
}

}  // namespace

SlaConfig SlaConfig::parse(const std::string& text) {
  SlaConfig cfg;
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return cfg;  // empty: all defaults

  nlohmann::json object;
  try {
    object = nlohmann::json::parse(settings_literal_to_json(text));
  } catch (const nlohmann::json::parse_error& e) {
    settings_error(concat("not a JSON object or Python dict: ", e.what()));
  }
  if (object.is_null()) return cfg;
  if (!object.is_object()) settings_error(concat("expected an object such as {'topk': 0.2}, got ", show(object)));

  for (const auto& [key, value] : object.items()) {
    if (value.is_null()) continue;  // None = the default
    if (key == kSettingTopk) {
      cfg.topk = read_topk(value);
    } else if (key == kSettingFeatureMap) {
      cfg.feature_map = read_feature_map(value);
    } else if (key == kSettingBlkq) {
      cfg.blkq = read_block(kSettingBlkq, value);
    } else if (key == kSettingBlkk) {
      cfg.blkk = read_block(kSettingBlkk, value);
    } else if (key == kSettingTieFeatureMapQk) {
      cfg.tie_feature_map_qk = read_bool(kSettingTieFeatureMapQk, value);
    } else if (key == kSettingVariant) {
      cfg.variant = read_variant(value);
    } else {
      settings_error(concat("unknown key '", key, "' (allowed keys: ", allowed_keys(), ")"));
    }
  }
  return cfg;
}

std::vector<std::string> SlaConfig::simpletuner_rejects(const std::string& text) {
  std::vector<std::string> words;
  try {
    settings_literal_to_json(text, &words);
  } catch (const std::invalid_argument&) {
    return {};  // not parseable here either: parse() reports it
  }
  if (words.empty()) return {};
  std::string list;
  for (const auto& w : words) list += (list.empty() ? "" : ", ") + w;
  return {concat("sla_config would not parse in SimpleTuner: it reads the string with Python's ast.literal_eval, "
              "which rejects JSON's true/false/null: ", list)};
}

std::string SlaConfig::to_json() const {
  nlohmann::ordered_json j;
  j[sla::checkpoint::kSettingTopk] = topk;
  j[sla::checkpoint::kSettingFeatureMap] = to_string(feature_map);
  j[sla::checkpoint::kSettingBlkq] = blkq;
  j[sla::checkpoint::kSettingBlkk] = blkk;
  j[sla::checkpoint::kSettingTieFeatureMapQk] = tie_feature_map_qk;
  j[sla::checkpoint::kSettingVariant] = to_string(variant);
  return j.dump();
}

const char* to_string(FeatureMap f) {
  switch (f) {
    case FeatureMap::kSoftmax: return "softmax";
    case FeatureMap::kElu: return "elu";
    case FeatureMap::kRelu: return "relu";
  }
  return "?";
}

const char* to_string(Variant v) {
  switch (v) {
    case Variant::kAll: return "all";
    case Variant::kComplement: return "complement";
  }
  return "?";
}

std::optional<FeatureMap> feature_map_named(const std::string& name) {
  for (FeatureMap f : {FeatureMap::kSoftmax, FeatureMap::kElu, FeatureMap::kRelu})
    if (name == to_string(f)) return f;
  return std::nullopt;
}

std::optional<Variant> variant_named(const std::string& name) {
  for (Variant v : {Variant::kAll, Variant::kComplement})
    if (name == to_string(v)) return v;
  return std::nullopt;
}

}  // namespace sla
