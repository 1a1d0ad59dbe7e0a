// One OpenMP thread pool (libgomp) is shared by oneDNN, OpenBLAS (OpenMP build) and our own
// loops. OpenMP's thread count is a per-thread setting, and native work runs on libuv worker
// threads, so every compute entry point calls applyThreads() on the thread that computes.
#pragma once

namespace anomalens {

// Sets the number of threads for all later native work (n >= 1). Thread-safe.
void setNumThreads(int n);

// The configured thread count (default: the number of cores OpenMP sees).
int numThreads();

// Applies the configured count to the calling thread's OpenMP and OpenBLAS settings.
// Cheap; call at the start of every compute entry point.
void applyThreads();

}  // namespace anomalens
