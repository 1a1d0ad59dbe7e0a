/**
 * Anomaly-map kernels: bilinear resize, Gaussian blur, and per-pixel distance maps between two
 * feature maps (cosine distance, Euclidean distance), the post-processing and Reverse
 * Distillation building blocks of the detectors. Native, multithreaded, asynchronous.
 *
 * Maps are float32, row-major NCHW (`[n, c, h, w]`) or `[n, h, w]`. Inputs are read in place;
 * results are new Float32Arrays over native memory, or the caller's `options.out` (filled and
 * returned). A NaN or infinite input rejects with a RangeError naming the element. If a call
 * rejects, the contents of `options.out` are unspecified.
 */
import { callNative } from '../core/errors.js';
import { native } from '../core/native.js';
import { describe, expectBoolean, expectFloat32Array, expectNumber, expectObject, expectShape } from '../core/validate.js';

/** `[n, h, w]`: n maps of h x w. */
export type MapShape3 = readonly [n: number, h: number, w: number];
/** `[n, c, h, w]`: n images of c channels of h x w. */
export type MapShape4 = readonly [n: number, c: number, h: number, w: number];

export interface MapOutputOptions {
  /** A caller-allocated Float32Array of the output's size, filled and returned. It must not
   * overlap an input (except `gaussianBlur`'s, which may be the very same array: in place). */
  out?: Float32Array;
}

export interface ResizeBilinearOptions extends MapOutputOptions {
  /**
   * torch's align_corners = true (corner pixels coincide; Reverse Distillation's
   * cal_anomaly_map). Default false, the bit-identical align_corners = false kernel.
   */
  alignCorners?: boolean;
}

export interface GaussianBlurOptions extends MapOutputOptions {
  /** Kernel radius in sigmas, as scipy's `truncate`: radius = int(truncate * sigma + 0.5).
   * Default 4. */
  truncate?: number;
}

export interface CosineDistanceOptions extends MapOutputOptions {
  /** Lower bound of each vector's norm, as torch's `eps`. Default 1e-8. */
  eps?: number;
}

export interface L2DistanceOptions extends MapOutputOptions {
  /** Return the squared distance (no square root). Default false. */
  squared?: boolean;
}

/** The largest Gaussian kernel radius accepted. */
export const MAX_BLUR_RADIUS = 1 << 16;

const product = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);
const fmt = (dims: readonly number[]) => `[${dims.join(', ')}]`;

function expectMaps(value: unknown, name: string, shape: readonly number[]): Float32Array {
  const data = expectFloat32Array(value, name);
  const count = product(shape);
  if (data.length !== count)
    throw new RangeError(`${name} must have ${count} elements for shape ${fmt(shape)}, received ${data.length}`);
  return data;
}

function overlaps(x: Float32Array, y: Float32Array): boolean {
  if (x.buffer !== y.buffer) return false;
  return x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength;
}

function sameView(x: Float32Array, y: Float32Array): boolean {
  return x.buffer === y.buffer && x.byteOffset === y.byteOffset && x.length === y.length;
}

/** options.out, validated: undefined, or a Float32Array of `count` elements not overlapping `inputs`. */
function expectOut(
  o: Record<string, unknown>,
  count: number,
  inputs: [string, Float32Array][],
  inPlace?: Float32Array,
): Float32Array | undefined {
  if (o.out === undefined) return undefined;
  const out = expectFloat32Array(o.out, 'options.out', count);
  if (inPlace && sameView(out, inPlace)) return out;
  for (const [name, input] of inputs)
    if (overlaps(out, input))
      throw new RangeError(
        `options.out must not overlap ${name}${inPlace ? ' (except as the very same array, in place)' : ''}, received a view sharing its memory`,
      );
  return out;
}

/** scipy.ndimage's Gaussian kernel radius: int(truncate * sigma + 0.5). */
export function gaussianRadius(sigma: number, truncate = 4.0): number {
  return Math.trunc(truncate * sigma + 0.5);
}

/**
 * Resizes maps bilinearly, exactly as PyTorch's
 * `F.interpolate(x, size, mode='bilinear', align_corners=False, antialias=False)` on CPU:
 * per axis the source position is (dst + 0.5) * (in / out) - 0.5 clamped at 0 (PyTorch's float
 * scale, index and weight computation), and the arithmetic is that of the kernel PyTorch 1.13
 * runs for the shape (results are bit-identical to its AVX2 build). `[n, h, w]` is `[n, 1, h, w]`.
 * No antialiasing: when shrinking, each output reads only its 2 x 2 nearest inputs.
 * @param maps `shape`'s elements, NCHW.
 * @param shape `[n, c, h, w]` or `[n, h, w]`, every size >= 1.
 * @param size `[oh, ow]`, >= 1.
 * @returns `[n, c, oh, ow]` (or `[n, oh, ow]`).
 * @example
 * const full = await resizeBilinear(scores, [32, 28, 28], [256, 256]) // 32 maps of 256 x 256
 */
