// The Hopper forward (sla_fwd_sm90_kernel.cuh), compiled for sm_90a alone: its launcher and the
// instantiations (dtype x head_dim x blkq, key blocks of 64).
#include "cuda_check.h"
#include "sla_fwd_sm90_kernel.cuh"
#include "sla_launch.h"
#include "static_switch.h"

namespace sla::kernels {

namespace {

template <class Elem, int D, int BQ>
void launch_fwd_sm90(const SlaParams& p, cudaStream_t stream) {
  using Tr = FwdSm90Traits<Elem, D, BQ>;
  auto kernel = &sla_fwd_sm90_kernel<Elem, D, BQ>;
  set_dynamic_smem(kernel, Tr::kSmemBytes);
  const dim3 grid(p.num_q_blocks, p.heads, p.batch);
  kernel<<<grid, Tr::kThreads, Tr::kSmemBytes, stream>>>(p);
  SLA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void run_sla_fwd_sm90(const SlaParams& p, cudaStream_t stream) {
  SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
      if (p.blkq == 64) {
        launch_fwd_sm90<Elem, kD, 64>(p, stream);
      } else {
        launch_fwd_sm90<Elem, kD, 128>(p, stream);
      }
    });
  });
}

}  // namespace sla::kernels
