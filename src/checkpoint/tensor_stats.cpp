#include "tensor_stats.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace slackpt::pt {

namespace {

// Eight independent lanes so that the additions and comparisons do not form one long chain.
TensorStats contiguous_float32(const float* p, uint64_t n) {
  constexpr int kLanes = 8;
  double sum[kLanes] = {};
  float lo[kLanes], hi[kLanes];
  uint64_t finite[kLanes] = {};
  std::fill(lo, lo + kLanes, INFINITY);
  std::fill(hi, hi + kLanes, -INFINITY);
  uint64_t whole = n - n % kLanes;
  for (uint64_t i = 0; i < whole; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      float x = p[i + l];
      bool ok = (x - x) == 0.0f;  // false for NaN and +-Inf
      float v = ok ? x : 0.0f;
      sum[l] += v;
      lo[l] = ok && x < lo[l] ? x : lo[l];
      hi[l] = ok && x > hi[l] ? x : hi[l];
      finite[l] += ok;
    }
  }
  TensorStats s;
  double total = 0;
  float mn = INFINITY, mx = -INFINITY;
  for (int l = 0; l < kLanes; ++l) {
    total += sum[l];
    mn = std::min(mn, lo[l]);
    mx = std::max(mx, hi[l]);
    s.finite += finite[l];
  }
  for (uint64_t i = whole; i < n; ++i) {
    float x = p[i];
    if (!std::isfinite(x)) continue;
    total += x;
    mn = std::min(mn, x);
    mx = std::max(mx, x);
    ++s.finite;
  }
  s.nonfinite = n - s.finite;
  if (s.finite > 0) {
    s.sum = total;
    s.min = mn;
    s.max = mx;
    s.abs_max = std::max(std::fabs(double(mn)), std::fabs(double(mx)));
  }
  return s;
}

}  // namespace

TensorStats tensor_stats(const Tensor& t) {
  uint64_t n = t.numel();
  const uint8_t* first = t.storage->bytes + uint64_t(t.storage_offset) * sizeof(float);
  bool aligned = reinterpret_cast<uintptr_t>(first) % alignof(float) == 0;  // misaligned records exist
  if (t.dtype == DType::Float32 && t.is_contiguous() && n > 0 && aligned)
    return contiguous_float32(reinterpret_cast<const float*>(first), n);
  TensorStats s;
  double mn = INFINITY, mx = -INFINITY;
  for (uint64_t i = 0; i < n; ++i) {
    double x = t.element(i);
    if (!std::isfinite(x)) {
      ++s.nonfinite;
      continue;
    }
    ++s.finite;
    s.sum += x;
    mn = std::min(mn, x);
    mx = std::max(mx, x);
  }
  if (s.finite > 0) {
    s.min = mn;
    s.max = mx;
    s.abs_max = std::max(std::fabs(mn), std::fabs(mx));
  }
  return s;
}

}  // namespace slackpt::pt
