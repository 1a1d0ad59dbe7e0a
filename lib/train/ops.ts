/**
 * Training ops: forward/backward pairs of the layers PANDA and Reverse Distillation train
 * (convolution, transposed convolution, batch norm in training and frozen mode, ReLU, residual
 * add, channel concatenation, global average pooling, max pooling, linear), computed natively
 * (oneDNN; max pooling in plain loops).
 *
 * Tensors are float32 NCHW Float32Arrays. A backward takes what its forward kept (named in
 * each doc comment) and the output gradient `dy`, and resolves the input and parameter
 * gradients; pass `wants` to skip gradients that are not needed (`null` in the result).
 * Results are new Float32Arrays over native memory.
 *
 * @example
 * const g = { n: 2, c: 3, h: 8, w: 8, k: 4, kh: 3, kw: 3, padding: 1 };
 * const y = await conv2dForward(x, weight, bias, g);
 * const { dx, dw, db } = await conv2dBackward(x, weight, dy, g);
 */
import { callNative } from '../core/errors.js';
import { native } from '../core/native.js';
import { describe, expectBoolean, expectNumber, expectObject } from '../core/validate.js';
import {
  expectData, expectNchw, expectOptionalData, expectPair, expectPositive, expectSize, expectWants, product,
} from './validate.js';

/** The geometry of a (transposed) convolution: input [n, c, h, w], k output channels, kernel kh x kw. */
export interface ConvGeometry {
  n: number;
  c: number;
  h: number;
  w: number;
  k: number;
  kh: number;
  kw: number;
  /** Default 1 (convolution) or 2 (transposed convolution). */
  stride?: number | readonly [number, number];
  /** Default 0. */
  padding?: number | readonly [number, number];
}

export interface ConvGradients {
  dx: Float32Array | null;
  dw: Float32Array | null;
  db: Float32Array | null;
}

export interface GradientWants {
  dx?: boolean;
  dw?: boolean;
  db?: boolean;
}

type Geom = [number, number, number, number, number, number, number, number, number, number, number];

function convGeometry(g: unknown, transposed: boolean): { geom: Geom; oh: number; ow: number } {
  const o = expectObject(g, 'geometry');
  const [n, c, h, w, k, kh, kw] = (['n', 'c', 'h', 'w', 'k', 'kh', 'kw'] as const).map((key) =>
    expectSize(o[key], `geometry.${key}`),
  );
  const [sh, sw] = expectPair(o.stride, 'geometry.stride', transposed ? 2 : 1, 1);
  const [ph, pw] = expectPair(o.padding, 'geometry.padding', 0, 0);
  const oh = transposed ? (h - 1) * sh - 2 * ph + kh : Math.floor((h + 2 * ph - kh) / sh) + 1;
  const ow = transposed ? (w - 1) * sw - 2 * pw + kw : Math.floor((w + 2 * pw - kw) / sw) + 1;
  if (oh < 1 || ow < 1)
    throw new RangeError(
      `geometry gives an empty output (${oh} x ${ow}) for input ${h} x ${w}, kernel ${kh} x ${kw}, stride ${sh}, ${sw}, padding ${ph}, ${pw}`,
    );
  return { geom: [n, c, h, w, k, kh, kw, sh, sw, ph, pw], oh, ow };
}

/** The output size [n, k, oh, ow] of a convolution (torch.nn.Conv2d's rule). */
export function conv2dOutputShape(g: ConvGeometry): [number, number, number, number] {
  const { geom, oh, ow } = convGeometry(g, false);
  return [geom[0], geom[4], oh, ow];
}

/** The output size [n, k, oh, ow] of a transposed convolution: (h - 1) * stride - 2 * padding + kh. */
export function convTranspose2dOutputShape(g: ConvGeometry): [number, number, number, number] {
  const { geom, oh, ow } = convGeometry(g, true);
  return [geom[0], geom[4], oh, ow];
}

/**
 * torch.nn.Conv2d forward: x [n, c, h, w], weight [k, c, kh, kw], bias [k] or null.
 * @returns y [n, k, oh, ow].
 */
