// SLA settings as the trainer and the kernels see them. Parsed from JSON or from a Python-dict
// literal as SimpleTuner accepts it ({'topk': 0.15, 'blkq': 32, 'tie_feature_map_qk': False}).
#pragma once

#include <cstdint>
#include <string>

namespace sla {

enum class FeatureMap { kSoftmax, kElu, kRelu };
enum class Variant { kAll, kComplement };  // linear branch over all keys, or over unselected blocks only

struct SlaConfig {
  double topk = 0.2;
  FeatureMap feature_map = FeatureMap::kSoftmax;
  int64_t blkq = 64;  // 32 | 64 | 128
  int64_t blkk = 64;  // 32 | 64 | 128
  bool tie_feature_map_qk = true;
  Variant variant = Variant::kAll;  // ours; recorded in the file's extension key

  // Parses JSON or a Python-dict literal. Unknown keys and out-of-range values throw
  // std::invalid_argument naming the key and the allowed values.
  static SlaConfig parse(const std::string& text);
  std::string to_json() const;
};

const char* to_string(FeatureMap f);
const char* to_string(Variant v);

}  // namespace sla
