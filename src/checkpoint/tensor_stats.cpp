#include "tensor_stats.h"

#include "crc32.h"
#include "parallel_chunks.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sla::checkpoint::pt {

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
// Eight floats per step in two independent halves (so the additions do not form one chain).
// Sums run in float for a block of 1024 elements, then move into double: exact enough, and no
// per-element conversion. This masked form (x - x is 0 exactly for finite x) runs only on blocks
// that hold a NaN or Inf.
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

// Optimistic pass over one block, assuming every value is finite (min/max/sum without masks);
// returns false, leaving acc untouched, when the block holds a NaN or Inf.
bool add_finite_block(Accumulator& acc, const float* p, uint64_t n) {
  __m128 sum_a = _mm_setzero_ps(), sum_b = _mm_setzero_ps();
  __m128 lo = _mm_set1_ps(INFINITY), hi = _mm_set1_ps(-INFINITY), bad = _mm_setzero_ps();
  for (uint64_t i = 0; i < n; i += 8) {
    __m128 a = _mm_loadu_ps(p + i), b = _mm_loadu_ps(p + i + 4);
    sum_a = _mm_add_ps(sum_a, a);
    sum_b = _mm_add_ps(sum_b, b);
    lo = _mm_min_ps(lo, _mm_min_ps(a, b));
    hi = _mm_max_ps(hi, _mm_max_ps(a, b));
    // x - x is NaN exactly when x is NaN or Inf
    bad = _mm_or_ps(bad, _mm_add_ps(_mm_sub_ps(a, a), _mm_sub_ps(b, b)));
  }
  if (_mm_movemask_ps(_mm_cmpunord_ps(bad, bad)) != 0) return false;
  alignas(16) float sums[4], lows[4], highs[4];
  _mm_store_ps(sums, _mm_add_ps(sum_a, sum_b));
  _mm_store_ps(lows, lo);
  _mm_store_ps(highs, hi);
  for (int l = 0; l < 4; ++l) {
    acc.sum += double(sums[l]);
    acc.min = std::min(acc.min, lows[l]);
    acc.max = std::max(acc.max, highs[l]);
  }
  acc.finite += n;
  return true;
}

void add_sse2(Accumulator& acc, const float* p, uint64_t n) {
  constexpr uint64_t kBlock = 1024;
  uint64_t whole = n - n % 8, i = 0;
  for (; i < whole; i += std::min(kBlock, whole - i)) {
    uint64_t len = std::min(kBlock, whole - i);
    if (add_finite_block(acc, p + i, len)) continue;
    Lanes a, b;  // the block has NaN or Inf: mask them out
    for (uint64_t k = i; k < i + len; k += 8) {
      a.add(_mm_loadu_ps(p + k));
      b.add(_mm_loadu_ps(p + k + 4));
    }
    a.drain(acc);
    b.drain(acc);
  }
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

void merge(Accumulator& into, const Accumulator& part) {
  into.sum += part.sum;
  into.min = std::min(into.min, part.min);
  into.max = std::max(into.max, part.max);
  into.finite += part.finite;
}

TensorStats finish(const Accumulator& acc, uint64_t n) {
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

constexpr uint64_t kMinChunk = uint64_t(2) << 20;  // elements per thread

TensorStats contiguous_float32(const float* p, uint64_t n) {
  std::vector<Accumulator> parts(chunk_count(n, kMinChunk));
  parallel_chunks(n, kMinChunk, [&](uint64_t begin, uint64_t end, size_t i) { add_range(parts[i], p + begin, end - begin); });
  Accumulator acc;
  for (const Accumulator& part : parts) merge(acc, part);
  return finish(acc, n);
}

const float* float32_data(const Tensor& t) {
  const uint8_t* first = t.storage->bytes + uint64_t(t.storage_offset) * sizeof(float);
  bool aligned = reinterpret_cast<uintptr_t>(first) % alignof(float) == 0;  // misaligned records exist
  bool fast = t.dtype == DType::Float32 && t.is_contiguous() && t.numel() > 0 && aligned;
  return fast ? reinterpret_cast<const float*>(first) : nullptr;
}

}  // namespace

TensorStats tensor_stats_with_storage_crc(const Tensor& t, uint32_t* storage_crc) {
  const Storage& s = *t.storage;
  const float* data = float32_data(t);
  if (!data) {
    *storage_crc = crc32_update(0, s.bytes, static_cast<size_t>(s.nbytes()));
    return tensor_stats(t);
  }
  // Work in storage elements; the tensor covers [first, last).
  const float* storage = reinterpret_cast<const float*>(s.bytes);
  uint64_t n = s.numel, first = uint64_t(t.storage_offset), last = first + t.numel();
  constexpr uint64_t kCacheChunk = 64 * 1024;  // 256 KiB: still in L2 when the statistics run
  size_t parts = chunk_count(n, kMinChunk);
  std::vector<Accumulator> stats(parts);
  std::vector<uint32_t> crcs(parts);
  std::vector<uint64_t> lengths(parts);
  parallel_chunks(n, kMinChunk, [&](uint64_t begin, uint64_t end, size_t i) {
    uint32_t crc = 0;
    for (uint64_t at = begin; at < end; at += kCacheChunk) {
      uint64_t stop = std::min(end, at + kCacheChunk);
      crc = crc32_update(crc, reinterpret_cast<const uint8_t*>(storage + at), static_cast<size_t>((stop - at) * sizeof(float)));
      uint64_t lo = std::max(at, first), hi = std::min(stop, last);
      if (lo < hi) add_range(stats[i], storage + lo, hi - lo);
    }
    crcs[i] = crc;
    lengths[i] = (end - begin) * sizeof(float);
  });
  Accumulator acc;
  uint32_t crc = crcs[0];
  merge(acc, stats[0]);
  for (size_t i = 1; i < parts; ++i) {
    crc = crc32_concat(crc, crcs[i], lengths[i]);
    merge(acc, stats[i]);
  }
  *storage_crc = crc;
  return finish(acc, t.numel());
}

TensorStats tensor_stats(const Tensor& t) {
  uint64_t n = t.numel();
  if (const float* data = float32_data(t)) return contiguous_float32(data, n);
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

}  // namespace sla::checkpoint::pt
