// Sizing of the linear-branch passes (linear_kernels.cu): how many of a pass's CTAs one SM holds,
// and the split heuristic that turns it into CTAs per (b, h). Torch-free, like sla_launch.h.
#pragma once

#include "sla_params.h"

#include <algorithm>
#include <cstdint>

namespace sla::kernels {

enum class LinearPass { kState, kBwdQ, kBwdK };

// CTAs of the pass resident on one SM of the current device (registers and shared memory, from
// the CUDA occupancy calculator); at least 1.
int linear_resident_ctas(const LinearParams& p, LinearPass pass);

// CTAs per (b, h) for a pass over `tiles` row tiles, with `sms` SMs holding `resident` CTAs each.
// A CTA streams its tiles through a double buffer, so its time is about its tile count; the pass
// takes about as long as the busiest SM's tiles, ceil(bh * s / sms) * ceil(tiles / s). Candidates
// stop at ceil(slots / bh), about one wave (a second wave only adds a ragged tail, which the cost
// then shows); among equal costs the most CTAs win, for more loads in flight. Fewer CTAs also mean
// fewer partials for the reducing passes to sum.
inline int linear_splits(int64_t bh, int64_t tiles, int64_t sms, int64_t resident) {
  const int64_t slots = std::max<int64_t>(1, sms) * std::max<int64_t>(1, resident);
  const int64_t max_splits = std::clamp<int64_t>((slots + bh - 1) / bh, 1, std::max<int64_t>(1, tiles));
  int64_t best = 1, best_cost = INT64_MAX;
  for (int64_t s = 1; s <= max_splits; ++s) {
    const int64_t cost = ((bh * s + sms - 1) / sms) * ((tiles + s - 1) / s);
    if (cost <= best_cost) {
      best = s;
      best_cost = cost;
    }
  }
  return int(best);
}

}  // namespace sla::kernels
