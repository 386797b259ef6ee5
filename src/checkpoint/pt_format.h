// The torch.save file format as this library reads and writes it (torch >= 1.6 "zip" format).
// Sources and the reasons for each rule: ../shared/docs/checkpoint-safety.md sections 1, 2 and 7.
//
// Container: a zip archive, every entry STORED (method 0, no encryption), tiled without gaps:
//   [local header + name + extra][data][data descriptor] ... [central directory]
//   [ZIP64 end record + locator (optional; torch always writes them)] [end of central directory]
// - The first local header is at offset 0, the end record is the last 22 bytes (no zip comment).
// - Sizes and CRC32 come from the central directory; local header and data descriptor must agree.
// - Every name is "<prefix>/<record>"; prefix = the saved file's stem or "archive" (buffers).
// - Data starts on a 64-byte boundary: the local header carries an extra field "FB" with filler.
//   Misalignment is a warning when reading and E_ALIGN in canonical mode.
// Records (names below the prefix), in torch.save's order:
//   data.pkl                 the pickle (required)
//   .format_version          "1"                        (optional, torch >= 2.7)
//   .storage_alignment       "64", a power of two       (optional, torch >= 2.7)
//   byteorder                "little" | "big"           (optional; absent = little; big is byteswapped)
//   data/<key>               raw storage bytes, key = decimal digits, size = numel * itemsize exactly
//   version | .data/version  decimal 1..10 (+ "\n"); torch.save writes "3\n" (required)
//   .data/serialization_id   40 ASCII digits            (optional, shape checked only)
// A "constants.pkl" or "code/" record means TorchScript (E_TORCHSCRIPT); anything else is
// E_UNKNOWN_RECORD; a data/<key> that the pickle never references is E_ORPHAN_STORAGE.
// Files that are not zips but start like a pickle, a tar or "PYTORCH1" are the legacy format:
// E_LEGACY_FORMAT, never unpickled.
//
// data.pkl: one pickle, protocol 2..5, nothing after STOP. Accepted opcodes (what CPython's
// torch.save emits for dicts of tensors and plain values):
//   PROTO STOP MARK | NONE NEWTRUE NEWFALSE BININT BININT1 BININT2 LONG1(<= 8 bytes) BINFLOAT
//   BINUNICODE SHORT_BINUNICODE(p4) | EMPTY_DICT SETITEM SETITEMS EMPTY_LIST APPEND APPENDS
//   EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 | BINPUT LONG_BINPUT MEMOIZE(p4) BINGET LONG_BINGET
//   GLOBAL STACK_GLOBAL(p4) REDUCE BUILD BINPERSID FRAME(p4)
// Globals (allowlist; anything else is E_GLOBAL and is never resolved):
//   torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
//                                   OrderedDict() [, {} metadata]) -> dense tensor
//   torch.<X>Storage for the dense dtypes of kDTypes, only inside a persistent id
//   collections.OrderedDict, only as a zero-argument REDUCE. A following BUILD is accepted in the
//   one shape nn.Module.state_dict() produces: {"_metadata": <dict>}; the metadata (module
//   version numbers, no tensors) is dropped.
// Persistent id: ('storage', torch.<X>Storage, '<key>', 'cpu' | 'cuda:<n>', numel).
// A list or dict fetched from the memo again (a shared reference, as CPython writes [d, d]) is
// frozen from then on: adding to it is E_CONTAINER_OP, so recursive containers cannot be built
// and the tree stays acyclic. Sharing is kept (a memoised value is one object, referenced again),
// but whoever walks the tree pays for every reference, so the expanded tree is what is capped:
// values against max_nodes, and the bytes of strings and of tensor views against
// max_expanded_bytes (read_pt_* set it to the file's size plus expanded_slack_bytes). A tensor
// may not present more elements than its storage holds (stride 0 or overlapping views of a
// tiny storage): E_TENSOR_GEOMETRY. Either way, reading a file costs about what the file stores.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sla::checkpoint::pt {

enum class DType : uint8_t { Float32, Float64, Float16, BFloat16, Int64, Int32, Int16, Int8, UInt8, Bool };

struct DTypeInfo {
  DType dtype;
  std::string_view name;           // as torch prints it without "torch."
  std::string_view storage_class;  // the typed storage global in module "torch"
  size_t itemsize;
};

inline constexpr DTypeInfo kDTypes[] = {
    {DType::Float32, "float32", "FloatStorage", 4},   {DType::Float64, "float64", "DoubleStorage", 8},
    {DType::Float16, "float16", "HalfStorage", 2},    {DType::BFloat16, "bfloat16", "BFloat16Storage", 2},
    {DType::Int64, "int64", "LongStorage", 8},        {DType::Int32, "int32", "IntStorage", 4},
    {DType::Int16, "int16", "ShortStorage", 2},       {DType::Int8, "int8", "CharStorage", 1},
    {DType::UInt8, "uint8", "ByteStorage", 1},        {DType::Bool, "bool", "BoolStorage", 1},
};

inline const DTypeInfo& dtype_info(DType dtype) { return kDTypes[static_cast<size_t>(dtype)]; }

inline std::optional<DType> dtype_from_storage_class(std::string_view storage_class) {
  for (const auto& info : kDTypes)
    if (info.storage_class == storage_class) return info.dtype;
  return std::nullopt;
}

// Caps checked before anything is allocated (E_LIMIT unless a more specific code applies).
struct Limits {
  uint64_t max_file_bytes = uint64_t(64) << 30;
  uint64_t max_entries = 1 << 16;
  uint64_t max_pickle_bytes = uint64_t(64) << 20;
  uint64_t max_string_bytes = uint64_t(1) << 20;   // E_STRING
  // Each value held costs ~200 bytes of memory: these counts keep a pickle's peak memory in the
  // low hundreds of MB whatever it holds. CPython batches APPENDS/SETITEMS by 1000, so its stack
  // stays shallow; a state dict takes ~2 values and a few memo slots per tensor.
  uint64_t max_memo_index = 1 << 18;               // E_MEMO
  uint64_t max_stack = 1 << 17;
  uint64_t max_marks = 256;                        // E_DEPTH
  uint32_t max_depth = 64;                         // E_DEPTH, nesting of containers
  uint64_t max_nodes = uint64_t(1) << 20;          // values in the expanded tree
  // Bytes of strings and tensor views in the expanded tree, every reference counted (E_LIMIT).
  // read_pt_file / read_pt_buffer replace it with the file's size + expanded_slack_bytes.
  uint64_t max_expanded_bytes = uint64_t(64) << 20;
  uint64_t expanded_slack_bytes = uint64_t(64) << 20;
  uint32_t max_rank = 32;                          // E_TENSOR_GEOMETRY
  int64_t max_version = 10;                        // kMaxSupportedFileFormatVersion
};

inline constexpr uint32_t kRecordAlignment = 64;
inline constexpr std::string_view kTorchSaveVersion = "3\n";

}  // namespace sla::checkpoint::pt
