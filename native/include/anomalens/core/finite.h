// Finiteness of float32 inputs. Kernels do not check for NaN or infinity themselves (a NaN
// would make them slower for everyone); the bindings scan inputs with firstNonFinite on the
// worker thread and reject with a RangeError naming the element.
#pragma once
#include <cstdint>

namespace anomalens {

// Index of the first element of data[0, count) that is NaN or infinite, or -1.
// Multithreaded (OpenMP); one branch-free pass over the exponent bits, then a rescan of the
// rare 64 Ki-element chunk that holds a non-finite value.
// Example: if (firstNonFinite(x, n * d) >= 0) ... reject
int64_t firstNonFinite(const float* data, int64_t count);

}  // namespace anomalens
