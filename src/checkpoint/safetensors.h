// The safetensors format, read strictly and written atomically.
//
//   bytes 0..8       N: little-endian uint64, the header length (capped at kMaxHeaderBytes)
//   bytes 8..8+N     UTF-8 JSON object, may be padded with trailing spaces:
//                      {"__metadata__": {str: str, ...},               (optional)
//                       "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
//   bytes 8+N..EOF   the data buffer; offsets are relative to its start
// Rules we enforce (the Rust reference enforces the same or fewer): the header starts with '{', no
// duplicate keys at any level, known dtypes only, non-negative integer shapes, data ranges sorted,
// contiguous from 0 with no hole or overlap, the last one ending at EOF, and every
// end - begin == prod(shape) * itemsize (overflow-checked). Failures throw CheckpointError
// (E_SAFETENSORS) naming the field and where.
//
// Also here: the SLA twin `sla_attention.safetensors` (sla-format.md section 2): tensors
// "<key>/proj_l.weight" and "<key>/proj_l.bias" (F32), and in __metadata__ "format" =
// "sla_attention", "version", "settings" (JSON) and, when the file has one, "sla_toolkit" (JSON).
#pragma once

#include "sla_state.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sla::checkpoint::safetensors {

inline constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the Rust reader's own cap
inline constexpr uint64_t kDefaultMaxFileBytes = 4ull << 30;

enum class Dtype { kF64, kF32, kF16, kBF16, kF8_E4M3, kF8_E5M2, kI64, kI32, kI16, kI8, kU8, kBool };

const char* dtype_name(Dtype dtype);  // "F32", "BF16", ...
size_t dtype_itemsize(Dtype dtype);
bool is_float(Dtype dtype);
// "bf16" / "fp16" / "fp32" / "fp64" / "float8_e4m3fn" ...: the token an SLA state key uses.
std::string dtype_token(Dtype dtype);

struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte range in the data buffer
  uint64_t end = 0;
  uint64_t numel() const;
};

struct Header {
  std::map<std::string, std::string> metadata;
  std::vector<TensorInfo> tensors;  // sorted by data offset
  uint64_t data_start = 0;          // 8 + header length
};

struct Tensor {
  std::string name;
  Dtype dtype = Dtype::kF32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // little-endian, row-major
};

struct File {
  std::map<std::string, std::string> metadata;
  std::vector<Tensor> tensors;  // file order; names unique
  const Tensor* find(const std::string& name) const;
};

// Parses and validates the header of a file of file_size bytes whose first bytes are `prefix`
// (at least 8 + N bytes of it must be present). `where` names the file in errors.
Header parse_header(const uint8_t* prefix, size_t prefix_size, uint64_t file_size, const std::string& where);

// Reads only the 8 + N header bytes of a file (for the weights' dtypes of a multi-GB model);
// a header longer than max_header_bytes is refused (E_SAFETENSORS) before it is read.
Header read_header(const std::string& path, uint64_t max_header_bytes = kMaxHeaderBytes);

// Reads and validates the whole file; refuses files larger than max_file_bytes before allocating.
File read_file(const std::string& path, uint64_t max_file_bytes = kDefaultMaxFileBytes);
File parse_buffer(const uint8_t* data, size_t size, const std::string& where);

// The bytes of a file: header padded with spaces to a multiple of 8, tensors contiguous in order.
// Throws when names repeat or a tensor's byte count does not match its shape.
std::vector<uint8_t> serialize(const File& file);

// Writes atomically and durably: temp in the same folder, fsync, re-read and validate, rename,
// fsync the folder. On failure the target is untouched and the temp is gone.
void write_file(const std::string& path, const File& file);

// ---- the SLA twin -------------------------------------------------------------------------------
inline constexpr const char* kTwinFormat = "sla_attention";

File to_sla_twin(const SlaFile& sla);
// Rebuilds the SlaFile; throws CheckpointError (E_SCHEMA) when the twin does not have the twin's
// layout. Schema rules of the payload itself are check_sla_file's. What a newer writer may add and
// SimpleTuner would read past (no version, no tie_feature_map_qk, an unknown setting, an unknown
// tensor of an entry) is read as the .pt's reader reads it, and each is a kCompatWarning appended
// to `warnings` (when given).
SlaFile from_sla_twin(const File& twin, const std::string& where, std::vector<Problem>* warnings = nullptr);

// What `sla-ckpt inspect` reports for a twin (format "safetensors"): the .pt's report shape.
// Throws CheckpointError when the file is not a readable twin.
SlaInspection inspect_sla_twin(const std::string& path);

}  // namespace sla::checkpoint::safetensors
