// Runtime values -> compile-time constants for the kernel templates. The supported matrix
// (dtype x head_dim x blkq x blkk) is listed here and nowhere else; sla_api.cpp rejects anything
// outside it before a launch (can_implement).
#pragma once

#include "sla_params.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stdexcept>
#include <string>

#define SLA_ELEM_SWITCH(ELEM, Elem, ...)                                                  \
  [&] {                                                                                   \
    if ((ELEM) == ::sla::kernels::ElemType::kBf16) {                                      \
      using Elem = __nv_bfloat16;                                                         \
      return __VA_ARGS__();                                                               \
    }                                                                                     \
    using Elem = __half;                                                                  \
    return __VA_ARGS__();                                                                 \
  }()

#define SLA_HEADDIM_SWITCH(HDIM, kD, ...)                                                 \
  [&] {                                                                                   \
    if ((HDIM) == 64) {                                                                   \
      constexpr int kD = 64;                                                              \
      return __VA_ARGS__();                                                               \
    }                                                                                     \
    if ((HDIM) == 128) {                                                                  \
      constexpr int kD = 128;                                                             \
      return __VA_ARGS__();                                                               \
    }                                                                                     \
    throw std::invalid_argument("SLA kernels: expected head_dim 64 or 128, got " + std::to_string(HDIM)); \
  }()

#define SLA_BLOCK_SWITCH(BLK, kBlk, ...)                                                  \
  [&] {                                                                                   \
    if ((BLK) == 32) {                                                                    \
      constexpr int kBlk = 32;                                                            \
      return __VA_ARGS__();                                                               \
    }                                                                                     \
    if ((BLK) == 64) {                                                                    \
      constexpr int kBlk = 64;                                                            \
      return __VA_ARGS__();                                                               \
    }                                                                                     \
    if ((BLK) == 128) {                                                                   \
      constexpr int kBlk = 128;                                                           \
      return __VA_ARGS__();                                                               \
    }                                                                                     \
    throw std::invalid_argument("SLA kernels: expected block size 32, 64 or 128, got " + std::to_string(BLK)); \
  }()
