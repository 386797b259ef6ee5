// SlaConfig::parse: JSON and Python-dict literals, defaults, and one error per bad key naming the
// allowed values.
#include "sla/sla_config.h"

#include <catch.hpp>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

using sla::FeatureMap;
using sla::SlaConfig;
using sla::Variant;

namespace {

// The message of the invalid_argument thrown by parse, or "" when none is thrown.
std::string parse_error(const std::string& text) {
  try {
    SlaConfig::parse(text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("defaults are SimpleTuner's", "[config]") {
  for (const std::string text : {"", "  ", "{}", "None", "null"}) {
    const SlaConfig cfg = SlaConfig::parse(text);
    CHECK(cfg.topk == 0.2);
    CHECK(cfg.feature_map == FeatureMap::kSoftmax);
    CHECK(cfg.blkq == 64);
    CHECK(cfg.blkk == 64);
    CHECK(cfg.tie_feature_map_qk);
    CHECK(cfg.variant == Variant::kAll);
  }
}

TEST_CASE("the documented Python-dict literal parses", "[config]") {
  const SlaConfig cfg = SlaConfig::parse("{'topk': 0.15, 'blkq': 32, 'tie_feature_map_qk': False}");
  CHECK(cfg.topk == 0.15);
  CHECK(cfg.blkq == 32);
  CHECK(cfg.blkk == 64);
  CHECK_FALSE(cfg.tie_feature_map_qk);
}

TEST_CASE("JSON parses, every key", "[config]") {
  const SlaConfig cfg = SlaConfig::parse(
      R"({"topk": 1, "feature_map": "relu", "blkq": 128, "blkk": 32, "tie_feature_map_qk": true, "variant": "complement"})");
  CHECK(cfg.topk == 1.0);
  CHECK(cfg.feature_map == FeatureMap::kRelu);
  CHECK(cfg.blkq == 128);
  CHECK(cfg.blkk == 32);
  CHECK(cfg.tie_feature_map_qk);
  CHECK(cfg.variant == Variant::kComplement);
  CHECK(SlaConfig::parse("{'feature_map': 'elu'}").feature_map == FeatureMap::kElu);
}

TEST_CASE("Python literal details: None, trailing comma, exponent, escaped quotes", "[config]") {
  const SlaConfig cfg = SlaConfig::parse("{'topk': 5e-2, 'blkq': None, \"variant\": 'all',}");
  CHECK(cfg.topk == 0.05);
  CHECK(cfg.blkq == 64);
  // True inside a string is a string, not a boolean; the quote inside the string survives.
  CHECK_THAT(parse_error("{'feature_map': 'True \\' \"x'}"),
             sla::test::contains_text("feature_map must be one of softmax, elu, relu, got \"True ' \\\"x\""));
  CHECK_THAT(parse_error("{'tie_feature_map_qk': 'False'}"),
             sla::test::contains_text("tie_feature_map_qk must be one of true, false, got \"False\""));
}

TEST_CASE("round trip through to_json", "[config]") {
  const SlaConfig cfg = SlaConfig::parse("{'topk': 0.3, 'feature_map': 'elu', 'blkk': 128, 'variant': 'complement'}");
  const SlaConfig again = SlaConfig::parse(cfg.to_json());
  CHECK(again.topk == cfg.topk);
  CHECK(again.feature_map == cfg.feature_map);
  CHECK(again.blkk == cfg.blkk);
  CHECK(again.variant == cfg.variant);
  CHECK(nlohmann::json::parse(cfg.to_json()).size() == 6);
}

TEST_CASE("bad values name the key and the allowed values", "[config]") {
  using sla::test::contains_text;
  CHECK_THAT(parse_error("{'topk': 0}"), contains_text("topk must be a number with 0 < topk <= 1, got 0"));
  CHECK_THAT(parse_error("{'topk': 1.5}"), contains_text("topk must be a number with 0 < topk <= 1, got 1.5"));
  CHECK_THAT(parse_error("{'topk': True}"), contains_text("topk must be a number"));
  CHECK_THAT(parse_error("{'blkq': 16}"), contains_text("blkq must be one of 32, 64, 128, got 16"));
  CHECK_THAT(parse_error("{'blkk': 64.5}"), contains_text("blkk must be one of 32, 64, 128, got 64.5"));
  CHECK_THAT(parse_error("{'blkk': '64'}"), contains_text("blkk must be one of 32, 64, 128"));
  CHECK_THAT(parse_error("{'feature_map': 'gelu'}"), contains_text("feature_map must be one of softmax, elu, relu"));
  CHECK_THAT(parse_error("{'variant': 'some'}"), contains_text("variant must be one of all, complement"));
  CHECK_THAT(parse_error("{'top_k': 0.1}"),
             contains_text("unknown key 'top_k' (allowed keys: topk, feature_map, blkq, blkk, tie_feature_map_qk, variant)"));
}

TEST_CASE("malformed text is an error, not a default", "[config]") {
  using sla::test::contains_text;
  CHECK_THAT(parse_error("{'topk': 0.1"), contains_text("sla_config: not a JSON object or Python dict"));
  CHECK_THAT(parse_error("{'topk: 0.1}"), contains_text("unterminated string"));
  CHECK_THAT(parse_error("{topk: 0.1}"), contains_text("unexpected word 'topk'"));
  CHECK_THAT(parse_error("[1, 2]"), contains_text("expected an object"));
  CHECK_THAT(parse_error("0.2"), contains_text("expected an object"));
}

namespace {

// The oracle: does Python's ast.literal_eval (what SimpleTuner parses sla_config with) accept it?
// Runs the project's Python with the text in a file (no shell quoting of the text).
bool python_literal_eval_accepts(const std::string& text) {
  const std::string path = "test_sla_config_literal_" + std::to_string(::getpid()) + ".txt";
  {
    std::ofstream out(path, std::ios::binary);
    out << text;
  }
  const std::string cmd = std::string(SLA_PYTHON) + " -c \"import ast,sys; ast.literal_eval(open(sys.argv[1]).read())\" " +
                          path + " 2>/dev/null";
  const int status = std::system(cmd.c_str());
  std::remove(path.c_str());
  return status == 0;
}

}  // namespace

TEST_CASE("a string SimpleTuner's ast.literal_eval would reject is accepted here, and said", "[config]") {
  struct Case {
    std::string text;
    bool python_rejects;
  };
  const Case cases[] = {
      {"{\"topk\": 0.1, \"tie_feature_map_qk\": false}", true},     // JSON's false
      {"{'tie_feature_map_qk': true, 'blkq': null}", true},         // JSON's true and null
      {"{\"topk\": 0.1, \"tie_feature_map_qk\": False}", false},    // double-quoted keys are Python too
      {"{'topk': 0.2, 'blkq': None, 'tie_feature_map_qk': True,}", false},
      {"{'feature_map': 'softmax', 'variant': 'all'}", false},      // 'true' nowhere outside a string
      {"{\"feature_map\": \"elu\", \"topk\": 1e-1}", false},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    CHECK_NOTHROW(SlaConfig::parse(c.text));  // accepted here, as today
    const auto notes = SlaConfig::simpletuner_rejects(c.text);
    CHECK(notes.empty() == !c.python_rejects);
    if (std::string(SLA_PYTHON).empty()) continue;
    CHECK(python_literal_eval_accepts(c.text) == !c.python_rejects);  // the expectation matches Python itself
  }
  const auto notes = SlaConfig::simpletuner_rejects("{'tie_feature_map_qk': true, 'blkq': null}");
  REQUIRE(notes.size() == 1);
  CHECK_THAT(notes[0], sla::test::contains_text("would not parse in SimpleTuner"));
  CHECK_THAT(notes[0], sla::test::contains_text("'true' at offset 23 (write True)"));
  CHECK_THAT(notes[0], sla::test::contains_text("'null' at offset 37 (write None)"));
}
