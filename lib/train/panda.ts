/**
 * PANDA's fine-tuning (Reiss et al., the original code's behaviour): the stem, layer1 and
 * layer2 (stage1 and stage2 for v2 archs) stay frozen, the rest of the network up to its last
 * tap trains, BN running statistics stay frozen (eval mode). Features are the globally
 * average-pooled last tap; the centre is the mean of the *initial* training features, fixed;
 * the loss is the mean over the batch of ||f - c||^2 / d; clip_grad_norm_(1e-3) before SGD (lr
 * 1e-2, momentum 0.9, weight decay 5e-5); batches of 32, shuffled with a seed; 15 epochs. A final
 * batch of one image works (the original crashes there). With `ewc`, PANDA's EWC penalty joins
 * the loss. Because the frozen prefix and frozen BN make each image's layer2 output constant,
 * it is computed once (`cachePrefix`, default on; exact: the same steps as recomputing it).
 *
 * Scoring (DN2 kNN over the fine-tuned features) is the caller's: see knnSearch.
 *
 * @example
 * const net = new TrainResnet('resnet18');  // then setTensor(name, ...) from the weights
 * const { trainFeatures, losses } = await pandaFineTune(net, batch, [n, 3, 224, 224], { epochs: 15 });
 */
import { mulberry32 } from '../core/random.js';
import { AnomalensError } from '../core/errors.js';
import { expectBoolean, expectFloat32Array, expectInteger, expectNumber, expectObject } from '../core/validate.js';
import { globalAvgPoolForward } from './ops.js';
import type { SgdOptions } from './params.js';
import type { ResnetTap, TrainResnet } from './resnet.js';
import { PANDA_SGD, compactnessStep } from './step.js';
import { expectNchw } from './validate.js';

export interface PandaOptions {
  /** Default 15. */
  epochs?: number;
  /** Default 32. */
  batchSize?: number;
  /** Shuffle seed; default 0. */
  seed?: number;
  /** Default PANDA's { lr: 1e-2, momentum: 0.9, weightDecay: 5e-5 }. */
  sgd?: SgdOptions;
  /** clip_grad_norm_'s max norm, default 1e-3; null: none. */
  clip?: number | null;
  /** Compute the frozen prefix's output once per image (default true). */
  cachePrefix?: boolean;
  /**
   * The images are already this tap's output (the frozen prefix computed by the caller, e.g.
   * the Detector's inference backbone): the prefix never runs. Must be pandaCacheTap(net).
   */
  startTap?: ResnetTap;
  /**
   * Called after every epoch (awaited before the next one starts) with the epoch (1-based),
   * the fixed centre and the training inputs as the network sees them (`inputs` from
   * `inputTap`): for checkpoints and sample-wise early stopping's snapshots.
   */
  onEpochEnd?: (epoch: number, state: { centre: Float32Array; inputs: Float32Array; inputShape: [number, number, number, number]; inputTap: 'input' | ResnetTap }) => Promise<void> | void;
  /** Called after every step with the steps done and the total. */
  onStep?: (done: number, total: number) => void;
  /** EWC: lambda (PANDA's 1e4) over the parameters anchored with net.params.setEwcAnchor. */
  ewcLambda?: number;
  /** Called after every epoch with its mean loss (per image, as the original's run_epoch). */
  onEpoch?: (epoch: number, loss: number) => void;
  /** Stops between steps; the promise rejects with an AbortError-named AnomalensError. */
  signal?: AbortSignal;
}

export interface PandaResult {
  /** The fixed centre [d]: mean of the initial training features. */
  centre: Float32Array;
  /** Mean loss per epoch. */
  losses: number[];
  /** The fine-tuned pooled features of the training images [n, d], for the kNN bank. */
  trainFeatures: Float32Array;
}

/** The parameter-name prefixes PANDA freezes: stem, layer1 and layer2 (v2: stage1, stage2). */
export function pandaFrozenPrefixes(net: TrainResnet): string[] {
  const p = net.v2Prefix;
  return net.arch.endsWith('_v2')
    ? [`${p}conv0`, `${p}batchnorm`, `${p}stage1_`, `${p}stage2_`]
    : ['conv1.', 'bn1.', 'layer1.', 'layer2.'];
}

/** The tap whose output is constant under PANDA's freezing (layer2 / stage2). */
export function pandaCacheTap(net: TrainResnet): ResnetTap {
  return net.arch.endsWith('_v2') ? 'stage2' : 'layer2';
}

