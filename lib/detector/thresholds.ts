/**
 * Thresholds: turning image scores and anomaly maps into labels and masks.
 *
 * - **F1-adaptive** (the default): on a validation split, the image threshold is the one
 *   maximising the F1 of scores vs labels, the pixel threshold the one maximising the F1 of
 *   all map pixels vs all mask pixels (metrics' f1Max: exact, every distinct score tried).
 * - **Manual**: `image` and/or `pixel` given by hand; the other level is still fitted.
 * - **Fallback** when the validation split has no anomalies (F1 is undefined): by default
 *   ('max') the largest normal score, nudged up to the next double so that every validation
 *   normal stays normal (a prediction is anomalous when score >= threshold). This is
 *   anomalib's choice (F1AdaptiveThreshold without anomalous samples) and makes no
 *   assumption about the score distribution, which for kNN distances is skewed and
 *   heavy-tailed, so that mean + k std lands below the largest normal score and flags
 *   validation normals. 'meanStd' (mean + stdFactor * std of the normal scores, population
 *   std, factor 3 by default) is less sensitive to one outlying normal; pick it when the
 *   validation normals may hold mislabelled defects. At pixel level "normal" pixels are all
 *   pixels of all-zero masks, or, without masks, all pixels of the normal images' maps.
 * - **Min-max normalisation** (on by default when validation data is given): min and max
 *   of the validation scores (and, separately, of the map pixels) are stored and a value
 *   x is normalised as anomalib does: clip((x - t) / (max - min) + 0.5, 0, 1), so the
 *   threshold t maps to 0.5, and a normalised value >= 0.5 is anomalous. A zero range
 *   (max == min) is taken as 1.
 *
 * A Thresholds object is plain JSON (finite numbers only): store it with JSON.stringify and
 * read it back with parseThresholds.
 */
import { AnomalensError } from '../core/errors.js';
import { f1Max } from '../metrics/metrics.js';
import { mapBlocks, scoreBlocks, type Block, type Labels, type Maps, type Masks, type Scores } from '../metrics/input.js';
import { describe, expectBoolean, expectFloat32Array, expectNumber, expectObject, expectOneOf } from '../core/validate.js';

/** How a threshold was set. */
export type ThresholdMethod = 'f1' | 'manual' | 'max' | 'meanStd';
export const THRESHOLD_METHODS: readonly ThresholdMethod[] = Object.freeze(['f1', 'manual', 'max', 'meanStd'] as const);
/** Fallbacks for a validation split without anomalies (see the module comment). */
export type ThresholdFallback = 'max' | 'meanStd';

/** A value range of validation data, for min-max normalisation. */
export interface ScoreRange {
  min: number;
  max: number;
}

/** Serialisable thresholds (plain JSON). Raw-score thresholds: anomalous when value >= threshold. */
export interface Thresholds {
  version: 1;
  /** Threshold on image scores. */
  image?: number;
  /** Threshold on anomaly-map values. */
  pixel?: number;
  /** How each threshold was set. */
  method: { image?: ThresholdMethod; pixel?: ThresholdMethod };
  /** Validation F1 reached at the F1-adaptive thresholds. */
  f1?: { image?: number; pixel?: number };
  /** Min and max of the validation scores / map pixels, when normalisation was fitted. */
  normalization?: { image?: ScoreRange; pixel?: ScoreRange };
}

export interface FitThresholdsOptions {
  /** Validation image scores (one per image). */
  scores?: Scores;
  /** Validation labels: 1 = anomalous (0/1 or booleans). */
  labels?: Labels;
  /** Validation anomaly maps, one per image (as the metrics API takes them). */
  maps?: Maps;
  /**
   * Validation masks for `maps` (non-zero = defect). Without masks the pixel threshold falls
   * back to the normal images' maps, so `maps` must then be a list aligned with `labels`.
   */
  masks?: Masks;
  /** A manual image threshold (raw score units); skips fitting the image level. */
  image?: number;
  /** A manual pixel threshold (raw map units); skips fitting the pixel level. */
  pixel?: number;
  /** Fallback when validation has no anomalies: 'max' (default) or 'meanStd'. */
  fallback?: ThresholdFallback;
  /** k of mean + k * std for the 'meanStd' fallback. Default 3. */
  stdFactor?: number;
  /** Fit min-max normalisation on the validation data. Default true when data is given. */
  normalize?: boolean;
}

