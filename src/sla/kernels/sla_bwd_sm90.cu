// The Hopper dq and dk/dv passes (sla_bwd_sm90_kernel.cuh; warp-specialised at D 128 with query
// blocks of 64 or 128: sla_bwd_dq_ws_sm90_kernel.cuh, sla_bwd_dkdv_ws_sm90_kernel.cuh), compiled for
// sm_90a alone: their launchers and the instantiations (dtype x head_dim x blkq, key blocks of 64).
#include "cuda_check.h"
#include "sla_bwd_dkdv_ws_sm90_kernel.cuh"
#include "sla_bwd_dq_ws_sm90_kernel.cuh"
#include "sla_bwd_sm90_kernel.cuh"
#include "sla_launch.h"
#include "static_switch.h"
#include "tma_host.h"

namespace sla::kernels {

namespace {

// The tensor maps both warp-specialised passes take (query blocks of q_rows rows, key blocks of
// 64); false where the driver refuses one (the caller falls back to the cp.async pass).
bool encode_bwd_maps(BwdTensorMaps* maps, const SlaParams& p, int q_rows) {
  return encode_rows_map(&maps->q, p.q, p, q_rows) && encode_rows_map(&maps->d_o, p.d_o, p, q_rows) &&
         encode_rows_map(&maps->k, p.k, p, 64) && encode_rows_map(&maps->v, p.v, p, 64);
}

template <class Elem, int D, int BQ>
bool launch_bwd_dq_ws_sm90(const SlaParams& p, cudaStream_t stream) {
  using Tr = BwdDqWsSm90Traits<Elem, D, BQ>;
  static_assert(Tr::kBlockK == 64, "the key boxes of encode_bwd_maps");
  BwdTensorMaps maps;
  if (!encode_bwd_maps(&maps, p, Tr::kRows)) return false;
  auto kernel = &sla_bwd_dq_ws_sm90_kernel<Elem, D, BQ>;
  set_dynamic_smem(kernel, Tr::kSmemBytes);
  const unsigned tiles = unsigned((p.num_q_blocks + Tr::kQBlocks - 1) / Tr::kQBlocks);  // of 128 query rows
  kernel<<<dim3(tiles, p.heads, p.batch), Tr::kThreads, Tr::kSmemBytes, stream>>>(p, maps);
  SLA_CUDA_CHECK_LAUNCH();
  return true;
}

template <class Elem, int D, int BQ>
void launch_bwd_dq_sm90(const SlaParams& p, cudaStream_t stream) {
  using Tr = BwdDqSm90Traits<Elem, D, BQ>;
  auto kernel = &sla_bwd_dq_sm90_kernel<Elem, D, BQ>;
  set_dynamic_smem(kernel, Tr::kSmemBytes);
  kernel<<<dim3(p.num_q_blocks, p.heads, p.batch), Tr::kThreads, Tr::kSmemBytes, stream>>>(p);
  SLA_CUDA_CHECK_LAUNCH();
}

template <class Elem, int D, int BQ>
bool launch_bwd_dkdv_ws_sm90(const SlaParams& p, cudaStream_t stream) {
  using Tr = BwdDkdvWsSm90Traits<Elem, D, BQ>;
  static_assert(Tr::kBlockK == 64, "the key boxes of encode_bwd_maps");
  BwdTensorMaps maps;
  if (!encode_bwd_maps(&maps, p, Tr::kRows)) return false;
  auto kernel = &sla_bwd_dkdv_ws_sm90_kernel<Elem, D, BQ>;
  set_dynamic_smem(kernel, Tr::kSmemBytes);
  kernel<<<dim3(p.num_k_blocks, p.heads, p.batch), Tr::kThreads, Tr::kSmemBytes, stream>>>(p, maps);
  SLA_CUDA_CHECK_LAUNCH();
  return true;
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
      // Warp-specialised at D 128 (the forward's choice).
      if constexpr (kD == 128) {
        if (warp_specialised_enabled() && (p.blkq == 128 ? launch_bwd_dq_ws_sm90<Elem, kD, 128>(p, stream)
                                                         : launch_bwd_dq_ws_sm90<Elem, kD, 64>(p, stream))) {
          return;
        }
      }
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
      if constexpr (kD == 128) {
        if (warp_specialised_enabled() && (p.blkq == 128 ? launch_bwd_dkdv_ws_sm90<Elem, kD, 128>(p, stream)
                                                         : launch_bwd_dkdv_ws_sm90<Elem, kD, 64>(p, stream))) {
          return;
        }
      }
      if (p.blkq == 64) {
        launch_bwd_dkdv_sm90<Elem, kD, 64>(p, stream);
      } else {
        launch_bwd_dkdv_sm90<Elem, kD, 128>(p, stream);
      }
    });
  });
}

}  // namespace sla::kernels
