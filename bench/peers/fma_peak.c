// Measured fp32 FMA peak of one core, for the GFLOP/s shares of bench/backbone.bench.mjs:
// independent chains of 512-bit (or 256-bit) FMAs, best of several short trials, so that a
// trial that the scheduler did not interrupt shows the clock the core really runs at (a VM's
// /proc/cpuinfo reports the base clock, not the boost clock).
//   cc -O2 -march=native -o bench/.peers/fma-peak bench/peers/fma_peak.c && bench/.peers/fma-peak
// Prints one JSON line: {"gflops": best single-core GFLOP/s, "lanes": fp32 lanes per FMA}.
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#ifdef __AVX512F__
typedef __m512 vec;
#define LANES 16
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SET1(x) _mm512_set1_ps(x)
#define SUM(v) _mm512_reduce_add_ps(v)
#else
typedef __m256 vec;
#define LANES 8
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define SET1(x) _mm256_set1_ps(x)
static float SUM(__m256 v) {
  float t[8];
  _mm256_storeu_ps(t, v);
  return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#endif

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(void) {
  enum { CHAINS = 12 };
  vec acc[CHAINS];
  for (int i = 0; i < CHAINS; i++) acc[i] = SET1(0.f);
  const vec a = SET1(1.0000001f), b = SET1(0.9999999f);
  const long iters = 500000;  // ~2 ms a trial: short enough for some to run unpreempted on a busy machine
  double best = 0;
  for (int trial = 0; trial < 200; trial++) {
    double t0 = now();
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
      for (int i = 0; i < CHAINS; i++) acc[i] = FMA(acc[i], a, b);
    }
    double g = (double)iters * CHAINS * LANES * 2 / (now() - t0) * 1e-9;
    if (g > best) best = g;
  }
  float sink = 0;
  for (int i = 0; i < CHAINS; i++) sink += SUM(acc[i]);
  printf("{\"gflops\": %.2f, \"lanes\": %d, \"sink\": %g}\n", best, LANES, sink);
  return 0;
}
