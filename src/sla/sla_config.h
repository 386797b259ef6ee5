// SLA settings as the trainer and the kernels see them. Parsed from JSON or from a Python-dict
// literal as SimpleTuner accepts it ({'topk': 0.15, 'blkq': 32, 'tie_feature_map_qk': False}).
#pragma once

#include "sla/checkpoint/sla_settings.h"  // the schema: keys, allowed values, defaults

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sla {

enum class FeatureMap { kSoftmax, kElu, kRelu };
enum class Variant { kAll, kComplement };  // linear branch over all keys, or over unselected blocks only

struct SlaConfig {
  double topk = sla::checkpoint::kDefaultTopk;
  FeatureMap feature_map = FeatureMap::kSoftmax;  // sla::checkpoint::kDefaultFeatureMap
  int64_t blkq = sla::checkpoint::kDefaultBlkq;           // sla::checkpoint::kBlockSizes
  int64_t blkk = sla::checkpoint::kDefaultBlkk;           // sla::checkpoint::kBlockSizes
  bool tie_feature_map_qk = sla::checkpoint::kDefaultTieFeatureMapQk;
  Variant variant = Variant::kAll;  // ours; recorded in the file's extension key

  // Parses JSON or a Python-dict literal. Unknown keys and out-of-range values throw
  // std::invalid_argument naming the key and the allowed values.
  static SlaConfig parse(const std::string& text);
  // Why SimpleTuner, which parses sla_config with Python's ast.literal_eval, would reject a string
  // that parse() accepts (JSON's true/false/null): one line, or nothing when it would parse there.
  static std::vector<std::string> simpletuner_rejects(const std::string& text);
  std::string to_json() const;
};

const char* to_string(FeatureMap f);
const char* to_string(Variant v);
// The value whose to_string is `name`; nullopt for any other text.
std::optional<FeatureMap> feature_map_named(const std::string& name);
std::optional<Variant> variant_named(const std::string& name);

}  // namespace sla
