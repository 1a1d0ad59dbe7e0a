#include "knn/select.h"

#include <immintrin.h>

#include <utility>

namespace anomalens::knn_detail {

namespace {

inline bool greater(float ka, int32_t ia, float kb, int32_t ib) {
  return ka > kb || (ka == kb && ia > ib);
}

// Moves the hole at `pos` down to where (key, id) belongs among the first `size` pairs.
inline void siftDown(float* keys, int32_t* ids, int32_t size, int32_t pos, float key, int32_t id) {
  for (;;) {
    int32_t child = 2 * pos + 1;
    if (child >= size) break;
    if (child + 1 < size && greater(keys[child + 1], ids[child + 1], keys[child], ids[child])) ++child;
    if (!greater(keys[child], ids[child], key, id)) break;
    keys[pos] = keys[child];
    ids[pos] = ids[child];
    pos = child;
  }
  keys[pos] = key;
  ids[pos] = id;
}

inline void push(TopK& t, float key, int32_t id) {
  int32_t pos = t.size++;
  while (pos > 0) {
    int32_t parent = (pos - 1) / 2;
    if (!greater(key, id, t.keys[parent], t.ids[parent])) break;
    t.keys[pos] = t.keys[parent];
    t.ids[pos] = t.ids[parent];
    pos = parent;
  }
  t.keys[pos] = key;
  t.ids[pos] = id;
}

template <KeyMode M>
inline float keyOf(const float* c, const float* v, int64_t j) {
  if constexpr (M == KeyMode::Add) return c[j] + v[j];
  if constexpr (M == KeyMode::Scale) return c[j] * v[j];
  return c[j];
}

template <KeyMode M>
void scanScalar(const float* c, const float* v, int64_t count, int32_t base, TopK& top) {
  float thr = top.threshold();
  for (int64_t j = 0; j < count; ++j) {
    float key = keyOf<M>(c, v, j);
    if (key < thr) {
      top.offer(key, base + static_cast<int32_t>(j));
      thr = top.threshold();
    }
  }
}

#if defined(__x86_64__) || defined(__i386__)
#define ANOMALENS_KNN_X86 1

template <KeyMode M>
__attribute__((target("avx2"))) inline __m256 keys8(const float* c, const float* v, int64_t j) {
  __m256 x = _mm256_loadu_ps(c + j);
  if constexpr (M == KeyMode::Add) x = _mm256_add_ps(x, _mm256_loadu_ps(v + j));
  if constexpr (M == KeyMode::Scale) x = _mm256_mul_ps(x, _mm256_loadu_ps(v + j));
  return x;
}

template <KeyMode M>
__attribute__((target("avx2"))) void scanAvx2(const float* c, const float* v, int64_t count, int32_t base,
                                              TopK& top) {
  __m256 thr = _mm256_set1_ps(top.threshold());
  alignas(32) float tmp[8];
  int64_t j = 0;
  for (; j + 8 <= count; j += 8) {
    __m256 x = keys8<M>(c, v, j);
    int hit = _mm256_movemask_ps(_mm256_cmp_ps(x, thr, _CMP_LT_OQ));
    if (hit) {
      _mm256_store_ps(tmp, x);
      while (hit) {
        int lane = __builtin_ctz(hit);
        hit &= hit - 1;
        top.offer(tmp[lane], base + static_cast<int32_t>(j + lane));
      }
      thr = _mm256_set1_ps(top.threshold());
    }
  }
  if (j < count) scanScalar<M>(c + j, M == KeyMode::Plain ? v : v + j, count - j, base + static_cast<int32_t>(j), top);
}

template <KeyMode M>
__attribute__((target("avx512f"))) inline __m512 keys16(const float* c, const float* v, int64_t j,
                                                        __mmask16 lanes) {
  __m512 x = _mm512_maskz_loadu_ps(lanes, c + j);
  if constexpr (M == KeyMode::Add) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(lanes, v + j));
  if constexpr (M == KeyMode::Scale) x = _mm512_mul_ps(x, _mm512_maskz_loadu_ps(lanes, v + j));
  return x;
}

template <KeyMode M>
__attribute__((target("avx512f"))) inline void offerHits(__m512 x, __mmask16 hit, int64_t j, int32_t base,
                                                         TopK& top) {
  alignas(64) float tmp[16];
  _mm512_store_ps(tmp, x);
  unsigned h = hit;
  while (h) {
    int lane = __builtin_ctz(h);
    h &= h - 1;
    top.offer(tmp[lane], base + static_cast<int32_t>(j + lane));
  }
}

template <KeyMode M>
__attribute__((target("avx512f"))) void scanAvx512(const float* c, const float* v, int64_t count, int32_t base,
                                                  TopK& top) {
  __m512 thr = _mm512_set1_ps(top.threshold());
  int64_t j = 0;
  // Two vectors per step: the common case is two compares and one test, no heap work.
  for (; j + 32 <= count; j += 32) {
    __m512 x0 = keys16<M>(c, v, j, 0xFFFF);
    __m512 x1 = keys16<M>(c, v, j + 16, 0xFFFF);
    __mmask16 h0 = _mm512_cmp_ps_mask(x0, thr, _CMP_LT_OQ);
    __mmask16 h1 = _mm512_cmp_ps_mask(x1, thr, _CMP_LT_OQ);
    if (h0 | h1) {
      if (h0) offerHits<M>(x0, h0, j, base, top);
      // The threshold may have dropped: re-test the second vector against it.
      thr = _mm512_set1_ps(top.threshold());
      h1 = _mm512_cmp_ps_mask(x1, thr, _CMP_LT_OQ);
      if (h1) offerHits<M>(x1, h1, j + 16, base, top);
      thr = _mm512_set1_ps(top.threshold());
    }
  }
  for (; j < count; j += 16) {
    __mmask16 lanes = count - j >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (count - j)) - 1);
    __m512 x = keys16<M>(c, v, j, lanes);
    __mmask16 h = _mm512_mask_cmp_ps_mask(lanes, x, thr, _CMP_LT_OQ);
    if (h) {
      offerHits<M>(x, h, j, base, top);
      thr = _mm512_set1_ps(top.threshold());
    }
  }
}
#endif