export async function conv2dForward(x: Float32Array, weight: Float32Array, bias: Float32Array | null, geometry: ConvGeometry): Promise<Float32Array> {
  const { geom } = convGeometry(geometry, false);
  const [n, c, h, w, k, kh, kw] = geom;
  const xs = expectData(x, 'x', n * c * h * w);
  const ws = expectData(weight, 'weight', k * c * kh * kw);
  const bs = expectOptionalData(bias, 'bias', k);
  return callNative(() => native().trainConv2dForward(xs, ws, bs, geom));
}

/** Backward of conv2dForward. Keeps: x, weight. dx [n, c, h, w], dw [k, c, kh, kw], db [k]. */
export async function conv2dBackward(x: Float32Array, weight: Float32Array, dy: Float32Array, geometry: ConvGeometry, wants?: GradientWants): Promise<ConvGradients> {
  const { geom, oh, ow } = convGeometry(geometry, false);
  const [n, c, h, w, k, kh, kw] = geom;
  const xs = expectData(x, 'x', n * c * h * w);
  const ws = expectData(weight, 'weight', k * c * kh * kw);
  const dys = expectData(dy, 'dy', n * k * oh * ow);
  const want = expectWants(wants, 'wants', ['dx', 'dw', 'db']);
  return callNative(() => native().trainConv2dBackward(xs, ws, dys, geom, want));
}

/**
 * torch.nn.ConvTranspose2d forward with PyTorch's weight layout [c (in), k (out), kh, kw]:
 * x [n, c, h, w], bias [k] or null. Stride defaults to 2 (Reverse Distillation's 2x2 stride 2).
 * @returns y [n, k, (h - 1) * stride - 2 * padding + kh, ...].
 */
export async function convTranspose2dForward(x: Float32Array, weight: Float32Array, bias: Float32Array | null, geometry: ConvGeometry): Promise<Float32Array> {
  const { geom } = convGeometry(geometry, true);
  const [n, c, h, w, k, kh, kw] = geom;
  const xs = expectData(x, 'x', n * c * h * w);
  const ws = expectData(weight, 'weight', c * k * kh * kw);
  const bs = expectOptionalData(bias, 'bias', k);
  return callNative(() => native().trainConvTranspose2dForward(xs, ws, bs, geom));
}

/** Backward of convTranspose2dForward. Keeps: x, weight. dw has PyTorch's layout [c, k, kh, kw]. */
export async function convTranspose2dBackward(x: Float32Array, weight: Float32Array, dy: Float32Array, geometry: ConvGeometry, wants?: GradientWants): Promise<ConvGradients> {
  const { geom, oh, ow } = convGeometry(geometry, true);
  const [n, c, h, w, k, kh, kw] = geom;
  const xs = expectData(x, 'x', n * c * h * w);
  const ws = expectData(weight, 'weight', c * k * kh * kw);
  const dys = expectData(dy, 'dy', n * k * oh * ow);
  const want = expectWants(wants, 'wants', ['dx', 'dw', 'db']);
  return callNative(() => native().trainConvTranspose2dBackward(xs, ws, dys, geom, want));
}

export interface BatchNormTrainOptions {
  /** Default 1e-5. */
  eps?: number;
  /** Default 0.1 (torch's). */
  momentum?: number;
  /** [c], updated in place with the batch mean (torch's rule) when given. */
  runningMean?: Float32Array;
  /** [c], updated in place with the *unbiased* batch variance when given. */
  runningVar?: Float32Array;
}

export interface BatchNormTrainResult {
  y: Float32Array;
  /** The batch mean [c], kept for the backward. */
  saveMean: Float32Array;
  /** The biased batch variance [c], kept for the backward. */
  saveVar: Float32Array;
}

/**
 * torch.nn.BatchNorm2d in training mode: normalises with the batch mean and biased variance,
 * and updates options.runningMean / runningVar in place (momentum, unbiased variance).
 * gamma, beta [c] or null (no affine).
 */
