/**
 * Input handling of the metrics API: validates scores/labels and maps/masks in their accepted
 * forms, normalises them into blocks (typed array + n, h, w) without copying, and runs the
 * native computation. Shared by lib/metrics/metrics.ts, lib/metrics/evaluator.ts and the tests.
 */
import type { NativeCurve, NativeMetricsResult, NativeMetricsSpec } from '../core/addon.js';
import { callNative } from '../core/errors.js';
import { native } from '../core/native.js';
import { describe, expectBoolean, expectInteger, expectNumber, expectObject } from '../core/validate.js';

/** Image-level scores: one per image. number[] is read as float64. */
export type Scores = Float32Array | Float64Array | readonly number[];
/** Image-level labels: 1 (or true) = anomalous, 0 (or false) = normal. */
export type Labels = Uint8Array | readonly (number | boolean)[];
/** An anomaly map, or a batch of them: shape [h, w], [n, h, w] or [n, 1, h, w]. */
export interface ScoreMap {
  data: Float32Array;
  shape: readonly number[];
}
/** A ground-truth mask, or a batch of them: shape [h, w], [n, h, w] or [n, 1, h, w]. */
export interface MaskMap {
  data: Uint8Array;
  shape: readonly number[];
}
/**
 * Pixel scores: one map per image (a list), or everything in one tensor. A plain
 * Float32Array carries no shape; AUPRO then takes the shape from the matching mask.
 */
export type Maps = Float32Array | ScoreMap | readonly (Float32Array | ScoreMap)[];
/** Pixel ground truth in the same layout as the maps: non-zero = defect. */
export type Masks = Uint8Array | MaskMap | readonly (Uint8Array | MaskMap)[];

/** The best F1 over all thresholds, predicting "anomalous" when score >= threshold. */
export interface F1Max {
  f1: number;
  /** the largest threshold reaching `f1` (a score present in the data) */
  threshold: number;
}

/** One block handed to the native core: n images of h x w (image level: 1 x 1 x count). */
export interface Block {
  scores: Float32Array | Float64Array;
  labels: Uint8Array;
  n: number;
  h: number;
  w: number;
  name: string;
  labelName: string;
  /** whether h and w are known (required by AUPRO) */
  hasShape: boolean;
}

/** Metric selection bits of the native call (MetricFlag in native/include/anomalens/metrics/metrics.h). */
export const Flag = { Auroc: 1, AveragePrecision: 2, F1Max: 4, Aupro: 8 } as const;

/** Options every metric accepts. */
export interface LabelOptions {
  /**
   * Binarise labels and masks at value > maskThreshold (an integer in [0, 254]). When
   * omitted, labels must be binary: 0, 1 or 255 (any other value, e.g. from a mask resized
   * with interpolation, is an error naming the element); non-zero means anomalous.
   */
  maskThreshold?: number;
}

/** Test hooks: which engine the native core uses. Not part of the public API. */
export interface EngineOptions {
  engine?: 0 | 1 | 2;
  countingMin?: number;
}

export function readLabelOptions(options: unknown, name = 'options'): LabelOptions & Record<string, unknown> {
  if (options === undefined) return {};
  const o = expectObject(options, name);
  if (o.maskThreshold !== undefined) expectInteger(o.maskThreshold, `${name}.maskThreshold`, { min: 0, max: 254 });
  return o as LabelOptions & Record<string, unknown>;
}

export function readFprLimit(value: unknown, name: string): number {
  if (value === undefined) return 0.3;
  const v = expectNumber(value, name, { max: 1 });
  if (!(v > 0)) throw new RangeError(`${name} must be in (0, 1], received ${v}`);
  return v;
}

function isScoreArray(v: unknown): v is Float32Array | Float64Array {
  return v instanceof Float32Array || v instanceof Float64Array;
}

function toScores(value: unknown, name: string): Float32Array | Float64Array {
  if (isScoreArray(value)) return value;
  if (Array.isArray(value)) {
    const out = new Float64Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      if (typeof v !== 'number') throw new TypeError(`${name}[${i}] must be a number, received ${describe(v)}`);
      out[i] = v;
    }
    return out;
  }
  throw new TypeError(`${name} must be a Float32Array, a Float64Array or an array of numbers, received ${describe(value)}`);
}

