// Launch and runtime errors of the kernels become exceptions (library code never exits).
#pragma once

#include <cuda_runtime.h>

#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>

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

// cudaFuncSetAttribute(MaxDynamicSharedMemorySize) once per kernel, device and size; launches
// repeat with the same sizes, and the call costs microseconds of host time each.
template <class Kernel>
void set_dynamic_smem(Kernel kernel, int bytes) {
  static std::mutex mutex;
  static std::set<std::tuple<const void*, int, int>> done;  // kernel, device, bytes
  int device = 0;
  SLA_CUDA_CHECK(cudaGetDevice(&device));
  const auto key = std::make_tuple(reinterpret_cast<const void*>(kernel), device, bytes);
  const std::lock_guard<std::mutex> lock(mutex);
  if (done.count(key) != 0) return;
  SLA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  done.insert(key);
}

}  // namespace sla::kernels
