// The Hopper forwards (sla_fwd_ws_sm90_kernel.cuh, sla_fwd_sm90_kernel.cuh), compiled for sm_90a
// alone: their launchers, the tensor maps of the warp-specialised one, and the instantiations
// (dtype x head_dim x blkq, key blocks of 64).
#include "cuda_check.h"
#include "sla_fwd_sm90_kernel.cuh"
#include "sla_fwd_ws_sm90_kernel.cuh"
#include "sla_launch.h"
#include "static_switch.h"
#include "tma_host.h"

#include <algorithm>

namespace sla::kernels {

namespace {

template <class Elem, int D, int BQ>
bool launch_fwd_ws_sm90(const SlaParams& p, cudaStream_t stream) {
  using Tr = FwdWsSm90Traits<Elem, D, BQ>;
  FwdTensorMaps maps;
  if (!encode_rows_map(&maps.q, p.q, p, Tr::kRows) || !encode_rows_map(&maps.k, p.k, p, Tr::kBlockK) ||
      !encode_rows_map(&maps.v, p.v, p, Tr::kBlockK)) {
    return false;
  }
  if (p.lin_state != nullptr) {
    const int64_t states = int64_t(p.batch) * p.heads * (p.lin_per_q_block ? p.num_q_blocks : 1);
    if (!encode_matrices_map(&maps.m, p.elem, p.lin_state, p.head_dim, states)) return false;
  }
  auto kernel = &sla_fwd_ws_sm90_kernel<Elem, D, BQ>;
  set_dynamic_smem(kernel, Tr::kSmemBytes);
  // Tiles of kRows query rows per (b, h): one CTA per SM walks several (its producer loads the
  // next tile while the consumers finish the last).
  const int64_t tiles = int64_t((p.num_q_blocks + Tr::kQBlocks - 1) / Tr::kQBlocks) * p.heads * p.batch;
  const int64_t grid = std::min<int64_t>(tiles, multiprocessor_count());
  kernel<<<unsigned(grid), Tr::kThreads, Tr::kSmemBytes, stream>>>(p, maps);
  SLA_CUDA_CHECK_LAUNCH();
  return true;
}

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
      // D 64 keeps the cp.async kernels: at 64-row blocks three of their CTAs share an SM, and they
      // are ahead (H100, (1,16,16384,64) topk 0.05 64/64: forward 6.9-7.1x against 5.5-5.9x).
      if constexpr (kD == 128) {
        if (warp_specialised_enabled() && (p.blkq == 64 ? launch_fwd_ws_sm90<Elem, kD, 64>(p, stream)
                                                                : launch_fwd_ws_sm90<Elem, kD, 128>(p, stream))) {
          return;
        }
      }
      if (p.blkq == 64) {
        launch_fwd_sm90<Elem, kD, 64>(p, stream);
      } else {
        launch_fwd_sm90<Elem, kD, 128>(p, stream);
      }
    });
  });
}

}  // namespace sla::kernels