/** What applyThresholds takes: a Thresholds object, or a plain `{ image?, pixel? }`. */
export type ThresholdsLike = Partial<Thresholds> & Pick<Thresholds, 'image' | 'pixel'>;

/** The result of applyThresholds for one image. */
export interface ThresholdedPrediction {
  /** 1 when predScore >= thresholds.image; absent without an image threshold. */
  predLabel?: 0 | 1;
  /** 1 where map >= thresholds.pixel (h x w, like the map); absent without a map or pixel threshold. */
  predMask?: Uint8Array;
  /** Min-max normalised score (threshold at 0.5); absent without image normalisation. */
  normalizedScore?: number;
  /** Min-max normalised map (threshold at 0.5); absent without a map or pixel normalisation. */
  normalizedMap?: Float32Array;
}

/**
 * anomalib's min-max normalisation: clip((x - threshold) / (max - min) + 0.5, 0, 1); a zero
 * range is taken as 1.
 * @example minMaxNormalize(3, 2, { min: 0, max: 4 })  // 0.75
 */
export function minMaxNormalize(x: number, threshold: number, range: ScoreRange): number {
  const span = range.max - range.min || 1;
  const v = (x - threshold) / span + 0.5;
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

/** The smallest double above x, so that `score >= next` is false for score === x. */
function nextUp(x: number): number {
  if (x === 0) return Number.MIN_VALUE;
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat64(0, x);
  const bits = buf.getBigUint64(0);
  buf.setBigUint64(0, x > 0 ? bits + 1n : bits - 1n);
  return buf.getFloat64(0);
}

/** Running statistics of the values where `keep` holds, in float64. */
class Stats {
  n = 0;
  min = Infinity;
  max = -Infinity;
  sum = 0;
  sumSq = 0;
  add(values: ArrayLike<number>, keep: ((i: number) => boolean) | undefined, name: string): void {
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (!Number.isFinite(v)) throw new AnomalensError('ERR_INVALID_ARGUMENT', `${name}[${i}] is ${v}; scores must be finite`);
      if (keep && !keep(i)) continue;
      this.n++;
      if (v < this.min) this.min = v;
      if (v > this.max) this.max = v;
      this.sum += v;
      this.sumSq += v * v;
    }
  }
  fallback(kind: ThresholdFallback, k: number): number {
    if (kind === 'max') return nextUp(this.max);
    const mean = this.sum / this.n;
    const variance = Math.max(0, this.sumSq / this.n - mean * mean);
    return mean + k * Math.sqrt(variance);
  }
}

const hasPositive = (labels: Uint8Array) => labels.some((v) => v !== 0);

/** The map data of one item of a map list: a Float32Array or { data: Float32Array }. */
function mapData(item: unknown, name: string): Float32Array {
  if (item instanceof Float32Array) return item;
  const o = expectObject(item, name);
  return expectFloat32Array(o.data, `${name}.data`);
}

interface Level {
  threshold?: number;
  method?: ThresholdMethod;
  f1?: number;
  range?: ScoreRange;
}

async function fitImage(o: FitThresholdsOptions, fallback: ThresholdFallback, k: number): Promise<Level & { labels: Uint8Array }> {
  const [block] = scoreBlocks(o.scores, o.labels);
  const all = new Stats();
  all.add(block.scores, undefined, 'scores');
  const range = { min: all.min, max: all.max };
  if (o.image !== undefined) return { threshold: o.image, method: 'manual', range, labels: block.labels };
  if (hasPositive(block.labels)) {
    const r = await f1Max(block.scores, block.labels);
    return { threshold: r.threshold, method: 'f1', f1: r.f1, range, labels: block.labels };
  }
  return { threshold: all.fallback(fallback, k), method: fallback, range, labels: block.labels };
}