using ScanFn = void (*)(const float*, const float*, int64_t, int32_t, TopK&);
struct ScanTable {
  ScanFn add, plain, scale;
  const char* name;
};

ScanTable chooseScan() {
#ifdef ANOMALENS_KNN_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f"))
    return {scanAvx512<KeyMode::Add>, scanAvx512<KeyMode::Plain>, scanAvx512<KeyMode::Scale>, "avx512"};
  if (__builtin_cpu_supports("avx2"))
    return {scanAvx2<KeyMode::Add>, scanAvx2<KeyMode::Plain>, scanAvx2<KeyMode::Scale>, "avx2"};
#endif
  return {scanScalar<KeyMode::Add>, scanScalar<KeyMode::Plain>, scanScalar<KeyMode::Scale>, "scalar"};
}

const ScanTable& scanTable() {
  static const ScanTable table = chooseScan();
  return table;
}

}  // namespace

void TopK::offer(float key, int32_t id) {
  if (size < k) {
    push(*this, key, id);
  } else if (key < keys[0]) {
    siftDown(keys, ids, size, 0, key, id);
  }
}

void TopK::offerAny(float key, int32_t id) {
  if (size < k) {
    push(*this, key, id);
  } else if (greater(keys[0], ids[0], key, id)) {
    siftDown(keys, ids, size, 0, key, id);
  }
}

void TopK::sort() {
  // In-place heap sort: repeatedly move the root (largest) behind the shrinking heap.
  for (int32_t end = size - 1; end > 0; --end) {
    float key = keys[end];
    int32_t id = ids[end];
    keys[end] = keys[0];
    ids[end] = ids[0];
    siftDown(keys, ids, end, 0, key, id);
  }
}

void scanRow(const float* c, const float* v, int64_t count, int32_t base, KeyMode mode, TopK& top) {
  const ScanTable& t = scanTable();
  switch (mode) {
    case KeyMode::Add: t.add(c, v, count, base, top); break;
    case KeyMode::Plain: t.plain(c, v, count, base, top); break;
    case KeyMode::Scale: t.scale(c, v, count, base, top); break;
  }
}

const char* scanKernelName() { return scanTable().name; }

}  // namespace anomalens::knn_detail
