// Every kernel of the library is launched through launch_kernel and begins with
// begin_after_previous_grid(). On Hopper the launches are programmatic dependent launches: a
// kernel's CTAs may be scheduled while the kernel before it in the stream is still running, and
// wait at their first instruction until it has ended and its writes are visible. What that buys
// is the launch latency and the grid's ramp-up between back-to-back kernels (the short shapes
// run a chain of eight to ten of them).
#pragma once

#include "cuda_check.h"

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

namespace sla::kernels {

// Whether launch_kernel makes programmatic dependent launches: hopper_kernels_enabled() (the
// generic kernels then run their sm_90 code, which waits) and SLA_PDL=0 not set in the
// environment (for comparisons). Defined in sla_dispatch.cu.
bool programmatic_launch_enabled();

// The first statement of every kernel. Waits for the grid launched before this one in the stream
// (a no-op after an ordinary launch and before sm_90), then lets the next grid be scheduled once
// every CTA of this one has started. Nothing may touch global memory before it: the previous grid
// may still be reading what this one writes.
__device__ __forceinline__ void begin_after_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, stream>>>(args...), a programmatic dependent launch where
// programmatic_launch_enabled(); throws on a launch error.
template <class... Params, class... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   Args&&... args) {
  cudaLaunchAttribute overlap{};
  overlap.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  overlap.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  if (programmatic_launch_enabled()) {
    config.attrs = &overlap;
    config.numAttrs = 1;
  }
  SLA_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

}  // namespace sla::kernels