function toLabels(value: unknown, name: string): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (Array.isArray(value)) {
    const out = new Uint8Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      if (typeof v === 'boolean') out[i] = v ? 1 : 0;
      else if (typeof v === 'number') {
        if (!Number.isInteger(v) || v < 0 || v > 255)
          throw new RangeError(`${name}[${i}] must be 0 or 1 (or a boolean), received ${v}`);
        out[i] = v;
      } else throw new TypeError(`${name}[${i}] must be a number or a boolean, received ${describe(v)}`);
    }
    return out;
  }
  throw new TypeError(`${name} must be a Uint8Array or an array of 0/1 or booleans, received ${describe(value)}`);
}

/** Image-level scores and labels as one block. */
export function scoreBlocks(scores: unknown, labels: unknown, names = { scores: 'scores', labels: 'labels' }): Block[] {
  const s = toScores(scores, names.scores);
  const l = toLabels(labels, names.labels);
  if (s.length !== l.length)
    throw new RangeError(`${names.scores} and ${names.labels} must have the same length, received ${s.length} and ${l.length}`);
  if (s.length === 0) throw new RangeError(`${names.scores} is empty`);
  return [{ scores: s, labels: l, n: 1, h: 1, w: s.length, name: names.scores, labelName: names.labels, hasShape: false }];
}

interface Parsed<T> {
  data: T;
  dims?: [number, number, number];
}

function parseItem<T extends Float32Array | Uint8Array>(
  item: unknown,
  name: string,
  ctor: typeof Float32Array | typeof Uint8Array,
): Parsed<T> {
  if (item instanceof ctor) return { data: item as T };
  const kind = ctor === Float32Array ? 'Float32Array' : 'Uint8Array';
  if (item === null || typeof item !== 'object' || Array.isArray(item) || ArrayBuffer.isView(item))
    throw new TypeError(`${name} must be a ${kind} or { data: ${kind}, shape }, received ${describe(item)}`);
  const o = item as { data?: unknown; shape?: unknown };
  if (!(o.data instanceof ctor)) throw new TypeError(`${name}.data must be a ${kind}, received ${describe(o.data)}`);
  const shape = o.shape;
  if (!Array.isArray(shape)) throw new TypeError(`${name}.shape must be an array of integers, received ${describe(shape)}`);
  shape.forEach((d, i) => expectInteger(d, `${name}.shape[${i}]`, { min: 1 }));
  let dims: [number, number, number];
  if (shape.length === 2) dims = [1, shape[0], shape[1]];
  else if (shape.length === 3) dims = [shape[0], shape[1], shape[2]];
  else if (shape.length === 4 && shape[1] === 1) dims = [shape[0], shape[2], shape[3]];
  else
    throw new RangeError(`${name}.shape must be [h, w], [n, h, w] or [n, 1, h, w], received [${shape.join(', ')}]`);
  const count = dims[0] * dims[1] * dims[2];
  if (o.data.length !== count)
    throw new RangeError(`${name}.data has ${o.data.length} elements but shape [${shape.join(', ')}] needs ${count}`);
  return { data: o.data as T, dims };
}

function pairBlock(map: unknown, mask: unknown, mapName: string, maskName: string, needShape: boolean): Block {
  const m = parseItem<Float32Array>(map, mapName, Float32Array);
  const k = parseItem<Uint8Array>(mask, maskName, Uint8Array);
  if (m.data.length !== k.data.length)
    throw new RangeError(`${mapName} has ${m.data.length} elements but ${maskName} has ${k.data.length}`);
  if (m.dims && k.dims && (m.dims[0] !== k.dims[0] || m.dims[1] !== k.dims[1] || m.dims[2] !== k.dims[2]))
    throw new RangeError(`${mapName} is ${m.dims.join(' x ')} (n x h x w) but ${maskName} is ${k.dims.join(' x ')}`);
  const dims = m.dims ?? k.dims;
  if (!dims && needShape)
    throw new TypeError(
      `AUPRO needs the height and width of every map, but ${mapName} and ${maskName} are plain arrays: ` +
        `pass { data, shape: [h, w] } for either`,
    );
  if (m.data.length === 0) throw new RangeError(`${mapName} is empty`);
  const [n, h, w] = dims ?? [1, 1, m.data.length];
  return { scores: m.data, labels: k.data, n, h, w, name: mapName, labelName: maskName, hasShape: !!dims };
}

