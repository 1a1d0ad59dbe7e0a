/**
 * Test hooks: what the tests reach beyond the public API (lib/index.ts), so that they can
 * check internals against slow twins and references. Not part of the API: the package's
 * "exports" map does not expose this file, and any of it may change without notice.
 */
// core: the raw addon, for tests of what the bindings re-check themselves
export { native, loadedFrom } from './core/native.js';
// core: temporary names of atomic writes and their sweep (the crash-safety tests)
export { forgetSweeps, sweepStaleTemps, tempOwner, tempPath, writeFileAtomic } from './core/atomic.js';
// core: the seeded generator of the shuffles and splits, for seeded test inputs
export { mulberry32 } from './core/random.js';
// io: the hf: spec steps of resolveWeights
export { parseHfSpec, hfUrl, hfCachePath, defaultCacheDir } from './io/weights.js';
export type { HfSpec } from './io/weights.js';
// image: torchvision's geometry, and the header sniffing that picks Pillow's mode
export { resizedSize, outputSize, centerCropOffset } from './image/images.js';
export { sniffPixelFormat } from './image/header.js';
// data: the mask steps of batches()
export { binariseMask, resizeMaskNearest } from './data/datasets.js';
// sampling: the coreset's projection and starting rows, so a reference can replay the selection
export { coresetProjectedFeatures, coresetProjectionMatrix, coresetStartIndices } from './sampling/coreset.js';
// maps: the blur's kernel radius
export { gaussianRadius } from './maps/maps.js';
// metrics: the blocks and native passes behind every metric
export { anyBlocks, Flag, mapBlocks, runCurve, runMetrics, scoreBlocks } from './metrics/input.js';
// methods: the PatchCore and PaDiM kernels; Reverse Distillation's student loader
export { patchcoreEmbed, padimEmbed, padimFit, padimScore } from './methods/kernels.js';
export { loadStudent } from './methods/reverse-distillation.js';
// detector: the steps of applyThresholds and of the thresholds setter
export { minMaxNormalize, parseThresholds } from './detector/thresholds.js';
// report: the overlay's colour table and contour, the CSV quoting
export { JET_LUT, maskContour } from './report/overlay.js';
export { csvField } from './report/csv.js';
// report: the page builder and its SVG pieces, the curve cut at the FPR limit
export { buildReportPage } from './report/page.js';
export { downsampleCurve, escapeHtml, histogram, lineChart } from './report/svg.js';
export { restoreHalfSwapped, truncateCurve } from './report/write.js';
// serve: the RGB conversion of uploads, the root-confinement check
export { toRgb } from './serve/decode.js';
export { outsideRoot } from './serve/paths.js';
// cli: the entry point, without a child process
export { main } from './cli/cli.js';