export async function resizeBilinear(
  maps: Float32Array,
  shape: MapShape3 | MapShape4,
  size: readonly [oh: number, ow: number],
  options: ResizeBilinearOptions = {},
): Promise<Float32Array> {
  if (!Array.isArray(shape)) throw new TypeError(`shape must be an array of integers, received ${describe(shape)}`);
  if (shape.length !== 3 && shape.length !== 4)
    throw new RangeError(`shape must be [n, c, h, w] or [n, h, w], received ${fmt(shape)}`);
  expectShape(shape, 'shape');
  const s4 = shape.length === 4 ? [...shape] : [shape[0], 1, shape[1], shape[2]];
  const data = expectMaps(maps, 'maps', shape);
  const [oh, ow] = expectShape(size, 'size', 2);
  const o = expectObject(options, 'options');
  const alignCorners = o.alignCorners === undefined ? false : expectBoolean(o.alignCorners, 'options.alignCorners');
  const out = expectOut(o, s4[0] * s4[1] * oh * ow, [['maps', data]]);
  if (alignCorners) return callNative(() => native().mapsResizeBilinearAlignCorners(data, s4, [oh, ow], out));
  return callNative(() => native().mapsResizeBilinear(data, s4, [oh, ow], out));
}

/**
 * Smooths each 2-D map with a Gaussian, as `scipy.ndimage.gaussian_filter(map, sigma,
 * mode='reflect', truncate=4.0)`: a separable normalised kernel of radius
 * int(truncate * sigma + 0.5), rows then columns, borders extended by half-sample reflection
 * (d c b a | a b c d | d c b a, repeated as often as a small map needs). Accumulates in float64
 * and rounds once: the result is scipy's float64 result rounded to float32.
 * @param maps `shape`'s elements.
 * @param shape `[n, h, w]`, every size >= 1.
 * @param sigma standard deviation in pixels, > 0.
 * @returns `[n, h, w]`; `options.out` may be `maps` itself (in place).
 * @example
 * await gaussianBlur(maps, [32, 256, 256], 4, { out: maps }) // SPADE / PatchCore / PaDiM smoothing
 */
export async function gaussianBlur(
  maps: Float32Array,
  shape: MapShape3,
  sigma: number,
  options: GaussianBlurOptions = {},
): Promise<Float32Array> {
  const s = expectShape(shape, 'shape', 3);
  const data = expectMaps(maps, 'maps', s);
  expectNumber(sigma, 'sigma');
  if (!(sigma > 0)) throw new RangeError(`sigma must be > 0, received ${sigma}`);
  const o = expectObject(options, 'options');
  const truncate = o.truncate === undefined ? 4.0 : expectNumber(o.truncate, 'options.truncate', { min: 0 });
  const radius = gaussianRadius(sigma, truncate);
  if (radius > MAX_BLUR_RADIUS)
    throw new RangeError(
      `the kernel radius int(truncate * sigma + 0.5) must be <= ${MAX_BLUR_RADIUS}, received ${radius} (sigma ${sigma}, truncate ${truncate})`,
    );
  const out = expectOut(o, data.length, [['maps', data]], data);
  return callNative(() => native().mapsGaussianBlur(data, [...s], sigma, truncate, out));
}

function distanceArgs(a: unknown, b: unknown, shape: unknown) {
  const s = expectShape(shape, 'shape', 4);
  const da = expectMaps(a, 'a', s);
  const db = expectMaps(b, 'b', s);
  return { s: [...s], da, db, count: s[0] * s[2] * s[3] };
}

/**
 * 1 - cosine similarity over channels, per pixel: 1 - torch 1.13's
 * `F.cosine_similarity(a, b, dim=1, eps=1e-8)`, which divides each vector by max(||v||, eps)
 * before the dot product (so a zero vector gives distance 1, never NaN). Bit-identical to that
 * torch on one thread (same float32 products, same summation order). In [0, 2].
 * @param a teacher features, `[n, c, h, w]`.
 * @param b student features, same shape.
 * @returns `[n, h, w]`.
 * @example
 * const d = await cosineDistanceMap(teacher, student, [32, 256, 64, 64]) // Reverse Distillation
 */
export async function cosineDistanceMap(
  a: Float32Array,
  b: Float32Array,
  shape: MapShape4,
  options: CosineDistanceOptions = {},
): Promise<Float32Array> {
  const { s, da, db, count } = distanceArgs(a, b, shape);
  const o = expectObject(options, 'options');
  const eps = o.eps === undefined ? 1e-8 : expectNumber(o.eps, 'options.eps');
  if (!(Math.fround(eps) > 0)) throw new RangeError(`options.eps must be > 0 (as a float32), received ${eps}`);
  const out = expectOut(o, count, [['a', da], ['b', db]]);
  return callNative(() => native().mapsCosineDistance(da, db, s, eps, out));
}

/**
 * Euclidean distance over channels, per pixel: sqrt(sum_c (a - b)^2), or its square with
 * `{ squared: true }`. Accumulated in float64 and rounded once.
 * @param a `[n, c, h, w]`.
 * @param b same shape.
 * @returns `[n, h, w]`.
 * @example
 * const d = await l2DistanceMap(a, b, [8, 256, 64, 64], { squared: true })
 */
export async function l2DistanceMap(
  a: Float32Array,
  b: Float32Array,
  shape: MapShape4,
  options: L2DistanceOptions = {},
): Promise<Float32Array> {
  const { s, da, db, count } = distanceArgs(a, b, shape);
  const o = expectObject(options, 'options');
  const squared = o.squared === undefined ? false : expectBoolean(o.squared, 'options.squared');
  const out = expectOut(o, count, [['a', da], ['b', db]]);
  return callNative(() => native().mapsL2Distance(da, db, s, squared, out));
}
