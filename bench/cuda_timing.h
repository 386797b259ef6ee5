// The benchmarks' one timer: CUDA events on the current stream around each call.
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/Sleep.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

namespace sla::bench {

// What a timing includes. kDeviceIdle: the device is idle when each call starts, so the host's
// time up to the call's first kernel is in the figure (one call's latency; the default).
// kHostAhead: each call is queued behind a GPU spin that outlasts the host's time to issue it, so
// the figure is the call's GPU work alone, as in a training loop whose host runs ahead.
enum class Clock { kDeviceIdle, kHostAhead };

inline double spin_cycles_per_ms();

// Median of `reps` CUDA-event timings of fn in milliseconds, after `warmup` untimed calls.
inline double median_ms(const std::function<void()>& fn, int warmup, int reps, Clock clock = Clock::kDeviceIdle) {
  double host_ms = 0;  // the longest time the host took to issue one warm-up call
  for (int i = 0; i < warmup; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const std::chrono::duration<double, std::milli> issued = std::chrono::steady_clock::now() - t0;
    host_ms = std::max(host_ms, issued.count());
    if (clock == Clock::kHostAhead) cudaDeviceSynchronize();
  }
  // Twice the host's time plus a millisecond: ahead even when a call is slower to issue than usual.
  const int64_t spin = clock == Clock::kHostAhead ? int64_t(spin_cycles_per_ms() * (2 * host_ms + 1)) : 0;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    if (spin > 0) at::cuda::sleep(spin);
    cudaEventRecord(start, stream);
    fn();
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float t = 0;
    cudaEventElapsedTime(&t, start, stop);
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Spin cycles per millisecond of GPU time: a 1M-cycle at::cuda::sleep, timed as above.
inline double spin_cycles_per_ms() {
  constexpr int64_t kCycles = 1'000'000;
  return double(kCycles) / std::max(median_ms([] { at::cuda::sleep(kCycles); }, 1, 1), 1e-3);
}

}  // namespace sla::bench
