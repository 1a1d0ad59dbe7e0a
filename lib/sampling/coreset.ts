/**
 * Greedy coreset subsampling, PatchCore's approximate greedy k-center
 * (ApproximateGreedyCoresetSampler in amazon-science/patchcore-inspection).
 */
import type { NativeCoresetOptions } from '../core/addon.js';
import { callNative, callNativeSync } from '../core/errors.js';
import { native } from '../core/native.js';
import { describe, expectInteger, expectNumber, expectObject, expectOneOf } from '../core/validate.js';
import { expectRows, type Matrix } from '../knn/rows.js';

export interface CoresetProjectionOptions {
  /** Seed of the projection and of the starting rows (an integer in [0, 2^53)); default 0. */
  seed?: number;
  /** Dimensions of the random projection; default 128 as the original. 0 (or the feature
   * dimension itself, as the original) means no projection. */
  projectionDim?: number;
  /** 'uniform' (default): U(-1/sqrt(d), 1/sqrt(d)) weights, torch.nn.Linear's default init
   * as in the original; 'gaussian': N(0, 1/projectionDim), a Johnson-Lindenstrauss map. */
  projection?: 'uniform' | 'gaussian';
  /** 'float16' (default): projected rows stored in half precision (scaled by a power of two),
   * half the memory traffic per step, ~5e-4 relative error per coordinate; 'float32': as the
   * original. */
  precision?: 'float16' | 'float32';
}

export interface CoresetOptions extends CoresetProjectionOptions {
  /** Row length d when features is a plain Float32Array. */
  dim?: number;
  /** Fraction of rows to keep, in (0, 1]: floor(n * ratio) rows, as the original's
   * percentage. Give either ratio or count. */
  ratio?: number;
  /** Number of rows to keep, 1..n. */
  count?: number;
  /** Random starting rows whose mean distance initialises each row's distance; default 10. */
  startPoints?: number;
  /** Called with (selected, total) at most every 100 ms and once at the end. */
  onProgress?: (selected: number, total: number) => void;
  /** Aborts the selection; the promise then rejects with `signal.reason`. */
  signal?: AbortSignal;
}

function projectionOptions(o: Record<string, unknown>): Omit<NativeCoresetOptions, 'count' | 'startPoints'> {
  return {
    seed: o.seed === undefined ? 0 : expectInteger(o.seed, 'options.seed', { min: 0, max: Number.MAX_SAFE_INTEGER }),
    projectionDim: o.projectionDim === undefined ? 128 : expectInteger(o.projectionDim, 'options.projectionDim', { min: 0, max: 65536 }),
    projection: o.projection === undefined ? 'uniform' : expectOneOf(o.projection, 'options.projection', ['uniform', 'gaussian'] as const),
    precision: o.precision === undefined ? 'float16' : expectOneOf(o.precision, 'options.precision', ['float16', 'float32'] as const),
  };
}

/**
 * Selects a coreset of the rows of `features` (n x d) by PatchCore's approximate greedy
 * k-center: random projection to 128 dimensions, 10 random starting rows, then repeated
 * farthest-row selection. Multithreaded, O(n) memory, reproducible for a given seed.
 * Resolves to the selected rows in selection order. `count` = n (ratio 1) returns every row
 * in order, as the original does.
 * @example
 * const keep = await coresetSubsample(patches, { dim: 1536, ratio: 0.1, onProgress: (i, n) => bar.update(i / n) })
 */