export async function batchNormTrainForward(x: Float32Array, gamma: Float32Array | null, beta: Float32Array | null, shape: readonly [number, number, number, number], options: BatchNormTrainOptions = {}): Promise<BatchNormTrainResult> {
  const s = expectNchw(shape, 'shape');
  const c = s[1];
  const xs = expectData(x, 'x', product(s));
  const g = expectOptionalData(gamma, 'gamma', c);
  const b = expectOptionalData(beta, 'beta', c);
  const o = expectObject(options, 'options');
  const eps = o.eps === undefined ? 1e-5 : expectPositive(o.eps, 'options.eps');
  const momentum = o.momentum === undefined ? 0.1 : expectNumber(o.momentum, 'options.momentum', { min: 0, max: 1 });
  const rm = expectOptionalData(o.runningMean, 'options.runningMean', c);
  const rv = expectOptionalData(o.runningVar, 'options.runningVar', c);
  if (rv && s[0] * s[2] * s[3] < 2)
    throw new RangeError(`shape must give more than one value per channel in training mode (n * h * w = ${s[0] * s[2] * s[3]}), as torch's`);
  // Training mode: the batch statistics are always there.
  return callNative(
    () => native().trainBatchNormForward(xs, g, b, s, eps, false, null, null, momentum, rm, rv) as Promise<BatchNormTrainResult>,
  );
}

/** Batch norm with frozen statistics (torch's eval mode): mean, var [c] are constants. */
export async function batchNormFrozenForward(x: Float32Array, gamma: Float32Array | null, beta: Float32Array | null, mean: Float32Array, variance: Float32Array, shape: readonly [number, number, number, number], options: { eps?: number } = {}): Promise<Float32Array> {
  const s = expectNchw(shape, 'shape');
  const c = s[1];
  const xs = expectData(x, 'x', product(s));
  const g = expectOptionalData(gamma, 'gamma', c);
  const b = expectOptionalData(beta, 'beta', c);
  const m = expectData(mean, 'mean', c);
  const v = expectData(variance, 'variance', c);
  const o = expectObject(options, 'options');
  const eps = o.eps === undefined ? 1e-5 : expectPositive(o.eps, 'options.eps');
  const r = await callNative(() => native().trainBatchNormForward(xs, g, b, s, eps, true, m, v, 0, null, null));
  return r.y;
}

export interface BatchNormGradients {
  dx: Float32Array | null;
  dgamma: Float32Array | null;
  dbeta: Float32Array | null;
}

/**
 * Backward of either batch-norm mode. Keeps: x, gamma, and mean / variance: the forward's
 * saveMean / saveVar in training mode (`frozen: false`, the default: the gradient flows
 * through the batch statistics), the frozen statistics with `frozen: true`.
 */
export async function batchNormBackward(x: Float32Array, gamma: Float32Array | null, mean: Float32Array, variance: Float32Array, dy: Float32Array, shape: readonly [number, number, number, number], options: { eps?: number; frozen?: boolean; wants?: { dx?: boolean; dgamma?: boolean; dbeta?: boolean } } = {}): Promise<BatchNormGradients> {
  const s = expectNchw(shape, 'shape');
  const c = s[1];
  const count = product(s);
  const xs = expectData(x, 'x', count);
  const g = expectOptionalData(gamma, 'gamma', c);
  const m = expectData(mean, 'mean', c);
  const v = expectData(variance, 'variance', c);
  const dys = expectData(dy, 'dy', count);
  const o = expectObject(options, 'options');
  const eps = o.eps === undefined ? 1e-5 : expectPositive(o.eps, 'options.eps');
  const frozen = o.frozen === undefined ? false : expectBoolean(o.frozen, 'options.frozen');
  const want = expectWants(o.wants, 'options.wants', ['dx', 'dgamma', 'dbeta']);
  return callNative(() => native().trainBatchNormBackward(xs, g, m, v, dys, s, eps, frozen, want));
}