/** Pixel-level maps and masks as blocks (no copy). `prefix` names them in messages. */
export function mapBlocks(maps: unknown, masks: unknown, needShape: boolean, prefix = ''): Block[] {
  const mapsName = `${prefix}maps`, masksName = `${prefix}masks`;
  if (Array.isArray(maps) !== Array.isArray(masks))
    throw new TypeError(`${mapsName} and ${masksName} must both be arrays (one entry per image) or both single tensors`);
  if (!Array.isArray(maps)) return [pairBlock(maps, masks, mapsName, masksName, needShape)];
  const mk = masks as unknown[];
  if (maps.length !== mk.length)
    throw new RangeError(`${mapsName} and ${masksName} must have the same length, received ${maps.length} and ${mk.length}`);
  if (maps.length === 0) throw new RangeError(`${mapsName} is an empty array`);
  return maps.map((m, i) => pairBlock(m, mk[i], `${mapsName}[${i}]`, `${masksName}[${i}]`, needShape));
}

/** Either form: image scores + labels, or maps + masks (told apart by the first argument). */
export function anyBlocks(scores: unknown, labels: unknown, needShape = false): Block[] {
  const isScoreList = Array.isArray(scores) && scores.length > 0 && scores.every((v) => typeof v === 'number');
  const flat =
    scores instanceof Float64Array ||
    isScoreList ||
    (Array.isArray(scores) && scores.length === 0) ||
    (scores instanceof Float32Array && !needShape && !(labels !== null && typeof labels === 'object' && 'shape' in labels));
  return flat ? scoreBlocks(scores, labels) : mapBlocks(scores, labels, needShape);
}

function spec(blocks: Block[], options: LabelOptions & EngineOptions): NativeMetricsSpec {
  // The native core needs one score type: float32 blocks are widened exactly when mixed.
  const wide = blocks.some((b) => b.scores instanceof Float64Array);
  return {
    scores: blocks.map((b) => (wide && b.scores instanceof Float32Array ? Float64Array.from(b.scores) : b.scores)),
    labels: blocks.map((b) => b.labels),
    dims: blocks.flatMap((b) => [b.n, b.h, b.w]),
    names: blocks.map((b) => b.name),
    labelNames: blocks.map((b) => b.labelName),
    maskThreshold: options.maskThreshold ?? -1,
    engine: options.engine ?? 0,
    countingMin: options.countingMin ?? 4096,
  };
}

/** Computes the metrics selected by `flags` in one native pass. */
export function runMetrics(
  blocks: Block[],
  flags: number,
  options: LabelOptions & EngineOptions & { fprLimit?: number } = {},
): Promise<NativeMetricsResult> {
  const s = { ...spec(blocks, options), flags, fprLimit: options.fprLimit ?? 0.3 };
  return callNative(() => native().metrics(s));
}

/** Computes one curve natively: x, y and thresholds of equal length. */
export function runCurve(
  blocks: Block[],
  curve: 'roc' | 'pr' | 'pro',
  options: LabelOptions & EngineOptions & { dropIntermediate?: boolean; decimate?: number } = {},
): Promise<NativeCurve> {
  const s = { ...spec(blocks, options), curve, dropIntermediate: options.dropIntermediate ?? true, decimate: options.decimate ?? 0 };
  return callNative(() => native().metricsCurve(s));
}

export function readCurveOptions(options: unknown): LabelOptions & { dropIntermediate?: boolean; decimate?: number } {
  const o = readLabelOptions(options);
  if (o.dropIntermediate !== undefined) expectBoolean(o.dropIntermediate, 'options.dropIntermediate');
  if (o.decimate !== undefined) {
    const d = expectNumber(o.decimate, 'options.decimate', { min: 0 });
    if (d >= 1) throw new RangeError(`options.decimate must be in [0, 1), received ${d}`);
  }
  return o as LabelOptions & { dropIntermediate?: boolean; decimate?: number };
}
