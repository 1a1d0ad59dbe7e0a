/**
 * A softmax-regression head on pooled backbone features, for the empirical Fisher of PANDA's
 * EWC variant when the backbone has no classifier of its own (the ONNX Model Zoo v2 weights stop
 * at stage3) or its classes are not the labelled set's.
 *
 * The fit is deterministic and needs no seed: features are standardised per dimension (mean 0,
 * variance 1, each variance floored at 1e-4 of their mean so that a dimension that is almost
 * constant over the samples is not blown up into rounding noise), the head [W, b] starts at zero, and
 * Nesterov-accelerated full-batch gradient descent minimises
 *   mean_i CE(softmax(W z_i + b), y_i) + l2 / 2 * ||W||^2
 * for a fixed number of iterations with the step 1 / L, L = lambda_max(Z^T Z / n, 1) / 2 + l2
 * (the softmax cross-entropy's Hessian in the logits is at most 1/2; lambda_max by 50 power
 * iterations from the all-ones vector, and at least 1 for the bias). The head is then folded
 * back onto the raw features: W_raw = W / s, b_raw = b - W_raw mu. The products run as float32
 * GEMMs (linearForward / linearBackward); the bookkeeping in float64.
 *
 * @example
 * const features = await pooledFeatures(net, images, shape);
 * const head = await fitLinearHead(features, labels);  // { weight [k, d], bias [k], trainAccuracy }
 */
import { AnomalensError } from '../core/errors.js';
import { describe, expectFloat32Array, expectInteger, expectNumber, expectObject } from '../core/validate.js';
import { linearBackward, linearForward } from './ops.js';

/** A linear classifier on pooled features: logits = weight f + bias. */
export interface LinearHead {
  /** [k, d], row-major (torch.nn.Linear's weight). */
  weight: Float32Array;
  /** [k]. */
  bias: Float32Array;
}

export interface LinearHeadOptions {
  /** Number of classes k; default max(label) + 1. */
  classes?: number;
  /** Gradient-descent iterations; default 300. */
  iterations?: number;
  /**
   * L2 penalty on the standardised-space weights; default 0.1 (of 1e-3 .. 1, the lowest held-out
   * cross-entropy for ResNet-50 v2 stage3 features of 100 + 100 Fashion-MNIST images at 112 px).
   */
  l2?: number;
}

export interface FittedLinearHead extends LinearHead {
  classes: number;
  dim: number;
  /** Fraction of the training samples the head classifies correctly. */
  trainAccuracy: number;
  /** Final value of the objective (mean cross-entropy + penalty). */
  loss: number;
  iterations: number;
}

/**
 * Labels as an Int32Array of n integers in [0, k); at least two distinct classes present.
 * @internal shared with lib/train/fisher.ts
 */
export function expectLabels(labels: unknown, n: number | undefined, k: number | undefined, name = 'labels'): Int32Array {
  if (!(labels instanceof Int32Array) && !Array.isArray(labels))
    throw new TypeError(`${name} must be an Int32Array or an array of integers, received ${describe(labels)}`);
  if (n !== undefined && labels.length !== n) throw new RangeError(`${name} must have ${n} elements (one per sample), received ${labels.length}`);
  const out = Int32Array.from(labels as ArrayLike<number>, (v, i) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new RangeError(`${name}[${i}] must be an integer >= 0, received ${describe(v)}`);
    if (k !== undefined && v >= k) throw new RangeError(`${name}[${i}] is ${v}, out of range for a head of ${k} classes (labels must be in [0, ${k - 1}])`);
    return v;
  });
  const distinct = new Set(out).size;
  if (distinct < 2) throw new RangeError(`${name} must hold at least 2 classes, received ${distinct} (${out.length} samples)`);
  return out;
}

/** Row-wise softmax of logits [n, k] in float64, with the mean cross-entropy and the correct count. */
export function softmaxCrossEntropy(logits: Float32Array, labels: Int32Array, n: number, k: number): { p: Float64Array; loss: number; correct: number } {
  const p = new Float64Array(n * k);
  let loss = 0;
  let correct = 0;
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    let arg = 0;
    for (let j = 0; j < k; j++) if (logits[i * k + j] > max) (max = logits[i * k + j]), (arg = j);
    let sum = 0;
    for (let j = 0; j < k; j++) sum += (p[i * k + j] = Math.exp(logits[i * k + j] - max));
    for (let j = 0; j < k; j++) p[i * k + j] /= sum;
    loss -= logits[i * k + labels[i]] - max - Math.log(sum);
    if (arg === labels[i]) correct++;
  }
  return { p, loss: loss / n, correct };
}

/**
 * Fits a softmax-regression head on pooled features [n, d] (n = labels.length). Deterministic:
 * see the file comment for the algorithm.
 */
