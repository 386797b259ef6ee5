// `regenerate`: rebuilds a missing sla_attention.pt with one SLA training step per entry, as the
// plan (sla/checkpoint/regenerate_plan.h) says. Each (head_dim, dtype) entry's projection is
// distilled from dense attention: on q/k/v (the calibration file's, else standard-normal samples
// covering 8 key blocks) one SGD step on proj_l of a freshly initialised (zero) projection against
// the mean squared error between the SLA output and dense softmax attention (sla/one_step.h picks
// the step size). The file is written atomically and records in its extension key that it was
// regenerated and from what.
//
// This header is LibTorch-free, so a caller without LibTorch in its include path (sla-ckpt) can
// run a plan; the implementation links the SLA library.
#pragma once

#include "sla/checkpoint/log.h"
#include "sla/checkpoint/regenerate_plan.h"

#include <string>
#include <vector>

namespace sla {

struct RegeneratedEntry {
  std::string key;
  double error_before = 0;  // mean squared error against dense attention, zero projection
  double error_after = 0;   // after the step
  double learning_rate = 0;
};

struct RegenerateReport {
  std::string output;
  std::string device;  // where the step ran: "cpu" or "cuda"
  std::string regenerated_from;
  std::vector<RegeneratedEntry> entries;
};

// Runs the plan and writes plan.output. Throws CheckpointError (E_CONFIG for unusable inputs,
// E_REGENERATE when a step cannot lower the error) and std::invalid_argument for a device that is
// not there. One line per entry goes to `log` (kInfo).
RegenerateReport regenerate(const sla::checkpoint::RegeneratePlan& plan, const sla::checkpoint::LogFn& log = {});

}  // namespace sla
