// Uses one function of each installed library (headers as installed, no source tree) and checks
// the answers; exit 0 on success. Kept to torch-free headers so that it compiles in seconds; the
// link still pulls LibTorch through sla::sla.
#include "sla/sla_config.h"
#include "sla/checkpoint/sla_state.h"

#include <cstdio>

int main() {
  const sla::SlaConfig cfg = sla::SlaConfig::parse("{'topk': 0.25, 'blkq': 128, 'feature_map': 'elu'}");
  const std::string token = sla::checkpoint::dtype_token_for("torch.bfloat16");
  const bool ok = cfg.topk == 0.25 && cfg.blkq == 128 && cfg.feature_map == sla::FeatureMap::kElu && token == "bf16";
  std::printf("consumer: SlaConfig::parse -> topk %.2f blkq %lld; dtype_token_for -> %s: %s\n", cfg.topk,
              static_cast<long long>(cfg.blkq), token.c_str(), ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
