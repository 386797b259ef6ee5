// sla-dit-example --regenerate DIR: rebuilds a missing sla_attention.pt of one of this example's
// checkpoints with one real training step of its own objective in which only the SLA projections
// learn. `sla-ckpt regenerate` works on any model by distilling each projection from dense
// attention; this is what a trainer can do instead when it has its model at hand.
#pragma once

#include <string>

namespace sla_dit {

struct RegenerateOptions {
  std::string checkpoint_dir;
  std::string sla_config;  // empty: the folder's training config, a sibling checkpoint's, or the defaults
  std::string device = "auto";
  bool force = false;      // replace a valid sla_attention.pt
};

// Writes <checkpoint_dir>/sla_attention.pt; prints one line on stdout, the loss before/after on
// stderr. Throws CheckpointError / std::invalid_argument.
void regenerate_checkpoint(const RegenerateOptions& options);

}  // namespace sla_dit
