// Runtime values -> compile-time constants for the kernel templates. The cases are the values the
// kernels' code handles; which of them are compiled is the table's decision (support.h): a case the
// table (or this build's SLA_KERNEL_HDIMS / SLA_KERNEL_DTYPES) leaves out is folded away with
// `if constexpr` inside a template, so nothing of it is instantiated or referenced. can_implement rejects those
// values before any launch; reaching the throw below is a caller's bug.
#pragma once

#include "sla_params.h"
#include "support.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stdexcept>
#include <string>

#include <type_traits>

namespace sla::kernels::detail {
// Every value of the table has a case below.
constexpr bool switch_covers_table() {
  for (int d : kHeadDims) {
    if (d != 64 && d != 128) return false;
  }
  for (int b : kBlockSizes) {
    if (b != 32 && b != 64 && b != 128) return false;
  }
  return true;
}
static_assert(switch_covers_table(), "support.h lists a head dim or block size that static_switch.h has no case for");

[[noreturn]] inline void unsupported(const char* what, int value) {
  throw std::invalid_argument(std::string("SLA kernels: ") + what + " " + std::to_string(value) +
                              " is not in this build's support table (can_implement was not called)");
}

template <class T>
struct TypeTag {
  using type = T;
};
template <int V>
using IntTag = std::integral_constant<int, V>;

// f is a generic lambda taking a tag. These are templates, so a case that `if constexpr` folds
// away is never instantiated: neither f's body for it nor the kernels that body names.
template <class F>
auto switch_elem(ElemType e, F&& f) {
  if (e == ElemType::kBf16) {
    if constexpr (elem_built(ElemType::kBf16)) return f(TypeTag<__nv_bfloat16>{});
  }
  if (e == ElemType::kFp16) {
    if constexpr (elem_built(ElemType::kFp16)) return f(TypeTag<__half>{});
  }
  unsupported("dtype", int(e));
}

template <class F>
auto switch_head_dim(int d, F&& f) {
  if (d == 64) {
    if constexpr (head_dim_built(64)) return f(IntTag<64>{});
  }
  if (d == 128) {
    if constexpr (head_dim_built(128)) return f(IntTag<128>{});
  }
  unsupported("head_dim", d);
}

template <class F>
auto switch_block(int b, F&& f) {
  if (b == 32) {
    if constexpr (block_size_supported(32)) return f(IntTag<32>{});
  }
  if (b == 64) {
    if constexpr (block_size_supported(64)) return f(IntTag<64>{});
  }
  if (b == 128) {
    if constexpr (block_size_supported(128)) return f(IntTag<128>{});
  }
  unsupported("block size", b);
}
}  // namespace sla::kernels::detail

// SLA_ELEM_SWITCH(p.elem, Elem, [&] { ... Elem ... }): Elem the CUDA element type.
#define SLA_ELEM_SWITCH(ELEM, Elem, ...)                                              \
  ::sla::kernels::detail::switch_elem((ELEM), [&](auto sla_tag_##Elem) {              \
    using Elem = typename decltype(sla_tag_##Elem)::type;                             \
    return __VA_ARGS__();                                                             \
  })

// SLA_HEADDIM_SWITCH(p.head_dim, kD, [&] { ... kD ... }): kD a constexpr int.
#define SLA_HEADDIM_SWITCH(HDIM, kD, ...)                                             \
  ::sla::kernels::detail::switch_head_dim((HDIM), [&](auto sla_tag_##kD) {            \
    constexpr int kD = decltype(sla_tag_##kD)::value;                                 \
    return __VA_ARGS__();                                                             \
  })

// SLA_BLOCK_SWITCH(p.blkq, kBQ, [&] { ... kBQ ... }): kBQ a constexpr int.
#define SLA_BLOCK_SWITCH(BLK, kBlk, ...)                                              \
  ::sla::kernels::detail::switch_block((BLK), [&](auto sla_tag_##kBlk) {              \
    constexpr int kBlk = decltype(sla_tag_##kBlk)::value;                             \
    return __VA_ARGS__();                                                             \
  })
