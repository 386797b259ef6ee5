#include "tensor_stats.h"

#include "parallel_chunks.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace slackpt::pt {

namespace {

// Folds x into the statistics the scalar way (tails, and CPUs without SSE2).
struct Accumulator {
  double sum = 0;
  float min = INFINITY, max = -INFINITY;
  uint64_t finite = 0;

  void add(float x) {
    if (!std::isfinite(x)) return;
    sum += x;
    min = std::min(min, x);
    max = std::max(max, x);
    ++finite;
  }
};

#if defined(__SSE2__)
// Eight floats per step in two independent halves (so the additions do not form one chain);
// x - x is 0 exactly for finite x, so one compare gives the mask that drops NaN and Inf. Sums
// run in float for 1024 elements, then move into double: exact enough, and no per-element
// conversion.
struct Lanes {
  __m128 sum = _mm_setzero_ps();
  __m128 lo = _mm_set1_ps(INFINITY), hi = _mm_set1_ps(-INFINITY);
  __m128i count = _mm_setzero_si128();  // int32 lanes, flushed with the sums

  void add(__m128 x) {
    const __m128 inf = _mm_set1_ps(INFINITY), minus_inf = _mm_set1_ps(-INFINITY);
    __m128 ok = _mm_cmpeq_ps(_mm_sub_ps(x, x), _mm_setzero_ps());
    __m128 v = _mm_and_ps(x, ok);
    sum = _mm_add_ps(sum, v);
    lo = _mm_min_ps(lo, _mm_or_ps(v, _mm_andnot_ps(ok, inf)));
    hi = _mm_max_ps(hi, _mm_or_ps(v, _mm_andnot_ps(ok, minus_inf)));
    count = _mm_sub_epi32(count, _mm_castps_si128(ok));
  }
  void flush(Accumulator& acc) {
    alignas(16) float sums[4];
    alignas(16) int32_t counts[4];
    _mm_store_ps(sums, sum);
    _mm_store_si128(reinterpret_cast<__m128i*>(counts), count);
    for (int l = 0; l < 4; ++l) {
      acc.sum += double(sums[l]);
      acc.finite += uint64_t(counts[l]);
    }
    sum = _mm_setzero_ps();
    count = _mm_setzero_si128();
  }
  void drain(Accumulator& acc) {
    flush(acc);
    alignas(16) float lows[4], highs[4];
    _mm_store_ps(lows, lo);
    _mm_store_ps(highs, hi);
    for (int l = 0; l < 4; ++l) {
      acc.min = std::min(acc.min, lows[l]);
      acc.max = std::max(acc.max, highs[l]);
    }
  }
};

void add_sse2(Accumulator& acc, const float* p, uint64_t n) {
  constexpr uint64_t kBlock = 1024;
  Lanes a, b;
  uint64_t whole = n - n % 8, i = 0;
  while (i < whole) {
    uint64_t block_end = std::min(whole, i + kBlock);
    for (; i < block_end; i += 8) {
      a.add(_mm_loadu_ps(p + i));
      b.add(_mm_loadu_ps(p + i + 4));
    }
    a.flush(acc);
    b.flush(acc);
  }
  a.drain(acc);
  b.drain(acc);
  for (; i < n; ++i) acc.add(p[i]);
}
#endif

void add_range(Accumulator& acc, const float* p, uint64_t n) {
#if defined(__SSE2__)
  add_sse2(acc, p, n);
#else
  for (uint64_t i = 0; i < n; ++i) acc.add(p[i]);
#endif
}

TensorStats contiguous_float32(const float* p, uint64_t n) {
  constexpr uint64_t kMinChunk = uint64_t(2) << 20;  // elements
  std::vector<Accumulator> parts(chunk_count(n, kMinChunk));
  parallel_chunks(n, kMinChunk, [&](uint64_t begin, uint64_t end, size_t i) { add_range(parts[i], p + begin, end - begin); });
  Accumulator acc;
  for (const Accumulator& part : parts) {
    acc.sum += part.sum;
    acc.min = std::min(acc.min, part.min);
    acc.max = std::max(acc.max, part.max);
    acc.finite += part.finite;
  }
  TensorStats s;
  s.finite = acc.finite;
  s.nonfinite = n - acc.finite;
  if (acc.finite > 0) {
    s.sum = acc.sum;
    s.min = acc.min;
    s.max = acc.max;
    s.abs_max = std::max(std::fabs(double(acc.min)), std::fabs(double(acc.max)));
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
