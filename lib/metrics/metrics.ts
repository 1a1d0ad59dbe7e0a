/**
 * Evaluation metrics for anomaly detection, computed exactly in the native core.
 *
 * - Image level: `imageAuroc(scores, labels)`, plus `averagePrecision`, `f1Max`, `rocCurve`,
 *   `prCurve`, which take either image scores + labels or maps + masks.
 * - Pixel level: `pixelAuroc(maps, masks)`, `aupro(maps, masks, { fprLimit })`, `proCurve`.
 * - Whole test sets: `Evaluator` (`update(batch)` then `compute()`), image and pixel level together.
 *
 * Every distinct score is a threshold (no binning), equal scores make one step (so ties count
 * one half in the AUROC, as in sklearn), -0 and +0 are the same score, and all ratios are
 * formed in float64 from exact integer counts: results agree with float64 references
 * (sklearn, MVTec AD's evaluation code run in float64) to 1e-12 or better (the AUROC is
 * exact; sums over millions of thresholds differ from numpy's in the last digits).
 *
 * Memory: maps and masks are read in place (no copy, no per-pixel objects). Beyond the inputs
 * the native core allocates one 16-bit sort key per pixel whose score range holds both classes
 * (2 bytes per pixel at most; AUPRO adds 4 bytes per defect pixel), about 12 MB of histograms
 * per thread and, for AUPRO, 4 bytes per pixel of the largest image per thread. So 10^8 pixels
 * (400 MB of maps + 100 MB of masks) need at most ~200 MB more (measured: 115 MB on noise
 * maps). Inputs below 65536 elements and float64 scores use a plain sort instead (16 bytes
 * per element).
 *
 * Bad input rejects: wrong types with TypeError and mismatched lengths/shapes or bad options
 * with RangeError (both before any work); NaN or infinite scores, labels that are not binary,
 * a metric that is undefined for the data (one class only, no defect region) with an
 * AnomalensError of code ERR_INVALID_ARGUMENT naming the element or the problem.
 */
import {
  anyBlocks,
  Flag,
  mapBlocks,
  readCurveOptions,
  readFprLimit,
  readLabelOptions,
  runCurve,
  runMetrics,
  scoreBlocks,
  type F1Max,
  type LabelOptions,
  type Labels,
  type Maps,
  type Masks,
  type Scores,
} from './input.js';

export type { F1Max, LabelOptions, Labels, Maps, MaskMap, Masks, ScoreMap, Scores } from './input.js';
export { Evaluator } from './evaluator.js';
export type { Evaluation, EvaluatorBatch, EvaluatorOptions, ImageMetrics, PixelMetrics } from './evaluator.js';

export interface AuproOptions extends LabelOptions {
  /** Integration limit of the false positive rate, in (0, 1]. Default 0.3. */
  fprLimit?: number;
}

export interface CurveOptions extends LabelOptions {
  /**
   * Keep a point only when x or y moved by at least this much since the last kept point
   * (the first and last points are always kept). Default 0: every distinct threshold.
   * Pixel-level curves have up to one point per pixel; 1e-4 keeps a plot exact to the eye.
   */
  decimate?: number;
}

/** ROC curve as sklearn.metrics.roc_curve: starts at (0, 0) with threshold +Infinity. */
export interface RocCurve {
  fpr: Float64Array;
  tpr: Float64Array;
  thresholds: Float64Array;
}

/**
 * Precision-recall curve as sklearn.metrics.precision_recall_curve: thresholds ascending,
 * ending with (recall 0, precision 1). sklearn returns one threshold fewer than points; here
 * the arrays have equal length and the last threshold is +Infinity.
 */
export interface PrCurve {
  precision: Float64Array;
  recall: Float64Array;
  thresholds: Float64Array;
}

/**
 * PRO curve as MVTec AD's compute_pro: (0, 0) at threshold +Infinity, one point per distinct
 * score descending, then (1, 1) at -Infinity. `aupro` integrates it.
 */
export interface ProCurve {
  fpr: Float64Array;
  pro: Float64Array;
  thresholds: Float64Array;
}

/**
 * Image-level AUROC: exact and tie-aware, equal to sklearn.metrics.roc_auc_score
 * (the Mann-Whitney U statistic / (positives * negatives), ties counting one half).
 * Rejects when only one class is present.
 * @example await imageAuroc(new Float32Array([0.1, 0.9, 0.4]), [0, 1, 1]) // 1
 */
export async function imageAuroc(scores: Scores, labels: Labels, options?: LabelOptions): Promise<number> {
  const o = readLabelOptions(options);
  return (await runMetrics(scoreBlocks(scores, labels), Flag.Auroc, o)).auroc as number;
}

/**
 * Pixel-level AUROC over all pixels of all maps, exact as sklearn's roc_auc_score on the
 * flattened arrays; 10^8 pixels take ~2 bytes per pixel of extra memory (see the module doc).
 * @example await pixelAuroc(maps, masks) // maps: Float32Array[] (or { data, shape }), masks: Uint8Array[]
 */
export async function pixelAuroc(maps: Maps, masks: Masks, options?: LabelOptions): Promise<number> {
  const o = readLabelOptions(options);
  return (await runMetrics(mapBlocks(maps, masks, false), Flag.Auroc, o)).auroc as number;
}