async function fitPixel(o: FitThresholdsOptions, labels: Uint8Array | undefined, fallback: ThresholdFallback, k: number): Promise<Level> {
  const all = new Stats();
  if (o.masks !== undefined) {
    const blocks: Block[] = mapBlocks(o.maps, o.masks, false);
    let positive = false;
    for (const b of blocks) {
      all.add(b.scores, undefined, b.name);
      positive ||= hasPositive(b.labels);
    }
    const range = { min: all.min, max: all.max };
    if (o.pixel !== undefined) return { threshold: o.pixel, method: 'manual', range };
    if (positive) {
      const r = await f1Max(o.maps as Maps, o.masks);
      return { threshold: r.threshold, method: 'f1', f1: r.f1, range };
    }
    // All masks are empty: every pixel is normal.
    return { threshold: all.fallback(fallback, k), method: fallback, range };
  }
  // No pixel ground truth: the normal images' maps are all-normal pixels.
  const list = Array.isArray(o.maps) ? (o.maps as unknown[]) : [o.maps];
  if (list.length === 0) throw new RangeError('maps is an empty array');
  const maps = list.map((m, i) => mapData(m, Array.isArray(o.maps) ? `maps[${i}]` : 'maps'));
  for (let i = 0; i < maps.length; i++) all.add(maps[i], undefined, `maps[${i}]`);
  const range = { min: all.min, max: all.max };
  if (o.pixel !== undefined) return { threshold: o.pixel, method: 'manual', range };
  if (!labels || !Array.isArray(o.maps) || maps.length !== labels.length)
    throw new RangeError(
      'fitting a pixel threshold without masks needs labels and maps as a list with one map per label ' +
        `(received ${labels ? labels.length : 'no'} labels and ${Array.isArray(o.maps) ? `${maps.length} maps` : 'one map tensor'}); ` +
        'pass masks, or a manual pixel threshold',
    );
  const normal = new Stats();
  for (let i = 0; i < maps.length; i++) if (labels[i] === 0) normal.add(maps[i], undefined, `maps[${i}]`);
  if (normal.n === 0) throw new RangeError('fitting a pixel threshold without masks needs at least one normal image (label 0)');
  return { threshold: normal.fallback(fallback, k), method: fallback, range };
}

/**
 * Fits thresholds (and min-max normalisation) on a validation split; see the module comment.
 * Each level is fitted when its data is given and no manual value is: image from
 * scores + labels, pixel from maps (+ masks). Rejects with TypeError/RangeError for bad
 * arguments and AnomalensError ERR_INVALID_ARGUMENT for non-finite scores.
 * @example
 * const thr = await fitThresholds({ scores, labels, maps, masks });
 * const { predLabel, predMask, normalizedScore } = applyThresholds(thr, pred.predScore, pred.anomalyMap);
 */
export async function fitThresholds(options: FitThresholdsOptions): Promise<Thresholds> {
  const o = expectObject(options, 'options') as FitThresholdsOptions;
  const known = ['scores', 'labels', 'maps', 'masks', 'image', 'pixel', 'fallback', 'stdFactor', 'normalize'];
  for (const key of Object.keys(o))
    if (!known.includes(key)) throw new RangeError(`options has an unknown option '${key}'; expected ${known.join(', ')}`);
  if (o.image !== undefined) expectNumber(o.image, 'options.image');
  if (o.pixel !== undefined) expectNumber(o.pixel, 'options.pixel');
  const fallback = o.fallback === undefined ? 'max' : expectOneOf(o.fallback, 'options.fallback', ['max', 'meanStd'] as const);
  const k = o.stdFactor === undefined ? 3 : expectNumber(o.stdFactor, 'options.stdFactor', { min: 0 });
  const normalize = o.normalize === undefined ? undefined : expectBoolean(o.normalize, 'options.normalize');
  if ((o.scores === undefined) !== (o.labels === undefined)) throw new TypeError('options.scores and options.labels go together: pass both or neither');
  if (o.masks !== undefined && o.maps === undefined) throw new TypeError('options.masks needs options.maps');
  const hasImage = o.scores !== undefined;
  const hasPixel = o.maps !== undefined;
  if (!hasImage && !hasPixel && o.image === undefined && o.pixel === undefined)
    throw new TypeError('fitThresholds needs validation data (scores + labels, maps [+ masks]) or manual thresholds (image, pixel)');
  if (normalize && ((o.image !== undefined && !hasImage) || (o.pixel !== undefined && !hasPixel)))
    throw new RangeError('options.normalize needs validation data for every level: scores for the image level, maps for the pixel level');

  const manual = (t: number | undefined): Level => (t === undefined ? {} : { threshold: t, method: 'manual' });
  const img: Level & { labels?: Uint8Array } = hasImage ? await fitImage(o, fallback, k) : manual(o.image);
  const pix: Level = hasPixel ? await fitPixel(o, img.labels, fallback, k) : manual(o.pixel);

  const out: Thresholds = { version: 1, method: {} };
  if (img.threshold !== undefined) {
    out.image = img.threshold;
    out.method.image = img.method;
  }
  if (pix.threshold !== undefined) {
    out.pixel = pix.threshold;
    out.method.pixel = pix.method;
  }
  if (img.f1 !== undefined || pix.f1 !== undefined) {
    out.f1 = {};
    if (img.f1 !== undefined) out.f1.image = img.f1;
    if (pix.f1 !== undefined) out.f1.pixel = pix.f1;
  }
  if (normalize !== false && (img.range || pix.range)) {
    out.normalization = {};
    if (img.range) out.normalization.image = img.range;
    if (pix.range) out.normalization.pixel = pix.range;
  }
  return out;
}

