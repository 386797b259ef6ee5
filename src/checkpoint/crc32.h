// CRC-32 (the zip/zlib polynomial). Large buffers are folded with carry-less multiplication
// (PCLMULQDQ, about 4x zlib's table code) so that checking every record of a big checkpoint costs
// about as much as reading it; the tail and CPUs without PCLMULQDQ use zlib's crc32.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sla::checkpoint {

// Same contract as zlib's crc32(crc, data, size): pass 0 to start, the previous result to continue.
uint32_t crc32_update(uint32_t crc, const uint8_t* data, size_t size);

// The CRC of A followed by B, from crc(A), crc(B) and B's length.
uint32_t crc32_concat(uint32_t crc_a, uint32_t crc_b, uint64_t length_b);

}  // namespace sla::checkpoint