/**
 * AUPRO exactly as MVTec AD's official evaluation defines it: the regions are the
 * 8-connected components of each image's mask; for a threshold t, FPR(t) is the fraction of
 * all defect-free pixels (of all images) scored >= t and PRO(t) the mean over all regions
 * (of all images) of the fraction of the region's pixels scored >= t; the curve (0, 0),
 * (FPR(t), PRO(t)) for every distinct score t descending, (1, 1) is integrated with the
 * trapezoid rule up to FPR = fprLimit, the last segment interpolated linearly at fprLimit,
 * and the area divided by fprLimit. Computed in float64 (the MVTec code rounds FPRs to
 * float32, so it differs from this in the ~7th digit).
 *
 * Other code reports different quantities under the same name:
 * - anomalib (up to 2.2, `anomalib.metrics.AUPRO`) computes one ROC curve per region (binned
 *   when num_thresholds is set), resamples each by threshold index onto a common grid, averages
 *   the resampled FPRs and TPRs, and divides the area by the last averaged FPR instead of
 *   fprLimit: the average of per-region curves on an index grid is not the PRO curve, and all
 *   of it is float32.
 * - The RD4AD code (`compute_pro` in hq-deng/RD4AD test.py) uses 200 equally spaced
 *   thresholds between the min and max score, keeps the points with FPR < 0.3 without
 *   interpolating to 0.3, rescales the FPR axis by its largest kept value, and computes the
 *   AUPRO per anomalous image (FPR over that image's pixels only) and then averages images.
 * Their numbers are not comparable with this one (nor with each other).
 *
 * Needs each map's height and width (a `{ data, shape }` map or mask). Rejects when the
 * masks hold no defect region or no defect-free pixel.
 * @example await aupro(maps, masks, { fprLimit: 0.3 })
 */
export async function aupro(maps: Maps, masks: Masks, options?: AuproOptions): Promise<number> {
  const o = readLabelOptions(options);
  const fprLimit = readFprLimit(o.fprLimit, 'options.fprLimit');
  return (await runMetrics(mapBlocks(maps, masks, true), Flag.Aupro, { ...o, fprLimit })).aupro as number;
}

/**
 * The maximum F1 over all thresholds and the largest threshold reaching it (image scores +
 * labels, or maps + masks for pixel level). F1 = 2 TP / (2 TP + FP + FN), compared exactly.
 * @example const { f1, threshold } = await f1Max(scores, labels)
 */
export async function f1Max(scores: Scores | Maps, labels: Labels | Masks, options?: LabelOptions): Promise<F1Max> {
  const o = readLabelOptions(options);
  const r = await runMetrics(anyBlocks(scores, labels), Flag.F1Max, o);
  return { f1: r.f1 as number, threshold: r.f1Threshold as number };
}

/**
 * Average precision as sklearn.metrics.average_precision_score: the sum over distinct
 * thresholds (descending) of (recall gain) * precision, no interpolation.
 * @example await averagePrecision(scores, labels)
 */
export async function averagePrecision(scores: Scores | Maps, labels: Labels | Masks, options?: LabelOptions): Promise<number> {
  const o = readLabelOptions(options);
  return (await runMetrics(anyBlocks(scores, labels), Flag.AveragePrecision, o)).averagePrecision as number;
}

/**
 * ROC curve as sklearn.metrics.roc_curve (drop_intermediate = true by default: the same
 * points are dropped), for plotting. The first threshold is +Infinity (sklearn >= 1.3; older
 * versions print max + 1).
 * @example const { fpr, tpr } = await rocCurve(scores, labels)
 */
export async function rocCurve(
  scores: Scores | Maps,
  labels: Labels | Masks,
  options?: CurveOptions & { dropIntermediate?: boolean },
): Promise<RocCurve> {
  const o = readCurveOptions(options);
  const c = await runCurve(anyBlocks(scores, labels), 'roc', o);
  return { fpr: c.x, tpr: c.y, thresholds: c.thresholds };
}

/**
 * Precision-recall curve as sklearn.metrics.precision_recall_curve, for plotting.
 * @example const { precision, recall } = await prCurve(scores, labels)
 */
export async function prCurve(scores: Scores | Maps, labels: Labels | Masks, options?: CurveOptions): Promise<PrCurve> {
  const o = readCurveOptions(options);
  const c = await runCurve(anyBlocks(scores, labels), 'pr', o);
  return { precision: c.y, recall: c.x, thresholds: c.thresholds };
}

/**
 * The PRO curve that `aupro` integrates (MVTec AD definition), for plotting; truncate it at
 * your fprLimit when drawing. Use `decimate` for large sets.
 * @example const { fpr, pro } = await proCurve(maps, masks, { decimate: 1e-4 })
 */
export async function proCurve(maps: Maps, masks: Masks, options?: CurveOptions): Promise<ProCurve> {
  const o = readCurveOptions(options);
  const c = await runCurve(mapBlocks(maps, masks, true), 'pro', o);
  return { fpr: c.x, pro: c.y, thresholds: c.thresholds };
}
