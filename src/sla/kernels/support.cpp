// The validator and the "why not" text over the table of support.h. Host C++, no CUDA calls.
#include "support.h"

#include <cstdint>
#include <string>

namespace sla::kernels {

namespace {

bool aligned16(const TensorRef& t) {
  return t.ptr == nullptr || (reinterpret_cast<uintptr_t>(t.ptr) % 16 == 0 && t.row % 8 == 0);
}

template <class T, std::size_t N, class Show>
std::string join_or(const T (&table)[N], Show show) {
  std::string out;
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0) out += i + 1 == N ? " or " : ", ";
    out += show(table[i]);
  }
  return out;
}

template <class T, std::size_t N, class Show>
std::string join_set(const T (&table)[N], Show show) {
  std::string out = "{";
  for (std::size_t i = 0; i < N; ++i) out += (i > 0 ? ", " : "") + show(table[i]);
  return out + "}";
}

// The entries of table whose bit is set in mask.
template <class T, std::size_t N, class Show>
std::string join_built_or(const T (&table)[N], unsigned mask, Show show) {
  std::string out;
  std::size_t count = 0, total = 0;
  for (std::size_t i = 0; i < N; ++i) total += built(int(i), mask) ? 1 : 0;
  for (std::size_t i = 0; i < N; ++i) {
    if (!built(int(i), mask)) continue;
    if (count > 0) out += count + 1 == total ? " or " : ", ";
    out += show(table[i]);
    ++count;
  }
  return out;
}

std::string show_int(int v) { return std::to_string(v); }
std::string show_elem(ElemType e) { return elem_name(e); }

}  // namespace

const char* elem_name(ElemType e) {
  switch (e) {
    case ElemType::kBf16: return "bfloat16";
    case ElemType::kFp16: return "float16";
  }
  return "?";
}

const char* to_string(Status s) {
  switch (s) {
    case Status::kSuccess: return "success";
    case Status::kUnsupportedHeadDim: return "unsupported head_dim";
    case Status::kHeadDimNotBuilt: return "head_dim not built (SLA_KERNEL_HDIMS)";
    case Status::kUnsupportedBlockSize: return "unsupported block size";
    case Status::kDtypeNotBuilt: return "dtype not built (SLA_KERNEL_DTYPES)";
    case Status::kEmpty: return "empty input";
    case Status::kTooLarge: return "input too large";
    case Status::kMisaligned: return "misaligned rows";
  }
  return "unknown status";
}

Status can_implement(const SlaParams& p) {
  if (!table_has(kHeadDims, p.head_dim)) return Status::kUnsupportedHeadDim;
  if (!head_dim_built(p.head_dim)) return Status::kHeadDimNotBuilt;
  if (!block_size_supported(p.blkq) || !block_size_supported(p.blkk)) return Status::kUnsupportedBlockSize;
  if (!elem_built(p.elem)) return Status::kDtypeNotBuilt;
  if (p.batch <= 0 || p.heads <= 0 || p.seqlen <= 0) return Status::kEmpty;
  if (p.seqlen > kMaxSeqLen || p.batch > kMaxBatchOrHeads || p.heads > kMaxBatchOrHeads) return Status::kTooLarge;
  for (const TensorRef* t : {&p.q, &p.k, &p.v, &p.o, &p.d_o, &p.dq, &p.dk, &p.dv}) {
    if (!aligned16(*t)) return Status::kMisaligned;
  }
  return Status::kSuccess;
}

std::string expected_dtypes() { return "expected " + join_or(kElemTypes, show_elem); }

std::string why_not(Status s, const SlaParams& p) {
  const std::string size = std::to_string(p.batch) + " x " + std::to_string(p.heads) + " x " + std::to_string(p.seqlen);
  switch (s) {
    case Status::kSuccess: return "";
    case Status::kUnsupportedHeadDim:
      return "expected head_dim " + join_or(kHeadDims, show_int) + ", got " + std::to_string(p.head_dim);
    case Status::kHeadDimNotBuilt:
      return "expected head_dim " + join_built_or(kHeadDims, kBuiltHeadDimMask, show_int) +
             " (this build's SLA_KERNEL_HDIMS), got " + std::to_string(p.head_dim);
    case Status::kUnsupportedBlockSize:
      return "expected blkq and blkk in " + join_set(kBlockSizes, show_int) + ", got " +
             std::to_string(block_size_supported(p.blkq) ? p.blkk : p.blkq);
    case Status::kDtypeNotBuilt:
      return "expected " + join_built_or(kElemTypes, kBuiltElemTypeMask, show_elem) +
             " (this build's SLA_KERNEL_DTYPES), got " + elem_name(p.elem);
    case Status::kEmpty: return "expected non-empty inputs, got B x H x L = " + size;
    case Status::kTooLarge:
      return "expected L <= " + std::to_string(kMaxSeqLen) + " and B, H <= " + std::to_string(kMaxBatchOrHeads) +
             ", got B x H x L = " + size;
    case Status::kMisaligned:
      return "expected 16-byte aligned rows (pointer and row stride) of q, k, v, o and their gradients";
  }
  return "unknown status";
}

}  // namespace sla::kernels
