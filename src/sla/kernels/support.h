// What the fused kernels support, written once as data: the head dims, block sizes and element
// types the kernels are written for, the subset this build instantiated, the one validator
// (can_implement) and the user-facing "why not" text. Users: can_implement and why_not (support.cpp),
// the dispatch (static_switch.h folds every case the table leaves out), generate_instantiations.py
// (reads the three k* lines below) and the CMake filter of SLA_KERNEL_HDIMS / SLA_KERNEL_DTYPES
// (reads kHeadDims and kElemTypes; keep each table on one line, `inline constexpr T kName[] = {...};`;
// the block sizes are the settings schema's table, src/checkpoint/sla_settings.h, read from there),
// the torch glue (src/sla/cuda) and, through it, the module, the operators and the hooks' fallback log.
// Torch-free and CUDA-free.
#pragma once

#include "sla_params.h"
#include "sla/checkpoint/sla_settings.h"  // kBlockSizes: the block sizes a file may record are the ones the kernels run

#include <cstddef>
#include <cstdint>
#include <string>

namespace sla::kernels {

// ---- the support matrix -------------------------------------------------------------------------
inline constexpr int kHeadDims[] = {64, 128};
inline constexpr const auto& kBlockSizes = sla::checkpoint::kBlockSizes;
inline constexpr ElemType kElemTypes[] = {ElemType::kBf16, ElemType::kFp16};

// Bounds of the launch grids: L rows in int32 offsets, B and H in grid.y / grid.z.
inline constexpr int64_t kMaxSeqLen = int64_t(1) << 30;
inline constexpr int64_t kMaxBatchOrHeads = 65535;

// The linear branch's epsilon (variant all): o_l = φ(q) S / (φ(q)·z + kLinearEps). The kernels
// receive it divided by L (SlaParams::lin_eps, LinearParams::eps_scaled); the reference and the
// ATen glue use it as is.
inline constexpr double kLinearEps = 1e-5;

// ---- what this build instantiated ---------------------------------------------------------------
// The table, less what -DSLA_KERNEL_HDIMS / -DSLA_KERNEL_DTYPES left out: the build defines
// SLA_KERNEL_HDIM_MASK / SLA_KERNEL_DTYPE_MASK (bit i: entry i of kHeadDims / kElemTypes; masks,
// since nvcc splits -D values at commas) on the kernels target and everything that links it.
#ifndef SLA_KERNEL_HDIM_MASK
#define SLA_KERNEL_HDIM_MASK 0xffffffffu
#endif
#ifndef SLA_KERNEL_DTYPE_MASK
#define SLA_KERNEL_DTYPE_MASK 0xffffffffu
#endif
inline constexpr unsigned kBuiltHeadDimMask = SLA_KERNEL_HDIM_MASK;
inline constexpr unsigned kBuiltElemTypeMask = SLA_KERNEL_DTYPE_MASK;

// Position of value in table, -1 when absent.
template <class T, std::size_t N>
constexpr int table_index(const T (&table)[N], T value) {
  for (std::size_t i = 0; i < N; ++i) {
    if (table[i] == value) return int(i);
  }
  return -1;
}
template <class T, std::size_t N>
constexpr bool table_has(const T (&table)[N], T value) { return table_index(table, value) >= 0; }
constexpr bool built(int index, unsigned mask) { return index >= 0 && index < 32 && ((mask >> index) & 1u) != 0; }

constexpr bool head_dim_built(int d) { return built(table_index(kHeadDims, d), kBuiltHeadDimMask); }
constexpr bool block_size_supported(int b) { return table_has(kBlockSizes, b); }
constexpr bool elem_built(ElemType e) { return built(table_index(kElemTypes, e), kBuiltElemTypeMask); }

// "bfloat16", "float16": the names torch prints and users write.
const char* elem_name(ElemType e);

// ---- the one validator --------------------------------------------------------------------------
enum class Status {
  kSuccess,
  kUnsupportedHeadDim,    // head_dim not in kHeadDims
  kHeadDimNotBuilt,       // in kHeadDims, left out of this build (SLA_KERNEL_HDIMS)
  kUnsupportedBlockSize,  // blkq or blkk not in kBlockSizes
  kDtypeNotBuilt,         // left out of this build (SLA_KERNEL_DTYPES)
  kEmpty,                 // B, H or L is zero
  kTooLarge,              // L > kMaxSeqLen or B, H > kMaxBatchOrHeads
  kMisaligned,            // a pointer or row stride not a multiple of 16 bytes
};
const char* to_string(Status s);

// What the kernels need from a params struct before any launch: sizes and the table always;
// alignment of the tensors that are set (null pointers pass, so sizes can be checked first).
Status can_implement(const SlaParams& p);

// One line for users: "expected head_dim 64 or 128, got 96", "expected blkq and blkk in {32, 64, 128},
// got 48", ... (empty for kSuccess).
std::string why_not(Status s, const SlaParams& p);

// "expected bfloat16 or float16": for callers whose dtype has no ElemType at all.
std::string expected_dtypes();

}  // namespace sla::kernels
