// Launch and runtime errors of the kernels become exceptions (library code never exits).
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

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
