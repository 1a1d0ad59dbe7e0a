#include "knn/screen.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <utility>

#include "anomalens/core/error.h"

// GCC 12 flags the undefined pass-through operand of its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace anomalens::knn_detail {

namespace {

constexpr int64_t kQueryBlock = 256;
constexpr int64_t kDbTile = 1024;
constexpr int64_t kMinQueriesPerThread = 32;
constexpr double kUnit = 0x1.0p-24;  // float32 unit roundoff

inline uint16_t toBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even (inputs are finite)
  return static_cast<uint16_t>(u >> 16);
}
inline float fromBf16(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Centres, rounds and measures one row: writes bf16 values, returns ||x~||^2, ||xc - x~||^2, ||xc||^2.
struct RowStats {
  double norm2, error2, centred2;
};
RowStats convertRow(const float* x, const float* mean, int64_t d, uint16_t* out) {
  double n2 = 0, e2 = 0, c2 = 0;
  for (int64_t t = 0; t < d; ++t) {
    const float xc = x[t] - mean[t];
    const uint16_t b = toBf16(xc);
    const float back = fromBf16(b);
    out[t] = b;
    n2 += static_cast<double>(back) * back;
    e2 += static_cast<double>(xc - back) * static_cast<double>(xc - back);
    c2 += static_cast<double>(xc) * xc;
  }
  return {n2, e2, c2};
}

// ||q - x||^2 in float32 from the original rows, 16 lanes then a fixed reduction: equal rows
// give equal distances, so ties stay ties.
__attribute__((target("avx512f"))) float exactL2sq(const float* q, const float* x, int64_t d) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0;
  int64_t t = 0;
  for (; t + 32 <= d; t += 32) {
    __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(q + t), _mm512_loadu_ps(x + t));
    __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(q + t + 16), _mm512_loadu_ps(x + t + 16));
    a0 = _mm512_fmadd_ps(d0, d0, a0);
    a1 = _mm512_fmadd_ps(d1, d1, a1);
  }
  for (; t < d; t += 16) {
    __mmask16 lanes = d - t >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (d - t)) - 1);
    __m512 d0 = _mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, q + t), _mm512_maskz_loadu_ps(lanes, x + t));
    a0 = _mm512_fmadd_ps(d0, d0, a0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

// Per-query constants of the bound (see knn_screen.h).
struct QueryBound {
  double na;     // ||q~||^2
  double delta;  // float32 error bound of na + key
  double twoE;   // 2 (Eq + max Ex + centring slack)
};

// One query's screening state over one database range.
struct Screen {
  std::vector<float> heap;  // max-heap of the k smallest keys
  std::vector<std::pair<float, int32_t>> cand;
  float threshold = std::numeric_limits<float>::infinity();  // keys above it cannot qualify
  bool overflow = false;

  void retune(const QueryBound& b, size_t k) {
    if (heap.size() < k) {
      threshold = std::numeric_limits<float>::infinity();
      return;
    }
    const double s = std::max(0.0, static_cast<double>(heap.front()) + b.na + b.delta);
    const double u = std::sqrt(s) + b.twoE;
    // Round up: a candidate must never be dropped by the float conversion.
    threshold = std::nextafter(static_cast<float>(u * u + b.delta - b.na), std::numeric_limits<float>::infinity());
  }
  void offer(float key, int32_t id, const QueryBound& b, size_t k, size_t cap) {
    cand.emplace_back(key, id);
    if (heap.size() < k) {
      heap.push_back(key);
      std::push_heap(heap.begin(), heap.end());
      if (heap.size() == k) retune(b, k);
    } else if (key < heap.front()) {
      std::pop_heap(heap.begin(), heap.end());
      heap.back() = key;
      std::push_heap(heap.begin(), heap.end());
      retune(b, k);
    }
    if (cand.size() > 2 * cap) {
      float thr = threshold;
      cand.erase(std::remove_if(cand.begin(), cand.end(), [thr](const auto& c) { return c.first > thr; }), cand.end());
      if (cand.size() > cap) {
        overflow = true;
        std::vector<std::pair<float, int32_t>>().swap(cand);
      }
    }
  }
};

__attribute__((target("avx512f"))) void scanScreened(const float* c, const float* norms, int64_t cols, int32_t base,
                                                    Screen& st, const QueryBound& b, size_t k, size_t cap) {
  __m512 thr = _mm512_set1_ps(st.threshold);
  alignas(64) float keys[16];
  for (int64_t j = 0; j < cols && !st.overflow; j += 16) {
    __mmask16 lanes = cols - j >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (cols - j)) - 1);
    __m512 cv = _mm512_maskz_loadu_ps(lanes, c + j);
    // key = ||x~||^2 - 2 q~.x~ (c + c is exact, so one rounding)
    __m512 key = _mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, norms + j), _mm512_add_ps(cv, cv));
    __mmask16 hit = _mm512_mask_cmp_ps_mask(lanes, key, thr, _CMP_LE_OQ);
    if (!hit) continue;
    _mm512_store_ps(keys, key);
    unsigned h = hit;
    while (h && !st.overflow) {
      int lane = __builtin_ctz(h);
      h &= h - 1;
      if (keys[lane] <= st.threshold) st.offer(keys[lane], base + static_cast<int32_t>(j + lane), b, k, cap);
    }
    thr = _mm512_set1_ps(st.threshold);
  }
}

