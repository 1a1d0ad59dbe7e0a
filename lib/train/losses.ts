/**
 * Losses of the training methods, each resolving the loss and its gradients (new Float32Arrays).
 */
import { callNative } from '../core/errors.js';
import { native } from '../core/native.js';
import { describe, expectNumber } from '../core/validate.js';
import { expectData, expectPositive, expectSize } from './validate.js';

/**
 * PANDA's compactness loss: mean over the batch of ||f_i - centre||^2 / d (the mean of
 * (f - centre)^2 over all elements). features [n, d], centre [d] (a constant).
 * @returns the loss and its gradient with respect to the features [n, d].
 */
export async function compactnessLoss(features: Float32Array, centre: Float32Array, n: number, d: number): Promise<{ loss: number; grad: Float32Array }> {
  const [nn, dd] = [expectSize(n, 'n'), expectSize(d, 'd')];
  const f = expectData(features, 'features', nn * dd);
  const c = expectData(centre, 'centre', dd);
  return callNative(() => native().trainCompactnessLoss(f, c, [nn, dd]));
}

export interface CosineScale {
  /** [n, c, h, w] of one scale, flattened per sample (teacher). */
  a: Float32Array;
  /** The same size (student). */
  b: Float32Array;
  /** Samples in the batch. */
  n: number;
}

/**
 * Reverse Distillation's loss_function: sum over scales of the batch mean of
 * 1 - cos(a_i, b_i) between each sample's flattened maps (torch's F.cosine_similarity, eps
 * 1e-8 on each norm).
 * @returns the loss and, per scale, the gradients with respect to a and b.
 */
export async function cosineMapLoss(scales: readonly CosineScale[], options: { eps?: number } = {}): Promise<{ loss: number; grads: { a: Float32Array; b: Float32Array }[] }> {
  if (!Array.isArray(scales) || scales.length === 0)
    throw new TypeError(`scales must be a non-empty array of { a, b, n }, received ${describe(scales)}`);
  const eps = options.eps === undefined ? 1e-8 : expectPositive(options.eps, 'options.eps');
  const checked = scales.map((s, i) => {
    const n = expectSize(s?.n, `scales[${i}].n`);
    const a = s.a;
    if (!(a instanceof Float32Array)) throw new TypeError(`scales[${i}].a must be a Float32Array, received ${describe(a)}`);
    if (a.length === 0 || a.length % n !== 0)
      throw new RangeError(`scales[${i}].a must hold n = ${n} equal non-empty samples, received ${a.length} values`);
    const b = expectData(s.b, `scales[${i}].b`, a.length);
    return { a, b, n, m: a.length / n };
  });
  let loss = 0;
  const grads: { a: Float32Array; b: Float32Array }[] = [];
  for (const s of checked) {
    const r = await callNative(() => native().trainCosineMapLoss(s.a, s.b, [s.n, s.m], eps));
    loss += r.loss;
    grads.push({ a: r.gradA, b: r.gradB });
  }
  return { loss, grads };
}

/**
 * PANDA's EWC penalty for one parameter tensor: lambda / 2 * sum fisher * (theta - thetaStar)^2
 * (sum the losses over tensors). lambda defaults to PANDA's 1e4.
 * @returns the penalty and its gradient with respect to theta.
 */
export async function ewcPenalty(theta: Float32Array, thetaStar: Float32Array, fisher: Float32Array, lambda = 1e4): Promise<{ loss: number; grad: Float32Array }> {
  if (!(theta instanceof Float32Array)) throw new TypeError(`theta must be a Float32Array, received ${describe(theta)}`);
  if (theta.length === 0) throw new RangeError('theta must not be empty');
  const s = expectData(thetaStar, 'thetaStar', theta.length);
  const f = expectData(fisher, 'fisher', theta.length);
  const l = expectNumber(lambda, 'lambda', { min: 0 });
  return callNative(() => native().trainEwcPenalty(theta, s, f, l));
}
