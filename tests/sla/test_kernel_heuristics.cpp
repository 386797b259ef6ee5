// The kernels' pure sizing functions (src/sla/kernels/tile_config.h, linear_launch.h), on the CPU:
// they decide stages and splits, so a wrong answer costs speed, not correctness, and no GPU test
// would notice.
#include "sla/kernels/linear_launch.h"
#include "sla/kernels/tile_config.h"

#include <catch.hpp>

#include <algorithm>
#include <cstdint>

namespace {

using sla::kernels::linear_splits;

// The heuristic's definition, written out: among s = 1 .. min(tiles, ceil(sms * resident / bh))
// (about one wave), the smallest busiest-SM load ceil(bh s / sms) * ceil(tiles / s); ties to the
// larger s.
int64_t splits_by_definition(int64_t bh, int64_t tiles, int64_t sms, int64_t resident) {
  int64_t best = 1;
  double best_cost = 1e300;
  for (int64_t s = 1; s <= tiles; ++s) {
    if (s > 1 && (s - 1) * bh >= sms * resident) break;  // s > ceil(slots / bh)
    const double cost = double((bh * s + sms - 1) / sms) * double((tiles + s - 1) / s);
    if (cost <= best_cost) {
      best = s;
      best_cost = cost;
    }
  }
  return best;
}

}  // namespace

TEST_CASE("linear_splits: hand-checked cases on 132 SMs, one resident CTA") {
  // (1,24,4608,128), 128-row tiles: 36 tiles per (b, h); 5 splits = 120 CTAs each 8 tiles long,
  // 6 would need a second wave.
  CHECK(linear_splits(24, 36, 132, 1) == 5);
  // (1,12,32760,128): 256 tiles; 11 splits fill the 132 SMs exactly.
  CHECK(linear_splits(12, 256, 132, 1) == 11);
  // More (b, h) than SMs: one CTA each.
  CHECK(linear_splits(512, 36, 132, 1) == 1);
  // Fewer tiles than slots: never more splits than tiles.
  CHECK(linear_splits(1, 3, 132, 2) == 3);
}

TEST_CASE("linear_splits follows its definition over a grid of sizes") {
  for (int64_t bh : {1, 2, 7, 12, 24, 64, 131, 132, 133, 500}) {
    for (int64_t tiles : {1, 2, 5, 36, 64, 256, 1000}) {
      for (int64_t sms : {1, 108, 132}) {
        for (int64_t resident : {1, 2, 3}) {
          INFO("bh " << bh << " tiles " << tiles << " sms " << sms << " resident " << resident);
          CHECK(linear_splits(bh, tiles, sms, resident) == splits_by_definition(bh, tiles, sms, resident));
        }
      }
    }
  }
}

TEST_CASE("tile_config: shared-memory sizes and stages") {
  using namespace sla::kernels;
  // A padded tile: rows x (cols + 8) 16-bit elements.
  CHECK(smem_tile_bytes(64, 128) == 64 * 136 * 2);
  // Forward 128/64 at D = 128: Q + 2 stages of K, V = 34816 + 2 * 34816 bytes, within budget.
  CHECK(fwd_smem_bytes(128, 64, 128, 2) == 34816 + 2 * 2 * 17408);
  CHECK(fwd_stages(128, 64, 128) == 2);
  // Every configuration's choice fits the budget.
  for (int bq : {32, 64, 128}) {
    for (int bk : {32, 64, 128}) {
      for (int d : {64, 128}) {
        INFO("blkq " << bq << " blkk " << bk << " D " << d);
        CHECK(fwd_smem_bytes(bq, bk, d, fwd_stages(bq, bk, d)) <= kSmemBudgetBytes);
        CHECK(bwd_dq_smem_bytes(bq, bk, d, bwd_dq_stages(bq, bk, d)) <= kSmemBudgetBytes);
        CHECK(bwd_dkdv_smem_bytes(bq, bk, d, bwd_dkdv_stages(bq, bk, d)) <= kSmemBudgetBytes);
        CHECK(bwd_sub_tile(bk, d) <= bk);
      }
    }
  }
}