function permutation(n: number, next: () => number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

function gather(src: Float32Array, per: number, idx: readonly number[]): Float32Array {
  const out = new Float32Array(idx.length * per);
  idx.forEach((k, i) => out.set(src.subarray(k * per, (k + 1) * per), i * per));
  return out;
}

/** Pooled last-tap features [n, d] of images [n, c, h, w] (from `startTap` when given), in batches. */
export async function pooledFeatures(net: TrainResnet, x: Float32Array, shape: readonly [number, number, number, number], batchSize = 32, startTap: 'input' | ResnetTap = 'input'): Promise<Float32Array> {
  const [n, c, h, w] = expectNchw(shape, 'shape');
  const per = c * h * w;
  const d = net.tapShape(net.lastTap, 1, 1, 1)[1];
  const out = new Float32Array(n * d);
  for (let b = 0; b < n; b += batchSize) {
    const m = Math.min(batchSize, n - b);
    const y = await net.forward(x.subarray(b * per, (b + m) * per), [m, c, h, w], { startTap });
    net.release();
    out.set(await globalAvgPoolForward(y, [m, d, y.length / (m * d), 1]), b * d);
  }
  return out;
}

export async function pandaFineTune(net: TrainResnet, images: Float32Array, shape: readonly [number, number, number, number], options: PandaOptions = {}): Promise<PandaResult> {
  const s = expectNchw(shape, 'shape');
  const [n, c, h, w] = s;
  const x = expectFloat32Array(images, 'images', n * c * h * w);
  const o = expectObject(options, 'options') as PandaOptions;
  const epochs = o.epochs === undefined ? 15 : expectInteger(o.epochs, 'options.epochs', { min: 0 });
  const batchSize = o.batchSize === undefined ? 32 : expectInteger(o.batchSize, 'options.batchSize', { min: 1 });
  const seed = o.seed === undefined ? 0 : expectInteger(o.seed, 'options.seed', { min: 0 });
  const cache = o.cachePrefix === undefined ? true : expectBoolean(o.cachePrefix, 'options.cachePrefix');
  const clip = o.clip === null ? null : o.clip === undefined ? 1e-3 : expectNumber(o.clip, 'options.clip', { min: 0 });
  const ewcLambda = o.ewcLambda === undefined ? undefined : expectNumber(o.ewcLambda, 'options.ewcLambda', { min: 0 });
  for (const f of ['onEpoch', 'onEpochEnd', 'onStep'] as const)
    if (o[f] !== undefined && typeof o[f] !== 'function') throw new TypeError(`options.${f} must be a function`);
  const given = o.startTap === undefined ? undefined : (o.startTap as ResnetTap);
  if (given !== undefined && given !== pandaCacheTap(net))
    throw new RangeError(`options.startTap must be '${pandaCacheTap(net)}' (the output of PANDA's frozen prefix for ${net.arch}), received '${String(given)}'`);
  const signal = o.signal as AbortSignal | undefined;
  const sgd = (o.sgd as SgdOptions | undefined) ?? PANDA_SGD;

  for (const p of pandaFrozenPrefixes(net)) net.params.freeze(p);
  const d = net.tapShape(net.lastTap, 1, 1, 1)[1];
  const centreFeatures = await pooledFeatures(net, x, s, batchSize, given ?? 'input');
  const centre = new Float32Array(d);
  {
    const acc = new Float64Array(d);
    for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) acc[j] += centreFeatures[i * d + j];
    for (let j = 0; j < d; j++) centre[j] = acc[j] / n;
  }

  // The frozen prefix's output, once per image (exact: BN frozen, prefix frozen).
  let inputs = x;
  let inShape: [number, number, number, number] = s;
  let startTap: 'input' | ResnetTap = given ?? 'input';
  if (cache && given === undefined) {
    const tap = pandaCacheTap(net);
    const prefix = new (net.constructor as new (arch: TrainResnet['arch'], o: { lastTap: ResnetTap }) => TrainResnet)(net.arch, { lastTap: tap });
    for (const name of prefix.tensorNames()) prefix.setTensor(name, net.tensor(name));
    prefix.params.freeze('');
    inShape = prefix.tapShape(tap, n, h, w);
    const per = inShape[1] * inShape[2] * inShape[3];
    inputs = new Float32Array(n * per);
    for (let b = 0; b < n; b += batchSize) {
      const m = Math.min(batchSize, n - b);
      inputs.set(await prefix.forward(x.subarray(b * c * h * w, (b + m) * c * h * w), [m, c, h, w]), b * per);
    }
    startTap = tap;
  }
  const per = inShape[1] * inShape[2] * inShape[3];

  const next = mulberry32(seed);
  const losses: number[] = [];
  const stepsPerEpoch = Math.ceil(n / batchSize);
  for (let e = 0; e < epochs; e++) {
    const order = permutation(n, next);
    let sum = 0;
    for (let b = 0; b < n; b += batchSize) {
      if (signal?.aborted) throw new AnomalensError('ERR_ABORTED', 'PANDA fine-tuning was aborted');
      const idx = order.slice(b, b + batchSize);
      const batch = gather(inputs, per, idx);
      const r = await compactnessStep(net, batch, [idx.length, inShape[1], inShape[2], inShape[3]], centre, {
        startTap, clip, sgd, ewcLambda,
      });
      if (!Number.isFinite(r.loss))
        throw new AnomalensError('ERR_INVALID_ARGUMENT', `PANDA's loss is ${r.loss} at epoch ${e + 1}, step ${b / batchSize + 1}: training diverged (lower the learning rate) or the inputs hold non-finite values`);
      sum += r.loss * idx.length; // the original's total_loss += loss * batch size
      o.onStep?.(e * stepsPerEpoch + b / batchSize + 1, epochs * stepsPerEpoch);
    }
    losses.push(sum / n);
    o.onEpoch?.(e, sum / n);
    await o.onEpochEnd?.(e + 1, { centre, inputs, inputShape: inShape, inputTap: startTap });
  }
  const trainFeatures = await pooledFeatures(net, inputs, [n, inShape[1], inShape[2], inShape[3]], batchSize, startTap);
  return { centre, losses, trainFeatures };
}
