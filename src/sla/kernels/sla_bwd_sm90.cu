// The Hopper dq and dk/dv passes (sla_bwd_sm90_kernel.cuh), compiled for sm_90a alone: their
// launchers and the instantiations (dtype x head_dim x blkq, key blocks of 64).
#include "cuda_check.h"
#include "sla_bwd_sm90_kernel.cuh"
#include "sla_launch.h"
#include "static_switch.h"

namespace sla::kernels {

namespace {

template <class Elem, int D, int BQ>
void launch_bwd_dq_sm90(const SlaParams& p, cudaStream_t stream) {
  using Tr = BwdDqSm90Traits<Elem, D, BQ>;
  auto kernel = &sla_bwd_dq_sm90_kernel<Elem, D, BQ>;
  set_dynamic_smem(kernel, Tr::kSmemBytes);
  kernel<<<dim3(p.num_q_blocks, p.heads, p.batch), Tr::kThreads, Tr::kSmemBytes, stream>>>(p);
  SLA_CUDA_CHECK_LAUNCH();
}

template <class Elem, int D, int BQ>
void launch_bwd_dkdv_sm90(const SlaParams& p, cudaStream_t stream) {
  using Tr = BwdDkdvSm90Traits<Elem, D, BQ>;
  auto kernel = &sla_bwd_dkdv_sm90_kernel<Elem, D, BQ>;
  set_dynamic_smem(kernel, Tr::kSmemBytes);
  kernel<<<dim3(p.num_k_blocks, p.heads, p.batch), Tr::kThreads, Tr::kSmemBytes, stream>>>(p);
  SLA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void run_sla_bwd_dq_sm90(const SlaParams& p, cudaStream_t stream) {
  SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
      if (p.blkq == 64) {
        launch_bwd_dq_sm90<Elem, kD, 64>(p, stream);
      } else {
        launch_bwd_dq_sm90<Elem, kD, 128>(p, stream);
      }
    });
  });
}

}  // namespace sla::kernels

namespace sla::kernels {

void run_sla_bwd_dkdv_sm90(const SlaParams& p, cudaStream_t stream) {
  SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] {
      if (p.blkq == 64) {
        launch_bwd_dkdv_sm90<Elem, kD, 64>(p, stream);
      } else {
        launch_bwd_dkdv_sm90<Elem, kD, 128>(p, stream);
      }
    });
  });
}

}  // namespace sla::kernels