export async function fitLinearHead(features: Float32Array, labels: Int32Array | readonly number[], options: LinearHeadOptions = {}): Promise<FittedLinearHead> {
  const x = expectFloat32Array(features, 'features');
  const o = expectObject(options, 'options');
  const classes = o.classes === undefined ? undefined : expectInteger(o.classes, 'options.classes', { min: 2 });
  const iterations = o.iterations === undefined ? 300 : expectInteger(o.iterations, 'options.iterations', { min: 0 });
  const l2 = o.l2 === undefined ? 0.1 : expectNumber(o.l2, 'options.l2', { min: 0 });
  const y = expectLabels(labels, undefined, classes);
  const n = y.length;
  if (x.length % n !== 0 || x.length === 0)
    throw new RangeError(`features must hold n * d values for n = ${n} labels, received ${x.length}`);
  const d = x.length / n;
  const k = classes ?? Math.max(...y) + 1;
  for (let i = 0; i < x.length; i++)
    if (!Number.isFinite(x[i])) throw new RangeError(`features[${i}] is ${x[i]}; all values must be finite`);

  // Standardise.
  const mu = new Float64Array(d);
  const s = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mu[j] += x[i * d + j];
  for (let j = 0; j < d; j++) mu[j] /= n;
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) s[j] += (x[i * d + j] - mu[j]) ** 2;
  let meanVar = 0;
  for (let j = 0; j < d; j++) meanVar += (s[j] /= n) / d;
  for (let j = 0; j < d; j++) s[j] = meanVar > 0 ? Math.sqrt(s[j] + 1e-4 * meanVar) : 1;
  const z = new Float32Array(n * d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) z[i * d + j] = (x[i * d + j] - mu[j]) / s[j];

  // lambda_max(Z^T Z / n) by power iteration: Z v is a linear forward with one output.
  let v = new Float64Array(d).fill(1 / Math.sqrt(d));
  let lambda = 0;
  for (let it = 0; it < 50; it++) {
    const vf = Float32Array.from(v);
    const zv = await linearForward(z, vf, null, n, d, 1);
    const { dw } = await linearBackward(z, vf, zv, n, d, 1, { dx: false, dw: true, db: false });
    let norm = 0;
    for (let j = 0; j < d; j++) norm += (dw![j] / n) ** 2;
    norm = Math.sqrt(norm);
    if (norm === 0) break;
    lambda = norm;
    v = Float64Array.from(dw!, (g) => g / n / norm);
  }
  const step = 1 / (Math.max(lambda, 1) / 2 + l2);

  // Nesterov-accelerated gradient descent (FISTA's momentum schedule, no prox).
  const size = k * d;
  let theta = new Float64Array(size + k);
  const ahead = new Float64Array(size + k);
  let t = 1;
  const objective = async (at: Float64Array, wantGrad: boolean) => {
    const w = Float32Array.from(at.subarray(0, size));
    const b = Float32Array.from(at.subarray(size));
    const logits = await linearForward(z, w, b, n, d, k);
    const ce = softmaxCrossEntropy(logits, y, n, k);
    let penalty = 0;
    for (let j = 0; j < size; j++) penalty += at[j] * at[j];
    const loss = ce.loss + (l2 / 2) * penalty;
    if (!wantGrad) return { loss, correct: ce.correct, grad: null };
    const g = new Float32Array(n * k);
    for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) g[i * k + j] = (ce.p[i * k + j] - (y[i] === j ? 1 : 0)) / n;
    const { dw, db } = await linearBackward(z, w, g, n, d, k, { dx: false, dw: true, db: true });
    const grad = new Float64Array(size + k);
    for (let j = 0; j < size; j++) grad[j] = dw![j] + l2 * at[j];
    for (let j = 0; j < k; j++) grad[size + j] = db![j];
    return { loss, correct: ce.correct, grad };
  };
  for (let it = 0; it < iterations; it++) {
    const { grad } = await objective(ahead, true);
    const next = new Float64Array(size + k);
    for (let j = 0; j < next.length; j++) next[j] = ahead[j] - step * grad![j];
    const tNext = (1 + Math.sqrt(1 + 4 * t * t)) / 2;
    const beta = (t - 1) / tNext;
    for (let j = 0; j < next.length; j++) ahead[j] = next[j] + beta * (next[j] - theta[j]);
    theta = next;
    t = tNext;
  }
  const final = await objective(theta, false);
  if (!Number.isFinite(final.loss)) throw new AnomalensError('ERR_INTERNAL', `the linear head's fit diverged (loss ${final.loss})`);

  // Fold the standardisation into the head: W_raw = W / s, b_raw = b - W_raw mu.
  const weight = new Float32Array(size);
  const bias = new Float32Array(k);
  for (let c = 0; c < k; c++) {
    let shift = 0;
    for (let j = 0; j < d; j++) {
      const wr = theta[c * d + j] / s[j];
      weight[c * d + j] = wr;
      shift += wr * mu[j];
    }
    bias[c] = theta[size + c] - shift;
  }
  return { weight, bias, classes: k, dim: d, trainAccuracy: final.correct / n, loss: final.loss, iterations };
}
