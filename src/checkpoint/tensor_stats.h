// One pass over a stored tensor: sum, min, max, max |x| over its finite elements, and how many
// elements are NaN or Inf. Contiguous float32 (the SLA case) takes a vectorisable path so that a
// large file costs about one read of its bytes.
#pragma once

#include "pt_value.h"

#include <cstdint>

namespace sla::checkpoint::pt {

struct TensorStats {
  double sum = 0, min = 0, max = 0, abs_max = 0;  // 0 when there is no finite element
  uint64_t finite = 0, nonfinite = 0;
};

TensorStats tensor_stats(const Tensor& tensor);

// The same statistics plus the CRC32 of the tensor's whole storage, in one pass over the bytes
// (cache-sized chunks: CRC, then statistics of the part the tensor covers), so that checking and
// summarising a large record reads it once.
TensorStats tensor_stats_with_storage_crc(const Tensor& tensor, uint32_t* storage_crc);

}  // namespace sla::checkpoint::pt
