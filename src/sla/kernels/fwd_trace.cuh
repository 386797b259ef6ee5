// A timing trace of the warp-specialised forward (a measuring build only: CMake -DSLA_FWD_TRACE=ON).
// Every CTA records clock64 at up to kTracePoints points of each of its first kTraceTiles tiles, for
// three roles: the producer's thread and lane 0 of each consumer warpgroup's first warp; and, once
// per CTA, clock64 and %globaltimer at its start and end (cycles per ns). The launcher appends the
// buffer to $SLA_FWD_TRACE_OUT after each launch; bench/fwd_trace.py splits a tile's time. In the
// default build SLA_TRACE is empty and nothing here exists.
#pragma once

#include <cstdint>

namespace sla::kernels {

constexpr int kTraceCtas = 144;   // at least the SMs of an H100 / H200
constexpr int kTraceTiles = 32;   // per CTA
constexpr int kTraceRoles = 3;    // producer, consumer warpgroup 0, consumer warpgroup 1
constexpr int kTracePoints = 15;
constexpr int kTraceCtaWords = kTraceTiles * kTraceRoles * kTracePoints + 4;  // + start / end clocks

// The producer's points in a tile: start, Q's slot free, step 0's stage free, every step issued, M
// issued. The consumers': start, Q landed, step 0's stage landed, step 0 done, step 1 done, step 2's
// stage landed, step 2 done, every step done, the last P V done, normalised, M and z landed, φ(Q)
// done, φ(Q) M's first panel added, every panel added, stored.
enum TracePoint : int {
  kTileStart = 0,
  kQReady = 1,
  kStage0 = 2,
  kStep0Done = 3,
  kProducerStepsIssued = 3,
  kStep1Done = 4,
  kProducerMIssued = 4,
  kStage2 = 5,
  kStep2Done = 6,
  kStepsDone = 7,
  kLastPvDone = 8,
  kNormalised = 9,
  kMReady = 10,
  kPhiDone = 11,
  kPanel0Done = 12,
  kPanelsDone = 13,
  kStored = 14,
};

#ifdef SLA_FWD_TRACE
__device__ long long g_fwd_trace[kTraceCtas * kTraceCtaWords];

__device__ __forceinline__ long long trace_globaltimer() {
  long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ __forceinline__ void trace_point(int role, int tile, int point) {
  if (blockIdx.x < kTraceCtas && tile < kTraceTiles) {
    g_fwd_trace[blockIdx.x * kTraceCtaWords + (tile * kTraceRoles + role) * kTracePoints + point] = clock64();
  }
}

// CTA start (end = false) or end: clock64 and %globaltimer side by side.
__device__ __forceinline__ void trace_cta_clock(bool end) {
  if (blockIdx.x < kTraceCtas) {
    constexpr int kClocks = kTraceTiles * kTraceRoles * kTracePoints;  // the CTA's words before its clocks
    long long* at = g_fwd_trace + blockIdx.x * kTraceCtaWords + kClocks + (end ? 2 : 0);
    at[0] = clock64();
    at[1] = trace_globaltimer();
  }
}

#define SLA_TRACE(role, tile, point) trace_point(role, tile, point)
#define SLA_TRACE_CTA(end) trace_cta_clock(end)
#else
#define SLA_TRACE(role, tile, point) ((void)0)
#define SLA_TRACE_CTA(end) ((void)0)
#endif

}  // namespace sla::kernels