/** y = max(x, 0). */
export async function reluForward(x: Float32Array): Promise<Float32Array> {
  const xs = expectData(x, 'x', (x as Float32Array)?.length ?? 0);
  if (xs.length === 0) throw new RangeError('x must not be empty');
  return callNative(() => native().trainReluForward(xs));
}

/** Backward of reluForward. Keeps: y (the output). dx = dy where y > 0, else 0. */
export async function reluBackward(y: Float32Array, dy: Float32Array): Promise<Float32Array> {
  const ys = expectData(y, 'y', (y as Float32Array)?.length ?? 0);
  if (ys.length === 0) throw new RangeError('y must not be empty');
  const dys = expectData(dy, 'dy', ys.length);
  return callNative(() => native().trainReluBackward(ys, dys));
}

/** y = a + b (a residual connection). Its backward passes dy to both inputs: see addBackward. */
export async function addForward(a: Float32Array, b: Float32Array): Promise<Float32Array> {
  const as = expectData(a, 'a', (a as Float32Array)?.length ?? 0);
  if (as.length === 0) throw new RangeError('a must not be empty');
  const bs = expectData(b, 'b', as.length);
  return callNative(() => native().trainAddForward(as, bs));
}

/** Backward of addForward: both gradients are dy itself (no copy). */
export function addBackward(dy: Float32Array): { da: Float32Array; db: Float32Array } {
  const dys = expectData(dy, 'dy', (dy as Float32Array)?.length ?? 0);
  return { da: dys, db: dys };
}

/** torch.cat(xs, dim=1): xs[i] [n, channels[i], h, w] -> [n, sum(channels), h, w]. */
export async function concatForward(xs: readonly Float32Array[], n: number, channels: readonly number[], h: number, w: number): Promise<Float32Array> {
  if (!Array.isArray(xs)) throw new TypeError(`xs must be an array of Float32Arrays, received ${describe(xs)}`);
  if (!Array.isArray(channels)) throw new TypeError(`channels must be an array of integers, received ${describe(channels)}`);
  if (xs.length === 0 || xs.length !== channels.length)
    throw new RangeError(`xs and channels must be non-empty and of the same length, received ${xs.length} and ${channels.length}`);
  const [nn, hh, ww] = [expectSize(n, 'n'), expectSize(h, 'h'), expectSize(w, 'w')];
  const cs = channels.map((c, i) => expectSize(c, `channels[${i}]`));
  const parts = xs.map((x, i) => expectData(x, `xs[${i}]`, nn * cs[i] * hh * ww));
  return callNative(() => native().trainConcatForward(parts, nn, cs, hh, ww));
}

/** Backward of concatForward (a split). Keeps nothing. */
export async function concatBackward(dy: Float32Array, n: number, channels: readonly number[], h: number, w: number): Promise<Float32Array[]> {
  if (!Array.isArray(channels) || channels.length === 0)
    throw new TypeError(`channels must be a non-empty array of integers, received ${describe(channels)}`);
  const [nn, hh, ww] = [expectSize(n, 'n'), expectSize(h, 'h'), expectSize(w, 'w')];
  const cs = channels.map((c, i) => expectSize(c, `channels[${i}]`));
  const dys = expectData(dy, 'dy', nn * cs.reduce((a, b) => a + b, 0) * hh * ww);
  return callNative(() => native().trainConcatBackward(dys, nn, cs, hh, ww));
}

/** Global average pooling [n, c, h, w] -> [n, c]. */
export async function globalAvgPoolForward(x: Float32Array, shape: readonly [number, number, number, number]): Promise<Float32Array> {
  const s = expectNchw(shape, 'shape');
  const xs = expectData(x, 'x', product(s));
  return callNative(() => native().trainGlobalAvgPoolForward(xs, s));
}

/** Backward of globalAvgPoolForward: dx = dy / (h * w) spread over each map. Keeps nothing. */
export async function globalAvgPoolBackward(dy: Float32Array, shape: readonly [number, number, number, number]): Promise<Float32Array> {
  const s = expectNchw(shape, 'shape');
  const dys = expectData(dy, 'dy', s[0] * s[1]);
  return callNative(() => native().trainGlobalAvgPoolBackward(dys, s));
}

