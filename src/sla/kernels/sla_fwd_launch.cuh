// Launcher of the forward kernel for one (dtype, head_dim, blkq, blkk) instantiation.
#pragma once

#include "cuda_check.h"
#include "sla_fwd_kernel.cuh"
#include "sla_launch.h"

namespace sla::kernels {

template <class Elem, int D, int BQ, int BK>
void run_sla_fwd_(const SlaParams& p, cudaStream_t stream) {
  using Tr = FwdTraits<Elem, D, BQ, BK>;
  auto kernel = &sla_fwd_kernel<Elem, D, BQ, BK>;
  set_dynamic_smem(kernel, Tr::kSmemBytes);
  const dim3 grid(p.num_q_blocks, p.heads, p.batch);
  kernel<<<grid, Tr::kThreads, Tr::kSmemBytes, stream>>>(p);
  SLA_CUDA_CHECK_LAUNCH();
}

}  // namespace sla::kernels