/**
 * Labels, masks and normalised values of one prediction. `map` is the anomaly map (any
 * h x w; predMask and normalizedMap have its layout). Fields whose threshold or
 * normalisation is absent are left out.
 * @example const { predLabel, predMask, normalizedScore, normalizedMap } = applyThresholds(thr, 0.83, map)
 */
export function applyThresholds(thresholds: ThresholdsLike, predScore: number, map?: Float32Array): ThresholdedPrediction {
  const thr = parseThresholds(thresholds, 'thresholds');
  expectNumber(predScore, 'predScore');
  if (map !== undefined) expectFloat32Array(map, 'map');
  const out: ThresholdedPrediction = {};
  if (thr.image !== undefined) {
    out.predLabel = predScore >= thr.image ? 1 : 0;
    const range = thr.normalization?.image;
    if (range) out.normalizedScore = minMaxNormalize(predScore, thr.image, range);
  }
  if (map !== undefined && thr.pixel !== undefined) {
    const t = thr.pixel;
    const mask = new Uint8Array(map.length);
    for (let i = 0; i < map.length; i++) mask[i] = map[i] >= t ? 1 : 0;
    out.predMask = mask;
    const range = thr.normalization?.pixel;
    if (range) {
      const scale = 1 / (range.max - range.min || 1);
      const norm = new Float32Array(map.length);
      for (let i = 0; i < map.length; i++) {
        const v = (map[i] - t) * scale + 0.5;
        norm[i] = v < 0 ? 0 : v > 1 ? 1 : v;
      }
      out.normalizedMap = norm;
    }
  }
  return out;
}

function readRange(value: unknown, name: string): ScoreRange {
  const r = expectObject(value, name);
  const min = expectNumber(r.min, `${name}.min`);
  const max = expectNumber(r.max, `${name}.max`);
  if (max < min) throw new RangeError(`${name}.max must be >= ${name}.min, received min ${min}, max ${max}`);
  return { min, max };
}

/**
 * Validates a Thresholds object (e.g. JSON.parse of a stored one) and returns a clean copy.
 * TypeError/RangeError name the offending field.
 * @example const thr = parseThresholds(JSON.parse(text))
 */
export function parseThresholds(value: unknown, name = 'thresholds'): Thresholds {
  const o = expectObject(value, name);
  // version may be absent: a hand-written { image, pixel } is accepted as manual thresholds.
  if (o.version !== undefined && o.version !== 1) throw new RangeError(`${name}.version must be 1, received ${describe(o.version)}`);
  const method = expectObject(o.method ?? {}, `${name}.method`);
  const out: Thresholds = { version: 1, method: {} };
  for (const level of ['image', 'pixel'] as const) {
    if (o[level] === undefined) continue;
    out[level] = expectNumber(o[level], `${name}.${level}`);
    out.method[level] = method[level] === undefined ? 'manual' : expectOneOf(method[level], `${name}.method.${level}`, THRESHOLD_METHODS);
  }
  if (o.f1 !== undefined) {
    const f = expectObject(o.f1, `${name}.f1`);
    out.f1 = {};
    if (f.image !== undefined) out.f1.image = expectNumber(f.image, `${name}.f1.image`, { min: 0, max: 1 });
    if (f.pixel !== undefined) out.f1.pixel = expectNumber(f.pixel, `${name}.f1.pixel`, { min: 0, max: 1 });
  }
  if (o.normalization !== undefined) {
    const n = expectObject(o.normalization, `${name}.normalization`);
    out.normalization = {};
    if (n.image !== undefined) out.normalization.image = readRange(n.image, `${name}.normalization.image`);
    if (n.pixel !== undefined) out.normalization.pixel = readRange(n.pixel, `${name}.normalization.pixel`);
  }
  return out;
}
