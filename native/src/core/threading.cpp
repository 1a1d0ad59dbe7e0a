#include "anomalens/core/threading.h"

#include <omp.h>

#include <atomic>

#include "anomalens/core/error.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace anomalens {
namespace {
std::atomic<int> g_threads{0};
}

void setNumThreads(int n) {
  require(n >= 1 && n <= 4096, "setNumThreads: n must be an integer in [1, 4096], received " +
                                   std::to_string(n));
  g_threads.store(n);
  applyThreads();
}

int numThreads() {
  int n = g_threads.load();
  return n > 0 ? n : omp_get_num_procs();
}

void applyThreads() {
  int n = numThreads();
  if (omp_get_max_threads() != n) omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

}  // namespace anomalens
