// SlaConfig parsing. SimpleTuner accepts `--sla_config` as JSON or as a Python-dict literal
// ({'topk': 0.15, 'tie_feature_map_qk': False}); we turn the literal into JSON token by token
// (strings are copied with their escapes re-encoded, True/False/None are only rewritten outside
// strings) and then validate every key against the allowed values.
#include "sla_config.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace sla {
namespace {

using namespace sla::checkpoint;  // the settings schema (sla_settings.h)

std::string allowed_keys() { return setting_keys_text() + ", " + kSettingVariant; }

// "a" + b + ... for any streamable values (fmt is not used here: LibTorch ships its own fmt headers,
// which would shadow the system library's).
template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument("sla_config: " + message); }

// Appends a code point as UTF-8 (for \uXXXX and \xXX escapes of Python strings).
void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

uint32_t parse_hex(const std::string& text, size_t pos, size_t digits) {
  if (pos + digits > text.size()) fail(cat("truncated escape at offset ", pos));
  uint32_t value = 0;
  for (size_t i = 0; i < digits; ++i) {
    const char c = text[pos + i];
    if (!std::isxdigit(static_cast<unsigned char>(c))) fail(cat("bad hex escape at offset ", pos));
    value = value * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                                                                                           : std::tolower(c) - 'a' + 10);
  }
  return value;
}

// Reads a quoted Python/JSON string starting at text[pos] (the quote) and returns its value;
// pos ends after the closing quote.
std::string read_string(const std::string& text, size_t& pos) {
  const char quote = text[pos++];
  std::string value;
  while (true) {
    if (pos >= text.size()) fail("unterminated string");
    const char c = text[pos++];
    if (c == quote) return value;
    if (c != '\\') {
      value += c;
      continue;
    }
    if (pos >= text.size()) fail("unterminated string");
    const char e = text[pos++];
    switch (e) {
      case 'n': value += '\n'; break;
      case 't': value += '\t'; break;
      case 'r': value += '\r'; break;
      case 'b': value += '\b'; break;
      case 'f': value += '\f'; break;
      case '0': value += '\0'; break;
      case '\\': case '\'': case '"': case '/': value += e; break;
      case 'x': append_utf8(value, parse_hex(text, pos, 2)); pos += 2; break;
      case 'u': append_utf8(value, parse_hex(text, pos, 4)); pos += 4; break;
      case 'U': append_utf8(value, parse_hex(text, pos, 8)); pos += 8; break;
      default: value += '\\'; value += e;  // Python keeps unknown escapes verbatim
    }
  }
}

// Python-dict literal (or JSON) -> JSON text. `json_words`, when given, receives one note per JSON
// word (true/false/null) that Python's ast.literal_eval, which SimpleTuner parses sla_config with,
// rejects (it reads them as names).
std::string literal_to_json(const std::string& text, std::vector<std::string>* json_words = nullptr) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    const char c = text[pos];
    if (c == '\'' || c == '"') {
      out += nlohmann::json(read_string(text, pos)).dump();
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t end = pos;
      while (end < text.size() && (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_')) ++end;
      const std::string word = text.substr(pos, end - pos);
      if (json_words && (word == "true" || word == "false" || word == "null")) {
        const char* python = word == "true" ? "True" : word == "false" ? "False" : "None";
        json_words->push_back(cat("'", word, "' at offset ", pos, " (write ", python, ")"));
      }
      if (word == "True" || word == "true") {
        out += "true";
      } else if (word == "False" || word == "false") {
        out += "false";
      } else if (word == "None" || word == "null") {
        out += "null";
      } else if (!out.empty() && (std::isdigit(static_cast<unsigned char>(out.back())) || out.back() == '.')) {
        out += word;  // exponent of a number such as 1e-3: left to the JSON parser
      } else {
        fail(cat("unexpected word '", word, "' at offset ", pos, " (a string needs quotes)"));
      }
      pos = end;
    } else if (c == ',') {
      // Python allows a trailing comma before } or ]; JSON does not.
      size_t next = pos + 1;
      while (next < text.size() && std::isspace(static_cast<unsigned char>(text[next]))) ++next;
      if (next >= text.size() || (text[next] != '}' && text[next] != ']')) out += c;
      ++pos;
    } else {
      out += c;
      ++pos;
    }
  }
  return out;
}

std::string show(const nlohmann::json& value) { return value.dump(); }

double read_topk(const nlohmann::json& value) {
  if (!value.is_number() || !topk_allowed(value.get<double>()))
    fail(cat(kSettingTopk, " must be a number with 0 < ", kSettingTopk, " <= 1, got ", show(value)));
  return value.get<double>();
}

int64_t read_block(const char* key, const nlohmann::json& value) {
  const bool integral = value.is_number_integer() ||
                        (value.is_number_float() && std::floor(value.get<double>()) == value.get<double>());
  const double number = value.is_number() ? value.get<double>() : 0.0;
  if (!integral || !block_size_allowed(static_cast<int64_t>(number)))
    fail(cat(key, " must be one of ", block_sizes_text(", "), ", got ", show(value)));
  return static_cast<int64_t>(number);
}

FeatureMap read_feature_map(const nlohmann::json& value) {
  if (value.is_string()) {
    const auto name = value.get<std::string>();
    for (FeatureMap f : {FeatureMap::kSoftmax, FeatureMap::kElu, FeatureMap::kRelu})
      if (feature_map_allowed(name) && name == to_string(f)) return f;
  }
  fail(cat(kSettingFeatureMap, " must be one of ", feature_maps_text(", "), ", got ", show(value)));
}

Variant read_variant(const nlohmann::json& value) {
  if (value.is_string()) {
    const auto name = value.get<std::string>();
    for (Variant v : {Variant::kAll, Variant::kComplement})
      if (variant_allowed(name) && name == to_string(v)) return v;
  }
  fail(cat(kSettingVariant, " must be one of ", variants_text(", "), ", got ", show(value)));
}

bool read_bool(const char* key, const nlohmann::json& value) {
  if (!value.is_boolean()) fail(cat(key, " must be one of true, false, got ", show(value)));
  return value.get<bool>();
}

}  // namespace

SlaConfig SlaConfig::parse(const std::string& text) {
  SlaConfig cfg;
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return cfg;  // empty: all defaults

  nlohmann::json object;
  try {
    object = nlohmann::json::parse(literal_to_json(text));
  } catch (const nlohmann::json::parse_error& e) {
    fail(cat("not a JSON object or Python dict: ", e.what()));
  }
  if (object.is_null()) return cfg;
  if (!object.is_object()) fail(cat("expected an object such as {'topk': 0.2}, got ", show(object)));

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
      fail(cat("unknown key '", key, "' (allowed keys: ", allowed_keys(), ")"));
    }
  }
  return cfg;
}

std::vector<std::string> SlaConfig::simpletuner_rejects(const std::string& text) {
  std::vector<std::string> words;
  try {
    literal_to_json(text, &words);
  } catch (const std::invalid_argument&) {
    return {};  // not parseable here either: parse() reports it
  }
  if (words.empty()) return {};
  std::string list;
  for (const auto& w : words) list += (list.empty() ? "" : ", ") + w;
  return {cat("sla_config would not parse in SimpleTuner: it reads the string with Python's ast.literal_eval, "
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

}  // namespace sla
