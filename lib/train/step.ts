/**
 * One optimisation step of PANDA's compactness fine-tuning on a given normalised batch, as the
 * original's run_epoch does it: features = global average pool of the last tap, loss =
 * compactness to the fixed centre, backward, clip_grad_norm_(clip) over every parameter, then
 * SGD (whose weight decay is added after the clipping, unclipped, as torch does). The network
 * stays in eval mode (BN frozen) unless `bnTrain` is set. With `ewcLambda`, PANDA's EWC penalty
 * joins the loss (and its gradient the gradients) before the clipping, as in the original. Read back the loss, the features, and
 * by name the gradients (clipped), parameters and optimiser state (net.params).
 *
 * @example
 * const { loss } = await compactnessStep(net, layer2Out, [32, 512, 28, 28], centre, { startTap: 'layer2' });
 */
import { callNative } from '../core/errors.js';
import { expectFloat32Array, expectNumber, expectObject } from '../core/validate.js';
import { sgdArguments, type SgdOptions } from './params.js';
import { forwardOptions, nativeResnet, type ResnetTap, type TrainResnet } from './resnet.js';
import { expectNchw, product } from './validate.js';

export interface CompactnessStepOptions {
  /** Where the batch comes in (default 'input': images); a tap: its cached output. */
  startTap?: 'input' | ResnetTap;
  /** clip_grad_norm_'s max norm; default PANDA's 1e-3; null: no clipping. */
  clip?: number | null;
  /** Default PANDA's { lr: 1e-2, momentum: 0.9, weightDecay: 5e-5 }. */
  sgd?: SgdOptions;
  /** BN in training mode; default false (PANDA keeps the model in eval mode). */
  bnTrain?: boolean;
  /** PANDA's EWC variant: lambda of the penalty over the parameters with an anchor
   * (net.params.setEwcAnchor), added to the loss before clipping; default none. */
  ewcLambda?: number;
}

export interface CompactnessStepResult {
  loss: number;
  /** The pooled features [n, c] the loss was computed on (before the step). */
  features: Float32Array;
  /** Total gradient norm before clipping (null without clipping). */
  gradNorm: number | null;
}

export const PANDA_SGD: Readonly<SgdOptions> = Object.freeze({ lr: 1e-2, momentum: 0.9, weightDecay: 5e-5 });

export async function compactnessStep(
  net: TrainResnet,
  batch: Float32Array,
  shape: readonly [number, number, number, number],
  centre: Float32Array,
  options: CompactnessStepOptions = {},
): Promise<CompactnessStepResult> {
  const n = nativeResnet(net);
  const s = expectNchw(shape, 'shape');
  const x = expectFloat32Array(batch, 'batch', product(s));
  const c = expectFloat32Array(centre, 'centre', net.tapShape(net.lastTap, 1, 1, 1)[1]);
  const o = expectObject(options, 'options');
  const clip = o.clip === null ? null : o.clip === undefined ? 1e-3 : expectNumber(o.clip, 'options.clip', { min: 0 });
  if (clip === 0) throw new RangeError('options.clip must be > 0 (null: no clipping), received 0');
  const { bnTrain, startTap } = forwardOptions(o);
  const ewc = o.ewcLambda === undefined ? null : expectNumber(o.ewcLambda, 'options.ewcLambda', { min: 0 });
  const sgd = sgdArguments((o.sgd as SgdOptions | undefined) ?? PANDA_SGD, 'options.sgd');
  // One native call: forward, pooling, loss, backward, EWC, clipping and SGD back to back.
  return callNative(() => n.compactnessStep(x, s, c, bnTrain, startTap, clip, ewc, ...sgd));
}
