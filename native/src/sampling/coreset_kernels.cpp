#include "sampling/coreset_kernels.h"

// GCC 12 reports the deliberately undefined pass-through operand of its own AVX-512
// intrinsics (_mm512_undefined_ps in _mm512_cvtph_ps / _mm512_min_ps) as uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cmath>
#include <cstring>

namespace anomalens::coreset_detail {

uint16_t floatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u);  // inf, nan
  if (a >= 0x477ff000u) return sign | 0x7c00u;                                       // rounds to inf
  if (a < 0x38800000u) {                                                             // half subnormal or 0
    // |f| * 2^24 is exact; rounding it to an integer (ties to even) is the subnormal mantissa.
    return sign | static_cast<uint16_t>(std::nearbyint(std::fabs(f) * 16777216.0f));
  }
  uint32_t h = ((a >> 23) - 112) << 10 | ((a >> 13) & 0x3ffu);
  const uint32_t rest = a & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent: correct
  return sign | static_cast<uint16_t>(h);
}

float halfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  const uint32_t m = h & 0x3ffu;
  uint32_t x;
  if (e == 0) {
    float v = static_cast<float>(m) * 5.9604644775390625e-8f;  // m * 2^-24, exact
    std::memcpy(&x, &v, 4);
    x |= sign;
  } else if (e == 31) {
    x = sign | 0x7f800000u | (m << 13);
  } else {
    x = sign | ((e + 112) << 23) | (m << 13);
  }
  float out;
  std::memcpy(&out, &x, 4);
  return out;
}

namespace {

// ---- portable kernels ------------------------------------------------------------------------

template <bool Half>
inline float valueAt(const void* packed, int64_t i) {
  if constexpr (Half) return halfToFloat(static_cast<const uint16_t*>(packed)[i]);
  else return static_cast<const float*>(packed)[i];
}

template <bool Half>
void blockDistancesScalar(const void* packed, int64_t p, int64_t b, const float* c, float* out) {
  float acc[kLanes] = {};
  const int64_t base = b * p * kLanes;
  for (int64_t t = 0; t < p; ++t)
    for (int64_t l = 0; l < kLanes; ++l) {
      float diff = valueAt<Half>(packed, base + t * kLanes + l) - c[t];
      acc[l] += diff * diff;
    }
  std::memcpy(out, acc, sizeof acc);
}

template <bool Half>
Farthest updateScalar(const void* packed, int64_t p, int64_t b0, int64_t b1, const float* c, float* mind) {
  Farthest best;
  float dist[kLanes];
  for (int64_t b = b0; b < b1; ++b) {
    blockDistancesScalar<Half>(packed, p, b, c, dist);
    for (int64_t l = 0; l < kLanes; ++l) {
      float& m = mind[b * kLanes + l];
      if (dist[l] < m) m = dist[l];
      best.offer(m, b * kLanes + l);
    }
  }
  return best;
}

#if defined(__x86_64__)
#define ANOMALENS_CORESET_X86 1

// ---- AVX-512: one zmm per coordinate of a block ---------------------------------------------

template <bool Half>
__attribute__((target("avx512f"))) inline __m512 load16(const void* packed, int64_t i) {
  if constexpr (Half)
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(packed) + i)));
  else return _mm512_loadu_ps(static_cast<const float*>(packed) + i);
}

template <bool Half>
__attribute__((target("avx512f"))) inline __m512 dist16(const void* packed, int64_t p, int64_t b, const float* c) {
  // Four independent chains hide the FMA latency.
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  const int64_t base = b * p * kLanes;
  int64_t t = 0;
  for (; t + 4 <= p; t += 4) {
    __m512 d0 = _mm512_sub_ps(load16<Half>(packed, base + t * kLanes), _mm512_set1_ps(c[t]));
    __m512 d1 = _mm512_sub_ps(load16<Half>(packed, base + (t + 1) * kLanes), _mm512_set1_ps(c[t + 1]));
    __m512 d2 = _mm512_sub_ps(load16<Half>(packed, base + (t + 2) * kLanes), _mm512_set1_ps(c[t + 2]));
    __m512 d3 = _mm512_sub_ps(load16<Half>(packed, base + (t + 3) * kLanes), _mm512_set1_ps(c[t + 3]));
    a0 = _mm512_fmadd_ps(d0, d0, a0);
    a1 = _mm512_fmadd_ps(d1, d1, a1);
    a2 = _mm512_fmadd_ps(d2, d2, a2);
    a3 = _mm512_fmadd_ps(d3, d3, a3);
  }
  for (; t < p; ++t) {
    __m512 d0 = _mm512_sub_ps(load16<Half>(packed, base + t * kLanes), _mm512_set1_ps(c[t]));
    a0 = _mm512_fmadd_ps(d0, d0, a0);
  }
  return _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
}

