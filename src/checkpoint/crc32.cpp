#include "crc32.h"

#include <zlib.h>

#include <climits>
#include <vector>

#include "parallel_chunks.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace sla::checkpoint {

namespace {

uint32_t zlib_crc(uint32_t crc, const uint8_t* data, size_t size) {
  // zlib takes uInt lengths: feed it in pieces that fit.
  while (size > 0) {
    size_t piece = size < (size_t(1) << 30) ? size : (size_t(1) << 30);
    crc = static_cast<uint32_t>(::crc32(crc, data, static_cast<uInt>(piece)));
    data += piece;
    size -= piece;
  }
  return crc;
}

#if defined(__x86_64__)
// x^n mod P for the bit-reflected polynomial, as the 33-bit constant that folding multiplies by:
// reflect32(x^n mod P) << 1 (the extra shift absorbs the one-bit offset of a reflected product).
uint64_t fold_constant(unsigned n) {
  // Remainder of x^n in the normal domain (polynomial 0x04C11DB7), then bit-reflected.
  uint32_t rem = 1;
  for (unsigned i = 0; i < n; ++i) rem = (rem & 0x80000000u) ? (rem << 1) ^ 0x04C11DB7u : (rem << 1);
  uint32_t r = 0;
  for (int b = 0; b < 32; ++b)
    if (rem & (1u << b)) r |= 1u << (31 - b);
  return uint64_t(r) << 1;
}

struct FoldConstants {
  __m128i by8;  // fold 1024 bits: lo lane x^(1024+32), hi lane x^(1024-32)
  __m128i by1;  // fold 128 bits: lo lane x^(128+32), hi lane x^(128-32)
};

const FoldConstants& fold_constants() {
  static const FoldConstants k = [] {
    FoldConstants c;
    c.by8 = _mm_set_epi64x(static_cast<long long>(fold_constant(1024 - 32)), static_cast<long long>(fold_constant(1024 + 32)));
    c.by1 = _mm_set_epi64x(static_cast<long long>(fold_constant(128 - 32)), static_cast<long long>(fold_constant(128 + 32)));
    return c;
  }();
  return k;
}

__attribute__((target("pclmul,sse4.1"))) inline __m128i fold(__m128i acc, __m128i k, __m128i next) {
  __m128i lo = _mm_clmulepi64_si128(acc, k, 0x00);
  __m128i hi = _mm_clmulepi64_si128(acc, k, 0x11);
  return _mm_xor_si128(_mm_xor_si128(lo, hi), next);
}

// Folds all whole 16-byte blocks into one 128-bit value congruent to them mod P, then lets zlib
// finish on that value plus the tail: the raw CRC only depends on the message mod P.
__attribute__((target("pclmul,sse4.1"))) uint32_t pclmul_crc(uint32_t crc, const uint8_t* p, size_t size) {
  const FoldConstants& k = fold_constants();
  auto load = [](const uint8_t* q) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)); };
  // Eight independent accumulators: enough carry-less multiplies in flight to hide their latency.
  __m128i x[8];
  for (int i = 0; i < 8; ++i) x[i] = load(p + 16 * i);
  x[0] = _mm_xor_si128(x[0], _mm_cvtsi32_si128(static_cast<int>(~crc)));
  p += 128;
  size -= 128;
  while (size >= 128) {
    for (int i = 0; i < 8; ++i) x[i] = fold(x[i], k.by8, load(p + 16 * i));
    p += 128;
    size -= 128;
  }
  __m128i acc = x[0];
  for (int i = 1; i < 8; ++i) acc = fold(acc, k.by1, x[i]);
  while (size >= 16) {
    acc = fold(acc, k.by1, load(p));
    p += 16;
    size -= 16;
  }
  alignas(16) uint8_t folded[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(folded), acc);
  // The initial value is already inside x: continue with a zero raw state (zlib's ~0xFFFFFFFF).
  uint32_t out = zlib_crc(0xFFFFFFFFu, folded, 16);
  return zlib_crc(out, p, size);
}

bool has_pclmul() {
  static const bool yes = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  return yes;
}
#endif

uint32_t serial_crc(uint32_t crc, const uint8_t* data, size_t size) {
#if defined(__x86_64__)
  if (size >= 256 && has_pclmul()) return pclmul_crc(crc, data, size);
#endif
  return zlib_crc(crc, data, size);
}

}  // namespace

uint32_t crc32_update(uint32_t crc, const uint8_t* data, size_t size) {
  constexpr uint64_t kMinChunk = uint64_t(8) << 20;
  size_t chunks = chunk_count(size, kMinChunk);
  if (chunks == 1) return serial_crc(crc, data, size);
  // CRCs of the pieces, joined with crc32_combine (which needs only each piece's length).
  std::vector<uint32_t> parts(chunks);
  std::vector<uint64_t> lengths(chunks);
  parallel_chunks(size, kMinChunk, [&](uint64_t begin, uint64_t end, size_t i) {
    parts[i] = serial_crc(i == 0 ? crc : 0, data + begin, static_cast<size_t>(end - begin));
    lengths[i] = end - begin;
  });
  uint32_t out = parts[0];
  for (size_t i = 1; i < chunks; ++i) out = crc32_concat(out, parts[i], lengths[i]);
  return out;
}

uint32_t crc32_concat(uint32_t crc_a, uint32_t crc_b, uint64_t length_b) {
  return static_cast<uint32_t>(::crc32_combine(crc_a, crc_b, static_cast<z_off_t>(length_b)));
}

}  // namespace sla::checkpoint
