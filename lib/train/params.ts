/**
 * Trainable parameters by their state-dict names, each with its value, gradient and optimiser
 * state (torch's names: `momentum_buffer`, `exp_avg`, `exp_avg_sq`), and the optimisers with
 * torch.optim's exact update rules (torch 1.13, float32). Freezing is by name prefix; a frozen
 * parameter is skipped by the optimisers and the clipping, as one with requires_grad = False.
 *
 * @example
 * const ps = new TrainParams();
 * ps.add('fc.weight', [10, 512], w);
 * ps.setGrad('fc.weight', dw);
 * await ps.clipGradNorm(1e-3);
 * await ps.sgdStep({ lr: 1e-2, momentum: 0.9, weightDecay: 5e-5 });
 */
import { callNative, callNativeSync } from '../core/errors.js';
import type { NativeTrainParams, NativeTrainRd, NativeTrainResnet } from '../core/addon.js';
import { native } from '../core/native.js';
import { expectBoolean, expectFloat32Array, expectInteger, expectNumber, expectObject, expectShape, expectString } from '../core/validate.js';
import { product } from './validate.js';

export interface SgdOptions {
  lr: number;
  /** Default 0. */
  momentum?: number;
  /** Default 0. */
  dampening?: number;
  /** L2 penalty added to the gradient; default 0. */
  weightDecay?: number;
  /** Default false. */
  nesterov?: boolean;
}

