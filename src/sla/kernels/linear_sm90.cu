// The Hopper linear passes of variant all (linear_state_ws_sm90_kernel.cuh,
// linear_bwd_q_ws_sm90_kernel.cuh), compiled for sm_90a alone: their launchers and instantiations
// (dtype, D 128).
#include "cuda_check.h"
#include "linear_bwd_q_ws_sm90_kernel.cuh"
#include "linear_launch.h"
#include "linear_state_ws_sm90_kernel.cuh"
#include "sla_launch.h"
#include "static_switch.h"
#include "tma_host.h"

namespace sla::kernels {

bool run_linear_state_sm90(const LinearParams& p, cudaStream_t stream) {
  if (p.head_dim != 128) return false;
  return SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    using Tr = LinearStateWsTraits<Elem, 128>;
    LinearTensorMaps maps;
    if (!encode_rows_map(&maps.k, p.k, p, Tr::kRows) || !encode_rows_map(&maps.v, p.v, p, Tr::kRows)) return false;
    auto kernel = &sla_linear_state_ws_sm90_kernel<Elem, 128>;
    set_dynamic_smem(kernel, Tr::kSmemBytes);
    kernel<<<dim3(p.splits, p.batch * p.heads), Tr::kThreads, Tr::kSmemBytes, stream>>>(p, maps);
    SLA_CUDA_CHECK_LAUNCH();
    return true;
  });
}

bool run_linear_bwd_q_sm90(const LinearParams& p, cudaStream_t stream) {
  if (p.head_dim != 128 || p.q_block_tiles > 0) return false;
  return SLA_ELEM_SWITCH(p.elem, Elem, [&] {
    using Tr = LinearBwdQWsTraits<Elem, 128>;
    LinearBwdQMaps maps;
    if (!encode_rows_map(&maps.q, p.q, p, Tr::kRows) || !encode_rows_map(&maps.d_o, p.d_o, p, Tr::kRows) ||
        !encode_matrices_map(&maps.m, p.elem, p.m_scaled, p.head_dim, int64_t(p.batch) * p.heads)) {
      return false;
    }
    auto kernel = &sla_linear_bwd_q_ws_sm90_kernel<Elem, 128>;
    set_dynamic_smem(kernel, Tr::kSmemBytes);
    kernel<<<dim3(p.splits, p.batch * p.heads), Tr::kThreads, Tr::kSmemBytes, stream>>>(p, maps);
    SLA_CUDA_CHECK_LAUNCH();
    return true;
  });
}

}  // namespace sla::kernels