/** torch.nn.Linear(d, k): y = x weight^T + bias; x [n, d], weight [k, d], bias [k] or null. */
export async function linearForward(x: Float32Array, weight: Float32Array, bias: Float32Array | null, n: number, d: number, k: number): Promise<Float32Array> {
  const [nn, dd, kk] = [expectSize(n, 'n'), expectSize(d, 'd'), expectSize(k, 'k')];
  const xs = expectData(x, 'x', nn * dd);
  const ws = expectData(weight, 'weight', kk * dd);
  const bs = expectOptionalData(bias, 'bias', kk);
  return callNative(() => native().trainLinearForward(xs, ws, bs, [nn, dd, kk]));
}

/** Backward of linearForward. Keeps: x, weight. dx [n, d], dw [k, d], db [k]. */
export async function linearBackward(x: Float32Array, weight: Float32Array, dy: Float32Array, n: number, d: number, k: number, wants?: GradientWants): Promise<ConvGradients> {
  const [nn, dd, kk] = [expectSize(n, 'n'), expectSize(d, 'd'), expectSize(k, 'k')];
  const xs = expectData(x, 'x', nn * dd);
  const ws = expectData(weight, 'weight', kk * dd);
  const dys = expectData(dy, 'dy', nn * kk);
  const want = expectWants(wants, 'wants', ['dx', 'dw', 'db']);
  return callNative(() => native().trainLinearBackward(xs, ws, dys, [nn, dd, kk], want));
}

/** torch.nn.MaxPool2d geometry: input [n, c, h, w], window k, stride (default k), padding (default 0, <= k / 2). */
export interface MaxPoolGeometry {
  n: number;
  c: number;
  h: number;
  w: number;
  k: number;
  stride?: number;
  padding?: number;
}

function maxPoolGeometry(g: unknown): { geom: number[]; oh: number; ow: number } {
  const o = expectObject(g, 'geometry');
  const [n, c, h, w, k] = (['n', 'c', 'h', 'w', 'k'] as const).map((key) => expectSize(o[key], `geometry.${key}`));
  const stride = o.stride === undefined ? k : expectSize(o.stride, 'geometry.stride');
  const pad = o.padding === undefined ? 0 : expectPair(o.padding, 'geometry.padding', 0, 0)[0];
  if (2 * pad > k) throw new RangeError(`geometry.padding must be <= k / 2 (${k / 2}), received ${pad}`);
  if (h + 2 * pad < k || w + 2 * pad < k) throw new RangeError(`geometry: input ${h} x ${w} is smaller than the ${k} x ${k} window`);
  return { geom: [n, c, h, w, k, stride, pad], oh: Math.floor((h + 2 * pad - k) / stride) + 1, ow: Math.floor((w + 2 * pad - k) / stride) + 1 };
}

/** torch.nn.MaxPool2d(k, stride, padding) forward: x [n, c, h, w] -> [n, c, oh, ow]. */
export async function maxPool2dForward(x: Float32Array, geometry: MaxPoolGeometry): Promise<Float32Array> {
  const { geom } = maxPoolGeometry(geometry);
  const xs = expectData(x, 'x', geom[0] * geom[1] * geom[2] * geom[3]);
  return callNative(() => native().trainMaxPool2dForward(xs, geom));
}

/** Backward of maxPool2dForward. Keeps: x. Each output's gradient goes to its window's first maximum (torch's choice). */
export async function maxPool2dBackward(x: Float32Array, dy: Float32Array, geometry: MaxPoolGeometry): Promise<Float32Array> {
  const { geom, oh, ow } = maxPoolGeometry(geometry);
  const xs = expectData(x, 'x', geom[0] * geom[1] * geom[2] * geom[3]);
  const dys = expectData(dy, 'dy', geom[0] * geom[1] * oh * ow);
  return callNative(() => native().trainMaxPool2dBackward(xs, dys, geom));
}
