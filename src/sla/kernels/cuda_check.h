// Launch and runtime errors of the kernels become exceptions (library code never exits).
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

namespace sla::kernels {

inline void cuda_check(cudaError_t err, const char* what, const char* file, int line) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error in ") + what + " at " + file + ":" + std::to_string(line) +
                             ": " + cudaGetErrorString(err));
  }
}

}  // namespace sla::kernels

#define SLA_CUDA_CHECK(expr) ::sla::kernels::cuda_check((expr), #expr, __FILE__, __LINE__)
// After a <<<...>>> launch: configuration errors show up here, not as a return value.
#define SLA_CUDA_CHECK_LAUNCH() ::sla::kernels::cuda_check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

namespace sla::kernels {

// Raises a kernel's dynamic shared-memory limit (cudaFuncAttributeMaxDynamicSharedMemorySize) to
// at least `bytes` on the current device. The attribute is a limit, not a per-launch size: setting
// it to a smaller size than an earlier launch's would make that launch's size fail later ("invalid
// argument"), so it only ever grows. Launches repeat with the same sizes, and the call costs
// microseconds of host time, so it is made only when the limit must grow.
template <class Kernel>
void set_dynamic_smem(Kernel kernel, int bytes) {
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, int> limit;  // (kernel, device) -> bytes set
  int device = 0;
  SLA_CUDA_CHECK(cudaGetDevice(&device));
  const auto key = std::make_pair(reinterpret_cast<const void*>(kernel), device);
  const std::lock_guard<std::mutex> lock(mutex);
  int& current = limit[key];
  if (bytes <= current) return;
  SLA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  current = bytes;
}

}  // namespace sla::kernels
