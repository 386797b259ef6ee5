// Host side of the TMA loads (tma.cuh): tensor maps of the (B, H, L, D) inputs, encoded through the
// driver entry point the CUDA runtime exposes (no link against libcuda).
#pragma once

#include "sla_params.h"

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>

namespace sla::kernels {

// cuTensorMapEncodeTiled from the driver the runtime loaded (no link against libcuda); nullptr
// where the driver lacks it.
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
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

// Tensor map of a 4-D array of `elem` (dims and byte strides innermost first) with 128-byte-swizzled
// boxes of 64 columns x box_rows rows (rows past the end read as zeros). False where the driver
// refuses it (a stride that is not a multiple of 16 bytes, a misaligned pointer): the caller falls
// back to a cp.async kernel.
inline bool encode_map(CUtensorMap* map, ElemType elem, const void* ptr, const cuuint64_t (&dims)[4],
                       const cuuint64_t (&strides)[3], int box_rows) {
  const auto encode = tensor_map_encoder();
  if (encode == nullptr) return false;
  const cuuint32_t box[4] = {64, cuuint32_t(box_rows), 1, 1};
  const cuuint32_t unit[4] = {1, 1, 1, 1};
  const CUtensorMapDataType type =
      elem == ElemType::kBf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  return encode(map, type, 4, const_cast<void*>(ptr), dims, strides, box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE,
                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// Tensor map of a (B, H, L, D) input x of p (SlaParams or LinearParams: the sizes and the element
// type) as {D, L, H, B}, boxes of 64 columns x box_rows rows.
template <class Params>
bool encode_rows_map(CUtensorMap* map, const TensorRef& x, const Params& p, int box_rows) {
  const cuuint64_t dims[4] = {cuuint64_t(p.head_dim), cuuint64_t(p.seqlen), cuuint64_t(p.heads), cuuint64_t(p.batch)};
  const cuuint64_t strides[3] = {cuuint64_t(x.row) * 2, cuuint64_t(x.head) * 2, cuuint64_t(x.batch) * 2};  // bytes
  return encode_map(map, p.elem, x.ptr, dims, strides, box_rows);
}

// Tensor map of `count` contiguous D x D matrices at ptr as {D, D, count, 1}, boxes of 64 columns x
// D rows: one matrix per panel pair (the linear states M of the forward, M' of the backward).
inline bool encode_matrices_map(CUtensorMap* map, ElemType elem, const void* ptr, int head_dim, int64_t count) {
  const cuuint64_t d = cuuint64_t(head_dim);
  const cuuint64_t dims[4] = {d, d, cuuint64_t(count), 1};
  const cuuint64_t strides[3] = {d * 2, d * d * 2, cuuint64_t(count) * d * d * 2};  // bytes
  return encode_map(map, elem, ptr, dims, strides, head_dim);
}

// SLA_WS=0 in the environment keeps the cp.async Hopper kernels (and the mma.sync linear state and
// query-side passes) instead of the warp-specialised ones (for comparisons).
inline bool warp_specialised_enabled() {
  static const bool off = [] {
    const char* env = std::getenv("SLA_WS");
    return env != nullptr && std::strcmp(env, "0") == 0;
  }();
  return !off;
}

}  // namespace sla::kernels
