/**
 * A trainable torchvision ResNet built from the training ops, parameters and BN buffers by
 * their state-dict names. `forward` runs up to `lastTap`, keeping only what the backward needs
 * from the first unit holding a trainable parameter on (frozen prefixes run forward-only);
 * `backward` writes the trainable parameters' gradients into `params`, whose optimiser steps
 * then update them. BN runs in training mode (`bnTrain: true`, torch's model.train(), running
 * statistics updated) or frozen (model.eval()).
 *
 * @example
 * const net = new TrainResnet('resnet18', { lastTap: 'layer4' });
 * for (const [name, t] of Object.entries(weights)) net.setTensor(name, t);
 * for (const p of ['conv1.', 'bn1.', 'layer1.', 'layer2.']) net.params.freeze(p);
 * const out = await net.forward(batch, [32, 3, 224, 224]);
 * await net.backward(dOut);
 * await net.params.sgdStep({ lr: 1e-2, momentum: 0.9, weightDecay: 5e-5 });
 */
import { callNative, callNativeSync } from '../core/errors.js';
import type { NativeTrainResnet } from '../core/addon.js';
import { native } from '../core/native.js';
import { expectBoolean, expectFloat32Array, expectObject, expectOneOf, expectString } from '../core/validate.js';
import { paramsView, type TrainParams } from './params.js';
import { expectNchw, product } from './validate.js';

export const TRAINABLE_ARCHS = [
  'resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152', 'wide_resnet50_2', 'wide_resnet101_2',
  'resnet18_v2', 'resnet34_v2', 'resnet50_v2', 'resnet101_v2', 'resnet152_v2',
] as const;
export type TrainableArch = (typeof TRAINABLE_ARCHS)[number];
/** torchvision's taps (v1 archs) and the ONNX Model Zoo's (v2 archs). */
export const RESNET_TAPS = ['layer1', 'layer2', 'layer3', 'layer4', 'stage1', 'stage2', 'stage3', 'stage4'] as const;
export type ResnetTap = (typeof RESNET_TAPS)[number];
/** The initializer-name prefix of each ONNX Model Zoo v2 model (Gluon's model counter). */
export const V2_PREFIXES: Readonly<Record<string, string>> = Object.freeze({
  resnet18_v2: 'resnetv22_', resnet34_v2: 'resnetv23_', resnet50_v2: 'resnetv24_', resnet101_v2: 'resnetv25_',
  resnet152_v2: 'resnetv27_',
});

export interface ResnetForwardOptions {
  /** BN in training mode (batch statistics; running statistics updated). Default false. */
  bnTrain?: boolean;
  /** Where x comes in: 'input' (the image, default) or a tap whose output x is (the constant-prefix cache). */
  startTap?: 'input' | ResnetTap;
}

let nativeOf: (net: TrainResnet) => NativeTrainResnet;

/** @internal ResnetForwardOptions checked, defaults applied (forward, lib/train/step.ts). */
export function forwardOptions(o: ResnetForwardOptions): { bnTrain: boolean; startTap: 'input' | ResnetTap } {
  return {
    bnTrain: o.bnTrain === undefined ? false : expectBoolean(o.bnTrain, 'options.bnTrain'),
    startTap: o.startTap === undefined ? 'input' : expectOneOf(o.startTap, 'options.startTap', ['input', ...RESNET_TAPS]),
  };
}

/** @internal The native network of a TrainResnet: lib/train/step.ts's one-call step. */
export function nativeResnet(net: TrainResnet): NativeTrainResnet {
  if (!(net instanceof TrainResnet)) throw new TypeError('net must be a TrainResnet');
  return nativeOf(net);
}

export class TrainResnet {
  static {
    nativeOf = (net) => net.#n;
  }
  readonly #n: NativeTrainResnet;
  /** Conv weights, BN weight / bias, in torch's named_parameters() order. */
  readonly params: TrainParams;
  /** BN running_mean / running_var. */
  readonly buffers: TrainParams;
  readonly arch: TrainableArch;
  readonly lastTap: ResnetTap;

  /**
   * @param options.lastTap the deepest tap (default layer4, or stage4 for v2 archs).
   * @param options.v2Prefix v2 initializer-name prefix (default the arch's, V2_PREFIXES).
   */
  constructor(arch: TrainableArch, options: { lastTap?: ResnetTap; v2Prefix?: string } = {}) {
    this.arch = expectOneOf(arch, 'arch', TRAINABLE_ARCHS);
    const o = expectObject(options, 'options');
    const v2 = this.arch.endsWith('_v2');
    const taps = RESNET_TAPS.filter((t) => t.startsWith(v2 ? 'stage' : 'layer'));
    this.lastTap = o.lastTap === undefined ? taps[3] : expectOneOf(o.lastTap, 'options.lastTap', taps);
    const prefix = o.v2Prefix === undefined ? (V2_PREFIXES[this.arch] ?? '') : expectString(o.v2Prefix, 'options.v2Prefix');
    const Ctor = native().TrainResnet;
    this.#n = callNativeSync(() => new Ctor(this.arch, this.lastTap, prefix));
    this.params = paramsView(this.#n, 'params');
    this.buffers = paramsView(this.#n, 'buffers');
  }

  /** Every tensor name the network holds: parameters, then buffers. */
  tensorNames(): string[] {
    return [...this.params.names(), ...this.buffers.names()];
  }

  /** Sets a parameter or buffer by its state-dict name (copied). */
  setTensor(name: string, value: Float32Array): void {
    expectString(name, 'name');
    expectFloat32Array(value, 'value');
    const store = this.params.names().includes(name) ? this.params : this.buffers;
    store.setValue(name, value);
  }

  /** A copy of a parameter or buffer. */
  tensor(name: string): Float32Array {
    expectString(name, 'name');
    return this.params.names().includes(name) ? this.params.value(name) : this.buffers.value(name);
  }

  /** [n, c, h, w] of a tap's output for an h x w image ('input': the image itself). */
  tapShape(tap: 'input' | ResnetTap, n: number, h: number, w: number): [number, number, number, number] {
    return callNativeSync(() => this.#n.tapShape(tap, n, h, w)) as [number, number, number, number];
  }

  /** Floats kept for the backward since the last forward. */
  keptFloats(): number {
    return this.#n.keptFloats();
  }

  /** Seconds per '<stage> <op> forward|backward' since the last resetProfile(): where a step's time goes. */
  profile(): Record<string, number> {
    return callNativeSync(() => this.#n.profile());
  }
  resetProfile(): void {
    callNativeSync(() => this.#n.resetProfile());
  }

  /** Drops the activations the last forward kept (a forward used for features only). */
  release(): void {
    callNativeSync(() => this.#n.release());
  }

  /** The initializer-name prefix of a v2 arch ('' for torchvision archs). */
  get v2Prefix(): string {
    return V2_PREFIXES[this.arch] ?? '';
  }

  /** Runs x [n, c, h, w] to lastTap's output. */
  async forward(x: Float32Array, shape: readonly [number, number, number, number], options: ResnetForwardOptions = {}): Promise<Float32Array> {
    const s = expectNchw(shape, 'shape');
    const data = expectFloat32Array(x, 'x', product(s));
    const { bnTrain, startTap } = forwardOptions(expectObject(options, 'options'));
    return callNative(() => this.#n.forward(data, s, bnTrain, startTap));
  }

  /** Back-propagates dOut (the gradient of the last forward's output) into params' gradients. */
  async backward(dOut: Float32Array): Promise<void> {
    const d = expectFloat32Array(dOut, 'dOut');
    await callNative(() => this.#n.backward(d));
  }
}
