// The Hopper forwards (sla_fwd_ws_sm90_kernel.cuh, sla_fwd_sm90_kernel.cuh), compiled for sm_90a
// alone: their launchers, the tensor maps of the warp-specialised one, and the instantiations
// (dtype x head_dim x blkq, key blocks of 64).
#include "cuda_check.h"
#include "sla_fwd_sm90_kernel.cuh"
#include "sla_fwd_ws_sm90_kernel.cuh"
#include "sla_launch.h"
#include "static_switch.h"

#include <cudaTypedefs.h>

#include <cstdlib>
#include <cstring>

namespace sla::kernels {

namespace {

// cuTensorMapEncodeTiled from the driver the runtime loaded (no link against libcuda); nullptr
// where the driver lacks it.
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return PFN_cuTensorMapEncodeTiled_v12000(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

// Tensor map of a (B, H, L, D) input as {D, L, H, B} with 128-byte-swizzled boxes of 64 columns x
// box_rows rows (rows past L read as zeros). False where the driver refuses it (a stride that is
// not a multiple of 16 bytes, a misaligned pointer): the caller falls back to the cp.async kernel.
bool encode_rows_map(CUtensorMap* map, const TensorRef& x, const SlaParams& p, int box_rows) {
  const auto encode = tensor_map_encoder();
  if (encode == nullptr) return false;
  const cuuint64_t dims[4] = {cuuint64_t(p.head_dim), cuuint64_t(p.seqlen), cuuint64_t(p.heads), cuuint64_t(p.batch)};
  const cuuint64_t strides[3] = {cuuint64_t(x.row) * 2, cuuint64_t(x.head) * 2, cuuint64_t(x.batch) * 2};  // bytes
  const cuuint32_t box[4] = {64, cuuint32_t(box_rows), 1, 1};
  const cuuint32_t unit[4] = {1, 1, 1, 1};
  const CUtensorMapDataType type =
      p.elem == ElemType::kBf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  return encode(map, type, 4, x.ptr, dims, strides, box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE,
                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// SLA_FWD_WS=0 in the environment keeps the cp.async forward (for comparisons).
bool warp_specialised_forward_enabled() {
  static const bool off = [] {
    const char* env = std::getenv("SLA_FWD_WS");
    return env != nullptr && std::strcmp(env, "0") == 0;
  }();
  return !off;
}

template <class Elem, int D, int BQ>
bool launch_fwd_ws_sm90(const SlaParams& p, cudaStream_t stream) {
  using Tr = FwdWsSm90Traits<Elem, D, BQ>;
  FwdTensorMaps maps;
  if (!encode_rows_map(&maps.q, p.q, p, Tr::kRows) || !encode_rows_map(&maps.k, p.k, p, Tr::kBlockK) ||
      !encode_rows_map(&maps.v, p.v, p, Tr::kBlockK)) {
    return false;
  }
  auto kernel = &sla_fwd_ws_sm90_kernel<Elem, D, BQ>;
  set_dynamic_smem(kernel, Tr::kSmemBytes);
  const dim3 grid((p.num_q_blocks + Tr::kQBlocks - 1) / Tr::kQBlocks, p.heads, p.batch);
  kernel<<<grid, Tr::kThreads, Tr::kSmemBytes, stream>>>(p, maps);
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
        if (warp_specialised_forward_enabled() && (p.blkq == 64 ? launch_fwd_ws_sm90<Elem, kD, 64>(p, stream)
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