dnnl::engine& cpuEngine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// bf16 x bf16 -> f32 matmul primitives by (rows, cols), one cache per thread.
class MatmulCache {
 public:
  explicit MatmulCache(int64_t d) : d_(d), stream_(cpuEngine()) {}
  // c (rows x cols) = a (rows x d) . b (cols x d)^T
  void run(const uint16_t* a, int64_t rows, const uint16_t* b, int64_t cols, float* c) {
    using dt = dnnl::memory::data_type;
    auto key = std::make_pair(rows, cols);
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      dnnl::memory::desc ad({rows, d_}, dt::bf16, {d_, 1});
      dnnl::memory::desc bd({d_, cols}, dt::bf16, {1, d_});
      dnnl::memory::desc cd({rows, cols}, dt::f32, {cols, 1});
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(ad, bd, cd), cpuEngine());
      it = cache_.emplace(key, Entry{ad, bd, cd, dnnl::matmul(pd)}).first;
    }
    Entry& e = it->second;
    dnnl::memory am(e.a, cpuEngine(), const_cast<uint16_t*>(a));
    dnnl::memory bm(e.b, cpuEngine(), const_cast<uint16_t*>(b));
    dnnl::memory cm(e.c, cpuEngine(), c);
    e.prim.execute(stream_, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    stream_.wait();
  }

 private:
  struct Entry {
    dnnl::memory::desc a, b, c;
    dnnl::matmul prim;
  };
  int64_t d_;
  dnnl::stream stream_;
  std::map<std::pair<int64_t, int64_t>, Entry> cache_;
};

// Re-scores the candidates of one query exactly and writes its k nearest.
void finish(const std::vector<const Screen*>& parts, const QueryBound& b, size_t k, const float* query,
            const float* database, int64_t d, Metric metric, float* dist, int32_t* idx) {
  // The global k-th smallest key decides which candidates of every range still qualify.
  Screen all;
  for (const Screen* p : parts)
    for (float key : p->heap) {
      if (all.heap.size() < k) {
        all.heap.push_back(key);
        std::push_heap(all.heap.begin(), all.heap.end());
      } else if (key < all.heap.front()) {
        std::pop_heap(all.heap.begin(), all.heap.end());
        all.heap.back() = key;
        std::push_heap(all.heap.begin(), all.heap.end());
      }
    }
  all.retune(b, k);
  std::vector<std::pair<float, int32_t>> scored;
  for (const Screen* p : parts)
    for (const auto& [key, id] : p->cand)
      if (key <= all.threshold) scored.emplace_back(exactL2sq(query, database + static_cast<int64_t>(id) * d, d), id);
  auto less = [](const auto& x, const auto& y) { return x.first < y.first || (x.first == y.first && x.second < y.second); };
  if (scored.size() > k) std::nth_element(scored.begin(), scored.begin() + static_cast<int64_t>(k), scored.end(), less);
  std::sort(scored.begin(), scored.begin() + static_cast<int64_t>(k), less);
  for (size_t j = 0; j < k; ++j) {
    dist[j] = metric == Metric::L2 ? std::sqrt(scored[j].first) : scored[j].first;
    idx[j] = scored[j].second;
  }
}

}  // namespace

