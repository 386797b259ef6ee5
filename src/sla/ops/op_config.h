// The settings arguments the operators take (topk, blkq, blkk, feature_map, variant) as the SLA
// library's SlaConfig, shared by every ops file. Unknown names throw std::invalid_argument.
#pragma once

#include "sla/sla_config.h"

#include <cstdint>
#include <stdexcept>
#include <string>

namespace sla::ops {

inline FeatureMap parse_feature_map(const std::string& s) {
  if (const auto f = feature_map_named(s)) return *f;
  throw std::invalid_argument("sla ops: feature_map: expected softmax, elu or relu, got '" + s + "'");
}

inline Variant parse_variant(const std::string& s) {
  if (const auto v = variant_named(s)) return *v;
  throw std::invalid_argument("sla ops: variant: expected all or complement, got '" + s + "'");
}

inline SlaConfig make_config(double topk, int64_t blkq, int64_t blkk, const std::string& feature_map,
                             const std::string& variant) {
  SlaConfig cfg;
  cfg.topk = topk;
  cfg.blkq = blkq;
  cfg.blkk = blkk;
  cfg.feature_map = parse_feature_map(feature_map);
  cfg.variant = parse_variant(variant);
  return cfg;
}

}  // namespace sla::ops