template <bool Half>
__attribute__((target("avx512f"))) void blockDistancesAvx512(const void* packed, int64_t p, int64_t b, const float* c,
                                                            float* out) {
  _mm512_storeu_ps(out, dist16<Half>(packed, p, b, c));
}

template <bool Half>
__attribute__((target("avx512f"))) Farthest updateAvx512(const void* packed, int64_t p, int64_t b0, int64_t b1,
                                                         const float* c, float* mind) {
  __m512 bestV = _mm512_set1_ps(-2.0f);
  __m512i bestB = _mm512_set1_epi32(-1);
  for (int64_t b = b0; b < b1; ++b) {
    __m512 m = _mm512_min_ps(_mm512_loadu_ps(mind + b * kLanes), dist16<Half>(packed, p, b, c));
    _mm512_storeu_ps(mind + b * kLanes, m);
    // Strictly greater: each lane keeps its earliest block, i.e. its lowest row, on ties.
    __mmask16 better = _mm512_cmp_ps_mask(m, bestV, _CMP_GT_OQ);
    bestV = _mm512_mask_mov_ps(bestV, better, m);
    bestB = _mm512_mask_mov_epi32(bestB, better, _mm512_set1_epi32(static_cast<int32_t>(b)));
  }
  alignas(64) float v[kLanes];
  alignas(64) int32_t blk[kLanes];
  _mm512_store_ps(v, bestV);
  _mm512_store_si512(blk, bestB);
  Farthest best;
  for (int64_t l = 0; l < kLanes; ++l)
    if (blk[l] >= 0) best.offer(v[l], static_cast<int64_t>(blk[l]) * kLanes + l);
  return best;
}

// ---- AVX2 + FMA + F16C: two ymm per coordinate of a block -----------------------------------

template <bool Half>
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8(const void* packed, int64_t i) {
  if constexpr (Half)
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(packed) + i)));
  else return _mm256_loadu_ps(static_cast<const float*>(packed) + i);
}

template <bool Half>
__attribute__((target("avx2,fma,f16c"))) inline void dist8x2(const void* packed, int64_t p, int64_t b, const float* c,
                                                            __m256& lo, __m256& hi) {
  __m256 l0 = _mm256_setzero_ps(), l1 = l0, h0 = l0, h1 = l0;
  const int64_t base = b * p * kLanes;
  int64_t t = 0;
  for (; t + 2 <= p; t += 2) {
    __m256 c0 = _mm256_set1_ps(c[t]), c1 = _mm256_set1_ps(c[t + 1]);
    __m256 dl0 = _mm256_sub_ps(load8<Half>(packed, base + t * kLanes), c0);
    __m256 dh0 = _mm256_sub_ps(load8<Half>(packed, base + t * kLanes + 8), c0);
    __m256 dl1 = _mm256_sub_ps(load8<Half>(packed, base + (t + 1) * kLanes), c1);
    __m256 dh1 = _mm256_sub_ps(load8<Half>(packed, base + (t + 1) * kLanes + 8), c1);
    l0 = _mm256_fmadd_ps(dl0, dl0, l0);
    h0 = _mm256_fmadd_ps(dh0, dh0, h0);
    l1 = _mm256_fmadd_ps(dl1, dl1, l1);
    h1 = _mm256_fmadd_ps(dh1, dh1, h1);
  }
  if (t < p) {
    __m256 c0 = _mm256_set1_ps(c[t]);
    __m256 dl0 = _mm256_sub_ps(load8<Half>(packed, base + t * kLanes), c0);
    __m256 dh0 = _mm256_sub_ps(load8<Half>(packed, base + t * kLanes + 8), c0);
    l0 = _mm256_fmadd_ps(dl0, dl0, l0);
    h0 = _mm256_fmadd_ps(dh0, dh0, h0);
  }
  lo = _mm256_add_ps(l0, l1);
  hi = _mm256_add_ps(h0, h1);
}