export interface AdamOptions {
  /** Default 1e-3. */
  lr?: number;
  /** Default [0.9, 0.999]. */
  betas?: readonly [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** L2 penalty added to the gradient (torch.optim.Adam's form); default 0. */
  weightDecay?: number;
}

export interface ParamInfo {
  shape: number[];
  frozen: boolean;
  hasGrad: boolean;
  /** Adam's step count. */
  step: number;
  stateKeys: string[];
}

const VIEW = Symbol('TrainParams view');

/**
 * @internal SGD options checked as torch.optim.SGD checks them, in the native argument order
 * [lr, momentum, dampening, weightDecay, nesterov] (sgdStep, lib/train/step.ts).
 */
export function sgdArguments(options: SgdOptions, what: string): [number, number, number, number, boolean] {
  const o = expectObject(options, what);
  const lr = expectNumber(o.lr, `${what}.lr`, { min: 0 });
  const momentum = o.momentum === undefined ? 0 : expectNumber(o.momentum, `${what}.momentum`, { min: 0 });
  const dampening = o.dampening === undefined ? 0 : expectNumber(o.dampening, `${what}.dampening`);
  const weightDecay = o.weightDecay === undefined ? 0 : expectNumber(o.weightDecay, `${what}.weightDecay`, { min: 0 });
  const nesterov = o.nesterov === undefined ? false : expectBoolean(o.nesterov, `${what}.nesterov`);
  if (nesterov && (momentum <= 0 || dampening !== 0))
    throw new RangeError(`${what}.nesterov needs ${what}.momentum > 0 and ${what}.dampening 0, as torch.optim.SGD`);
  return [lr, momentum, dampening, weightDecay, nesterov];
}

/** @internal A view of a native network's parameters or buffers (lib/train/resnet.ts, rd.ts). */
export function paramsView(net: NativeTrainResnet | NativeTrainRd, which: 'params' | 'buffers'): TrainParams {
  return new TrainParams({ [VIEW]: { net, which } } as unknown as undefined);
}

export class TrainParams {
  readonly #p: NativeTrainParams;
  /** A new, empty store. */
  constructor(view?: undefined) {
    const Ctor = native().TrainParams;
    const v = (view as unknown as Record<symbol, { net: NativeTrainResnet | NativeTrainRd; which: 'params' | 'buffers' }> | undefined)?.[VIEW];
    this.#p = v ? new Ctor(v.net, v.which) : new Ctor();
  }

  /** Adds a parameter (copied). The name must be new. */
  add(name: string, shape: readonly number[], value: Float32Array): void {
    expectString(name, 'name');
    const s = expectShape(shape, 'shape');
    const v = expectFloat32Array(value, 'value', product(s));
    callNativeSync(() => this.#p.add(name, s, v));
  }
  /** Names in insertion order. */
  names(): string[] {
    return this.#p.names();
  }
  info(name: string): ParamInfo {
    return callNativeSync(() => this.#p.info(expectString(name, 'name')));
  }
  /** A copy of the value. */
  value(name: string): Float32Array {
    return callNativeSync(() => this.#p.value(expectString(name, 'name')));
  }
  /** A copy of the gradient, or null before any was set. */
  grad(name: string): Float32Array | null {
    return callNativeSync(() => this.#p.grad(expectString(name, 'name')));
  }
  /** A copy of an optimiser state tensor (`momentum_buffer`, `exp_avg`, `exp_avg_sq`), or null. */
  state(name: string, key: string): Float32Array | null {
    return callNativeSync(() => this.#p.state(expectString(name, 'name'), expectString(key, 'key')));
  }
  setValue(name: string, value: Float32Array): void {
    expectString(name, 'name');
    expectFloat32Array(value, 'value');
    callNativeSync(() => this.#p.setValue(name, value));
  }
  setGrad(name: string, grad: Float32Array): void {
    expectString(name, 'name');
    expectFloat32Array(grad, 'grad');
    callNativeSync(() => this.#p.setGrad(name, grad));
  }
  setState(name: string, key: string, value: Float32Array): void {
    expectString(name, 'name');
    expectString(key, 'key');
    expectFloat32Array(value, 'value');
    callNativeSync(() => this.#p.setState(name, key, value));
  }
  /**
   * Sets Adam's step count of a parameter (torch's `state['step']`), as a resumed run needs
   * with its `exp_avg` / `exp_avg_sq`: the bias corrections read it.
   */
  setStep(name: string, step: number): void {
    expectString(name, 'name');
    const s = expectInteger(step, 'step', { min: 0, max: 2 ** 24 });
    callNativeSync(() => this.#p.setStep(name, s));
  }
  /** Freezes every parameter whose name starts with `prefix`; returns how many. */
  freeze(prefix: string): number {
    if (typeof prefix !== 'string') throw new TypeError(`prefix must be a string, received ${typeof prefix}`);
    return callNativeSync(() => this.#p.freeze(prefix));
  }
  unfreeze(prefix: string): number {
    if (typeof prefix !== 'string') throw new TypeError(`prefix must be a string, received ${typeof prefix}`);
    return callNativeSync(() => this.#p.unfreeze(prefix));
  }
  zeroGrad(): void {
    callNativeSync(() => this.#p.zeroGrad());
  }

  /** One torch.optim.SGD step over the trainable parameters that have a gradient. */
  async sgdStep(options: SgdOptions): Promise<void> {
    const a = sgdArguments(options, 'options');
    await callNative(() => this.#p.sgdStep(...a));
  }

  /** One torch.optim.Adam step (amsgrad off) over the trainable parameters that have a gradient. */
  async adamStep(options: AdamOptions = {}): Promise<void> {
    const o = expectObject(options, 'options');
    const lr = o.lr === undefined ? 1e-3 : expectNumber(o.lr, 'options.lr', { min: 0 });
    let betas: [number, number] = [0.9, 0.999];
    if (o.betas !== undefined) {
      if (!Array.isArray(o.betas) || o.betas.length !== 2) throw new TypeError('options.betas must be a [beta1, beta2] pair');
      betas = [expectNumber(o.betas[0], 'options.betas[0]', { min: 0 }), expectNumber(o.betas[1], 'options.betas[1]', { min: 0 })];
      betas.forEach((b, i) => {
        if (b >= 1) throw new RangeError(`options.betas[${i}] must be < 1, received ${b}`);
      });
    }
    const eps = o.eps === undefined ? 1e-8 : expectNumber(o.eps, 'options.eps', { min: 0 });
    const weightDecay = o.weightDecay === undefined ? 0 : expectNumber(o.weightDecay, 'options.weightDecay', { min: 0 });
    await callNative(() => this.#p.adamStep(lr, betas[0], betas[1], eps, weightDecay));
  }

  /**
   * Sets a parameter's EWC anchor: its pretrained value theta* and diagonal Fisher F (states
   * `ewc_star`, `ewc_fisher`), used by addEwcPenalty.
   */
  setEwcAnchor(name: string, thetaStar: Float32Array, fisher: Float32Array): void {
    this.setState(name, 'ewc_star', thetaStar);
    this.setState(name, 'ewc_fisher', fisher);
  }

  /**
   * PANDA's EWC penalty lambda / 2 * sum F (theta - theta*)^2 over the trainable parameters that
   * have an anchor (setEwcAnchor); its gradient lambda * F * (theta - theta*) is added to theirs.
   * lambda defaults to PANDA's 1e4. Resolves the penalty.
   */
  async addEwcPenalty(lambda = 1e4): Promise<number> {
    const l = expectNumber(lambda, 'lambda', { min: 0 });
    return callNative(() => this.#p.addEwcPenalty(l));
  }

  /** torch.nn.utils.clip_grad_norm_: scales every gradient by min(maxNorm / (total + 1e-6), 1). Resolves the total norm. */
  async clipGradNorm(maxNorm: number): Promise<number> {
    const m = expectNumber(maxNorm, 'maxNorm', { min: 0 });
    if (m <= 0) throw new RangeError(`maxNorm must be > 0, received ${m}`);
    return callNative(() => this.#p.clipGradNorm(m));
  }
}
