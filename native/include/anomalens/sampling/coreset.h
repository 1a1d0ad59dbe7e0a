// Greedy coreset subsampling: PatchCore's ApproximateGreedyCoresetSampler
// (github.com/amazon-science/patchcore-inspection, src/patchcore/sampler.py):
//   1. project the features to `projectionDim` dimensions with a random linear map
//      (the original: torch.nn.Linear(d, 128, bias=False), i.e. U(-1/sqrt(d), 1/sqrt(d))
//      weights; skipped when d == projectionDim);
//   2. pick `startPoints` random rows; every row's initial distance is the MEAN of its
//      Euclidean distances to them (these rows are not selected by this step);
//   3. repeat `count` times: select the row with the largest distance (lowest index on ties),
//      then lower every row's distance to min(distance, distance to the selected row).
// Memory is O(n * projectionDim) (the projected rows plus one distance per row, never an
// n x n matrix); every pass is multithreaded; results depend only on the inputs and the
// seed (not on the thread count).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>

namespace anomalens {

enum class CoresetProjection {
  Uniform,   // U(-1/sqrt(d), 1/sqrt(d)): torch.nn.Linear's default init, as the original
  Gaussian,  // N(0, 1/projectionDim): a Johnson-Lindenstrauss projection
};

enum class CoresetPrecision {
  Float32,  // projected rows kept in float32, as the original
  Float16,  // kept in float16 (scaled by a power of two): half the memory traffic per step,
            // relative error ~5e-4 on each coordinate, far below the projection's own distortion
};

struct CoresetOptions {
  int64_t count = 1;  // rows to select, 1..n
  uint64_t seed = 0;
  int64_t projectionDim = 128;  // 0: no projection; d: no projection (as the original)
  CoresetProjection projection = CoresetProjection::Uniform;
  CoresetPrecision precision = CoresetPrecision::Float16;
  int64_t startPoints = 10;  // clipped to n
  // Called on the computing thread with (selected so far, count), every few selections and
  // at the end. Must be cheap and must not throw.
  std::function<void(int64_t, int64_t)> progress;
  // When set and becoming non-zero, the selection stops early; coresetSubsample then returns
  // the number of rows selected so far.
  const std::atomic<int32_t>* cancel = nullptr;
};

// Selects options.count rows of features (n x d, row-major).
//   indices: options.count entries, in selection order (caller-allocated)
// Returns the number of rows selected (options.count unless cancelled). count == n returns
// 0 .. n-1 without running the selection, as the original does for percentage 1.
// Example: std::vector<int32_t> idx(n / 10);
//          coresetSubsample(x, n, d, {n / 10, 42}, idx.data());
int64_t coresetSubsample(const float* features, int64_t n, int64_t d, const CoresetOptions& options,
                         int32_t* indices);

// The random starting rows for n rows and these options' seed: min(startPoints, n) distinct
// rows in draw order, written to out.
void coresetStartRows(int64_t n, const CoresetOptions& options, int32_t* out);

// The projection matrix (d x projectionDim, row-major; projected = features x matrix) drawn
// for these options' seed and kind. Requires 0 < projectionDim != d.
void coresetProjectionMatrix(int64_t d, const CoresetOptions& options, float* out);

// The number of dimensions the greedy loop works in: projectionDim, or d without projection.
int64_t coresetWorkingDim(int64_t d, const CoresetOptions& options);

// The rows exactly as the greedy loop sees them (n x coresetWorkingDim, row-major): projected
// in float32 and, for Float16, rounded to float16 and scaled back. For tests: a reference
// implementation fed with these reproduces the selection.
void coresetProjectedFeatures(const float* features, int64_t n, int64_t d, const CoresetOptions& options, float* out);

}  // namespace anomalens