template <bool Half>
__attribute__((target("avx2,fma,f16c"))) void blockDistancesAvx2(const void* packed, int64_t p, int64_t b,
                                                                const float* c, float* out) {
  __m256 lo, hi;
  dist8x2<Half>(packed, p, b, c, lo, hi);
  _mm256_storeu_ps(out, lo);
  _mm256_storeu_ps(out + 8, hi);
}

template <bool Half>
__attribute__((target("avx2,fma,f16c"))) Farthest updateAvx2(const void* packed, int64_t p, int64_t b0, int64_t b1,
                                                             const float* c, float* mind) {
  __m256 bestLo = _mm256_set1_ps(-2.0f), bestHi = bestLo;
  __m256i blkLo = _mm256_set1_epi32(-1), blkHi = blkLo;
  for (int64_t b = b0; b < b1; ++b) {
    __m256 lo, hi;
    dist8x2<Half>(packed, p, b, c, lo, hi);
    __m256 mLo = _mm256_min_ps(_mm256_loadu_ps(mind + b * kLanes), lo);
    __m256 mHi = _mm256_min_ps(_mm256_loadu_ps(mind + b * kLanes + 8), hi);
    _mm256_storeu_ps(mind + b * kLanes, mLo);
    _mm256_storeu_ps(mind + b * kLanes + 8, mHi);
    __m256i bv = _mm256_set1_epi32(static_cast<int32_t>(b));
    __m256 gLo = _mm256_cmp_ps(mLo, bestLo, _CMP_GT_OQ), gHi = _mm256_cmp_ps(mHi, bestHi, _CMP_GT_OQ);
    bestLo = _mm256_blendv_ps(bestLo, mLo, gLo);
    bestHi = _mm256_blendv_ps(bestHi, mHi, gHi);
    blkLo = _mm256_blendv_epi8(blkLo, bv, _mm256_castps_si256(gLo));
    blkHi = _mm256_blendv_epi8(blkHi, bv, _mm256_castps_si256(gHi));
  }
  alignas(32) float v[kLanes];
  alignas(32) int32_t blk[kLanes];
  _mm256_store_ps(v, bestLo);
  _mm256_store_ps(v + 8, bestHi);
  _mm256_store_si256(reinterpret_cast<__m256i*>(blk), blkLo);
  _mm256_store_si256(reinterpret_cast<__m256i*>(blk + 8), blkHi);
  Farthest best;
  for (int64_t l = 0; l < kLanes; ++l)
    if (blk[l] >= 0) best.offer(v[l], static_cast<int64_t>(blk[l]) * kLanes + l);
  return best;
}

__attribute__((target("avx2,f16c"))) void floatsToHalvesF16c(const float* in, uint16_t* out, int64_t count) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < count; ++i) out[i] = floatToHalf(in[i]);
}
#endif

Kernels choose(bool half) {
#ifdef ANOMALENS_CORESET_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f"))
    return half ? Kernels{updateAvx512<true>, blockDistancesAvx512<true>, "avx512"}
                : Kernels{updateAvx512<false>, blockDistancesAvx512<false>, "avx512"};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return half ? Kernels{updateAvx2<true>, blockDistancesAvx2<true>, "avx2"}
                : Kernels{updateAvx2<false>, blockDistancesAvx2<false>, "avx2"};
#endif
  return half ? Kernels{updateScalar<true>, blockDistancesScalar<true>, "scalar"}
              : Kernels{updateScalar<false>, blockDistancesScalar<false>, "scalar"};
}

}  // namespace

const Kernels& coresetKernels(bool half) {
  static const Kernels f32 = choose(false);
  static const Kernels f16 = choose(true);
  return half ? f16 : f32;
}

void floatsToHalves(const float* in, uint16_t* out, int64_t count) {
#ifdef ANOMALENS_CORESET_X86
  static const bool f16c = (__builtin_cpu_init(), __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx2"));
  if (f16c) return floatsToHalvesF16c(in, out, count);
#endif
  for (int64_t i = 0; i < count; ++i) out[i] = floatToHalf(in[i]);
}

}  // namespace anomalens::coreset_detail