export async function coresetSubsample(features: Float32Array | Matrix, options: CoresetOptions): Promise<Int32Array> {
  const o = expectObject(options, 'options');
  const rows = expectRows(features, 'features', o.dim as number | undefined);
  if (rows.rows === 0) throw new RangeError('features must have at least one row, received 0');
  if ((o.ratio === undefined) === (o.count === undefined))
    throw new TypeError(`options must give exactly one of ratio and count, received ratio ${describe(o.ratio)} and count ${describe(o.count)}`);
  let count: number;
  if (o.ratio !== undefined) {
    const ratio = expectNumber(o.ratio, 'options.ratio', { max: 1 });
    if (!(ratio > 0)) throw new RangeError(`options.ratio must be > 0, received ${ratio}`);
    count = Math.floor(rows.rows * ratio);
    if (count < 1) throw new RangeError(`options.ratio = ${ratio} keeps floor(${rows.rows} x ${ratio}) = 0 rows; keep at least one`);
  } else {
    count = expectInteger(o.count, 'options.count', { min: 1, max: rows.rows });
  }
  const startPoints = o.startPoints === undefined ? 10 : expectInteger(o.startPoints, 'options.startPoints', { min: 1, max: 65536 });
  const onProgress = o.onProgress as CoresetOptions['onProgress'];
  if (onProgress !== undefined && typeof onProgress !== 'function')
    throw new TypeError(`options.onProgress must be a function, received ${describe(onProgress)}`);
  const signal = o.signal as AbortSignal | undefined;
  if (signal !== undefined && !(signal instanceof AbortSignal))
    throw new TypeError(`options.signal must be an AbortSignal, received ${describe(signal)}`);
  signal?.throwIfAborted();

  const nativeOptions: NativeCoresetOptions = { count, startPoints, ...projectionOptions(o) };
  const cancel = new Int32Array(1);
  const onAbort = () => {
    cancel[0] = 1;
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const indices = await callNative(
      () => native().coresetSubsample(rows.data, rows.rows, rows.dim, nativeOptions, onProgress, cancel),
    );
    if (indices.length < count) signal?.throwIfAborted();
    return indices;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * The rows exactly as coresetSubsample's greedy loop sees them (n x projectionDim, or n x d
 * without projection): projected in float32, then rounded to float16 unless precision is
 * 'float32'. A reference implementation fed with these reproduces the selection.
 */
export async function coresetProjectedFeatures(
  features: Float32Array | Matrix,
  options: CoresetProjectionOptions & { dim?: number } = {},
): Promise<Float32Array> {
  const o = expectObject(options, 'options');
  const rows = expectRows(features, 'features', o.dim as number | undefined);
  if (rows.rows === 0) throw new RangeError('features must have at least one row, received 0');
  const nativeOptions: NativeCoresetOptions = { count: 1, startPoints: 10, ...projectionOptions(o) };
  return callNative(() => native().coresetProjectedFeatures(rows.data, rows.rows, rows.dim, nativeOptions));
}

/**
 * The random projection matrix coresetSubsample uses for `dim`-dimensional features
 * (dim x projectionDim, row-major: projected = features x matrix).
 */
export function coresetProjectionMatrix(dim: number, options: CoresetProjectionOptions = {}): Float32Array {
  expectInteger(dim, 'dim', { min: 1 });
  const o = expectObject(options, 'options');
  const nativeOptions: NativeCoresetOptions = { count: 1, startPoints: 10, ...projectionOptions(o) };
  if (nativeOptions.projectionDim === 0 || nativeOptions.projectionDim === dim)
    throw new RangeError(`options.projectionDim = ${nativeOptions.projectionDim} means no projection for dim = ${dim}`);
  return callNativeSync(() => native().coresetProjectionMatrix(dim, nativeOptions));
}

/**
 * The random starting rows coresetSubsample draws for n rows: min(startPoints, n) distinct
 * rows, whose mean distance initialises every row's distance.
 */
export function coresetStartIndices(n: number, options: { seed?: number; startPoints?: number } = {}): Int32Array {
  expectInteger(n, 'n', { min: 1, max: 2 ** 31 - 1 });
  const o = expectObject(options, 'options');
  const startPoints = o.startPoints === undefined ? 10 : expectInteger(o.startPoints, 'options.startPoints', { min: 1, max: 65536 });
  const nativeOptions: NativeCoresetOptions = { count: 1, startPoints, ...projectionOptions({ seed: o.seed }) };
  return callNativeSync(() => native().coresetStartRows(n, nativeOptions));
}