void ScreenedDatabase::append(const float* x, int64_t count, int64_t dim) {
  if (count <= 0) return;
  if (n == 0) {
    d = dim;
    std::vector<double> sum(static_cast<size_t>(d), 0.0);
#pragma omp parallel
    {
      std::vector<double> local(static_cast<size_t>(d), 0.0);
#pragma omp for schedule(static)
      for (int64_t i = 0; i < count; ++i)
        for (int64_t t = 0; t < d; ++t) local[t] += x[i * d + t];
#pragma omp critical(anomalens_screen_mean)
      for (int64_t t = 0; t < d; ++t) sum[t] += local[t];
    }
    mean.resize(static_cast<size_t>(d));
    for (int64_t t = 0; t < d; ++t) mean[t] = static_cast<float>(sum[t] / static_cast<double>(count));
  }
  rows.resize(static_cast<size_t>((n + count) * d));
  norms.resize(static_cast<size_t>(n + count));
  double maxN2 = maxNorm * maxNorm, maxE2 = maxError * maxError, maxC2 = maxCentred * maxCentred;
#pragma omp parallel for schedule(static) reduction(max : maxN2, maxE2, maxC2)
  for (int64_t i = 0; i < count; ++i) {
    RowStats s = convertRow(x + i * d, mean.data(), d, rows.data() + (n + i) * d);
    norms[n + i] = static_cast<float>(s.norm2);
    maxN2 = std::max(maxN2, s.norm2);
    maxE2 = std::max(maxE2, s.error2);
    maxC2 = std::max(maxC2, s.centred2);
  }
  maxNorm = std::sqrt(maxN2);
  maxError = std::sqrt(maxE2);
  maxCentred = std::sqrt(maxC2);
  n += count;
}

bool screeningSupported() {
  static const bool ok = [] {
    try {
      const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
      const auto bf16 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
      if ((isa & bf16) != bf16) return false;
      // And oneDNN must pick a native bf16 kernel, not its reference loops.
      using dt = dnnl::memory::data_type;
      dnnl::memory::desc a({64, 64}, dt::bf16, {64, 1}), b({64, 64}, dt::bf16, {1, 64}), c({64, 64}, dt::f32, {64, 1});
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), cpuEngine());
      const std::string impl = pd.impl_info_str();
      return impl.find("ref") == std::string::npos && __builtin_cpu_supports("avx512f");
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return ok;
}

bool screeningWorthIt(int64_t n, int64_t m, int64_t d, int64_t k, Metric metric, bool prepared) {
  if (metric != Metric::L2Squared && metric != Metric::L2) return false;
  if (d < 16 || n < 2048 || !screeningSupported()) return false;
  const double work = static_cast<double>(n) * static_cast<double>(m) * static_cast<double>(d);
  // Unprepared, the database is converted per call: worth it once the queries amortise it.
  return prepared ? work >= 1 << 24 : (m >= 64 && work >= 1 << 26);
}

std::vector<int64_t> screenedSearch(const ScreenedDatabase& db, const float* database, const float* queries,
                                    int64_t m, int64_t k, Metric metric, float* distances, int32_t* indices) {
  const int64_t n = db.n, d = db.d;
  require(db.n > 0 && k >= 1 && k <= n, "screenedSearch: bad sizes");
  if (m == 0) return {};
  // Queries: centre, round, and the constants of the bound.
  std::vector<uint16_t> qrows(static_cast<size_t>(m * d));
  std::vector<QueryBound> bounds(static_cast<size_t>(m));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; ++i) {
    RowStats s = convertRow(queries + i * d, db.mean.data(), d, qrows.data() + i * d);
    const double qn = std::sqrt(s.norm2);
    // Centring rounds each coordinate once (relative 2^-24): allow 2^-22 of both centred norms.
    const double e = (1 + 1e-6) * (std::sqrt(s.error2) + db.maxError) + 0x1.0p-22 * (std::sqrt(s.centred2) + db.maxCentred);
    const double span = qn + db.maxNorm;
    bounds[i] = QueryBound{s.norm2, (2.0 * static_cast<double>(d) + 160.0) * kUnit * span * span + 1e-30, 2 * e};
  }

  const int threads = std::max(1, omp_get_max_threads());
  int64_t qblock, ranges;
  if (m >= threads * kMinQueriesPerThread || threads == 1) {
    int64_t blocks = (m + kQueryBlock - 1) / kQueryBlock;
    blocks = (blocks + threads - 1) / threads * threads;
    qblock = (m + blocks - 1) / blocks;
    ranges = 1;
  } else {
    qblock = std::min<int64_t>(m, kQueryBlock);
    ranges = std::max<int64_t>(1, std::min<int64_t>(threads, (n + kDbTile - 1) / kDbTile));
  }
  const int64_t qblocks = (m + qblock - 1) / qblock;
  const size_t kk = static_cast<size_t>(k);
  const size_t cap = 2 * kk + 2048;
  std::vector<Screen> screens(static_cast<size_t>(ranges * m));
  std::vector<float> blocks(static_cast<size_t>(threads * qblock * kDbTile));
  std::string failure;

  // Exceptions must not cross the OpenMP region (nor skip its barriers): each item catches.
  auto fail = [&failure](const std::exception& e) {
#pragma omp critical(anomalens_screen_failure)
    failure = e.what();
  };
