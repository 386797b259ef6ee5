#include "settings_literal.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdint>
#include <stdexcept>

namespace sla::checkpoint {
namespace {

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
  if (pos + digits > text.size()) settings_error(concat("truncated escape at offset ", pos));
  uint32_t value = 0;
  for (size_t i = 0; i < digits; ++i) {
    const char c = text[pos + i];
    if (!std::isxdigit(static_cast<unsigned char>(c))) settings_error(concat("bad hex escape at offset ", pos));
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
    if (pos >= text.size()) settings_error("unterminated string");
    const char c = text[pos++];
    if (c == quote) return value;
    if (c != '\\') {
      value += c;
      continue;
    }
    if (pos >= text.size()) settings_error("unterminated string");
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

}  // namespace

void settings_error(const std::string& message) { throw std::invalid_argument("sla_config: " + message); }

std::string settings_literal_to_json(const std::string& text, std::vector<std::string>* json_words) {
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
        json_words->push_back(concat("'", word, "' at offset ", pos, " (write ", python, ")"));
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
        settings_error(concat("unexpected word '", word, "' at offset ", pos, " (a string needs quotes)"));
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

}  // namespace sla::checkpoint