#pragma omp parallel
  {
    std::optional<MatmulCache> matmul;
    float* block = blocks.data() + static_cast<int64_t>(omp_get_thread_num()) * qblock * kDbTile;
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < qblocks * ranges; ++item) {
      try {
        if (!matmul) matmul.emplace(d);
        const int64_t b = item / ranges, r = item % ranges;
        const int64_t i0 = b * qblock, i1 = std::min(m, i0 + qblock);
        const int64_t j0 = n * r / ranges, j1 = n * (r + 1) / ranges;
        for (int64_t t0 = j0; t0 < j1; t0 += kDbTile) {
          const int64_t cols = std::min(kDbTile, j1 - t0);
          matmul->run(qrows.data() + i0 * d, i1 - i0, db.rows.data() + t0 * d, cols, block);
          for (int64_t i = i0; i < i1; ++i)
            scanScreened(block + (i - i0) * cols, db.norms.data() + t0, cols, static_cast<int32_t>(t0),
                         screens[r * m + i], bounds[i], kk, cap);
        }
        if (ranges == 1) {  // finish this block now, so candidate lists never pile up
          for (int64_t i = i0; i < i1; ++i) {
            Screen& s = screens[i];
            if (!s.overflow) finish({&s}, bounds[i], kk, queries + i * d, database, d, metric, distances + i * k, indices + i * k);
            std::vector<std::pair<float, int32_t>>().swap(s.cand);
          }
        }
      } catch (const std::exception& e) {
        fail(e);
      }
    }
    if (ranges > 1) {
#pragma omp for schedule(static)
      for (int64_t i = 0; i < m; ++i) {
        try {
          std::vector<const Screen*> parts;
          bool overflow = false;
          for (int64_t r = 0; r < ranges; ++r) {
            parts.push_back(&screens[r * m + i]);
            overflow = overflow || screens[r * m + i].overflow;
          }
          if (!overflow) finish(parts, bounds[i], kk, queries + i * d, database, d, metric, distances + i * k, indices + i * k);
        } catch (const std::exception& e) {
          fail(e);
        }
      }
    }
  }
  if (!failure.empty()) throw Error(ErrorCode::Internal, "bf16 screening failed: " + failure);

  std::vector<int64_t> fallback;
  for (int64_t i = 0; i < m; ++i) {
    bool overflow = false;
    for (int64_t r = 0; r < ranges; ++r) overflow = overflow || screens[r * m + i].overflow;
    if (overflow) fallback.push_back(i);
  }
  return fallback;
}

void searchExact(const float* database, int64_t n, const float* queries, int64_t m, int64_t d, int64_t k,
                 Metric metric, const float* databaseNorms, const ScreenedDatabase* screened, KnnScreening screening,
                 float* distances, int32_t* indices) {
  if (m == 0) return;
  const bool l2 = metric == Metric::L2Squared || metric == Metric::L2;
  const bool use = screening == KnnScreening::Force ? l2 && screeningSupported()
                   : screening == KnnScreening::Auto ? screeningWorthIt(n, m, d, k, metric, screened != nullptr)
                                                     : false;
  if (!use) {
    searchFloat32(database, n, queries, m, d, k, metric, databaseNorms, distances, indices);
    return;
  }
  ScreenedDatabase own;
  if (!screened) {
    own.append(database, n, d);
    screened = &own;
  }
  const std::vector<int64_t> rest = screenedSearch(*screened, database, queries, m, k, metric, distances, indices);
  if (rest.empty()) return;
  // The queries bf16 could not separate: gather, search in float32, scatter.
  const int64_t f = static_cast<int64_t>(rest.size());
  std::vector<float> q(static_cast<size_t>(f * d)), dist(static_cast<size_t>(f * k));
  std::vector<int32_t> idx(static_cast<size_t>(f * k));
  for (int64_t r = 0; r < f; ++r) std::copy(queries + rest[r] * d, queries + (rest[r] + 1) * d, q.data() + r * d);
  searchFloat32(database, n, q.data(), f, d, k, metric, databaseNorms, dist.data(), idx.data());
  for (int64_t r = 0; r < f; ++r) {
    std::copy(dist.data() + r * k, dist.data() + (r + 1) * k, distances + rest[r] * k);
    std::copy(idx.data() + r * k, idx.data() + (r + 1) * k, indices + rest[r] * k);
  }
}

}  // namespace anomalens::knn_detail

namespace anomalens {
bool knnScreeningSupported() { return knn_detail::screeningSupported(); }
}  // namespace anomalens
