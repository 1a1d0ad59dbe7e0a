/**
 * Reverse Distillation's trainable part, the original code's (hq-deng/RD4AD) one-class
 * bottleneck `BN_layer` and student decoder `de_resnet`, parameters and BN buffers under its
 * checkpoint's names flattened (`bn.conv1.weight`, `decoder.layer3.5.bn2.running_var`, ...;
 * `bn.conv4` / `bn.bn4` are present and never used, as in the original). `forward` takes the
 * teacher's three taps and returns the decoder's three outputs, finest first, shaped as the
 * taps; `backward` writes every parameter's gradient; `trainStep` is the original main.py's
 * step: forward with BN in training mode, loss_function, backward, Adam.
 *
 * @example
 * const rd = new TrainRd('wide_resnet50_2');
 * rd.initialize(seed);                               // the original's initialisation
 * const { loss } = await rd.trainStep([f1, f2, f3]); // teacher taps of one batch
 * const [s1, s2, s3] = await rd.forward([f1, f2, f3]);
 */
import type { NativeTrainRd } from '../core/addon.js';
import type { Tensor4 } from '../nn/backbone.js';
import { callNative, callNativeSync } from '../core/errors.js';
import { native } from '../core/native.js';
import { hash32 } from '../methods/seeded.js';
import { expectBoolean, expectFloat32Array, expectInteger, expectNumber, expectObject, expectOneOf, expectString } from '../core/validate.js';
import { paramsView, type AdamOptions, type TrainParams } from './params.js';

export const RD_TEACHERS = ['resnet18', 'resnet34', 'resnet50', 'resnet50_v2', 'wide_resnet50_2'] as const;
export type RdTeacher = (typeof RD_TEACHERS)[number];

/** The original main.py's optimiser: Adam(lr=0.005, betas=(0.5, 0.999)), no weight decay. */
export const RD_ADAM: Readonly<Required<AdamOptions>> = Object.freeze({ lr: 0.005, betas: [0.5, 0.999] as const, eps: 1e-8, weightDecay: 0 });

export interface RdForwardOptions {
  /** BN in training mode (batch statistics; running statistics updated). Default false. */
  bnTrain?: boolean;
  /** Keep the activations for backward(). Default false. */
  record?: boolean;
}

export interface RdStepResult {
  /** The sum over the scales. */
  loss: number;
  /** Per scale, finest first: the mean over the batch of 1 - cos. */
  scaleLosses: [number, number, number];
  /** Wall seconds of the step's parts. */
  seconds: RdStepSeconds;
}

export interface RdStepSeconds {
  forward: number;
  loss: number;
  backward: number;
  adam: number;
}

export class TrainRd {
  readonly #n: NativeTrainRd;
  readonly teacher: RdTeacher;
  /** Conv weights and BN weight / bias, `bn.*` then `decoder.*`. */
  readonly params: TrainParams;
  /** BN running_mean / running_var. */
  readonly buffers: TrainParams;

  constructor(teacher: RdTeacher) {
    this.teacher = expectOneOf(teacher, 'teacher', RD_TEACHERS);
    const Ctor = native().TrainRd;
    this.#n = callNativeSync(() => new Ctor(this.teacher));
    this.params = paramsView(this.#n, 'params');
    this.buffers = paramsView(this.#n, 'buffers');
  }

  /**
   * The original's initialisation, seeded: Conv2d weights kaiming_normal_(mode='fan_out',
   * nonlinearity='relu') (std sqrt(2 / (out * kh * kw))); BN weight 1, bias 0, running mean 0,
   * variance 1; ConvTranspose2d weights keep torch's default, kaiming_uniform_(a=sqrt(5)), i.e.
   * uniform in +-1 / sqrt(fan_in) with fan_in = size(1) * kh * kw (the original's init loop
   * skips them). Element i of tensor `name` comes from hash32(i, seed ^ fnv1a(name)).
   */
  initialize(seed = 0): void {
    const sd = expectInteger(seed, 'seed', { min: 0, max: 0xffffffff });
    for (const name of this.params.names()) {
      const shape = this.params.info(name).shape;
      const count = shape.reduce((a, b) => a * b, 1);
      const out = new Float32Array(count);
      const key = (sd ^ fnv1a(name)) >>> 0;
      const u = (i: number) => (hash32(i, key) + 0.5) / 4294967296;
      if (shape.length === 1) {
        out.fill(name.endsWith('.weight') ? 1 : 0);
      } else if (shape[2] === 2 && shape[3] === 2) {
        // The only 2x2 kernels are the decoder's ConvTranspose2d ([in, out, 2, 2]).
        const bound = 1 / Math.sqrt(shape[1] * shape[2] * shape[3]);
        for (let i = 0; i < count; i++) out[i] = (2 * u(i) - 1) * bound;
      } else {
        const std = Math.sqrt(2 / (shape[0] * shape[2] * shape[3]));
        for (let i = 0; i < count; i += 2) {
          // Box-Muller on two hashed uniforms.
          const r = Math.sqrt(-2 * Math.log(u(i))) * std;
          const t = 2 * Math.PI * u(i + 1);
          out[i] = r * Math.cos(t);
          if (i + 1 < count) out[i + 1] = r * Math.sin(t);
        }
      }
      this.params.setValue(name, out);
    }
    for (const name of this.buffers.names()) {
      const c = this.buffers.info(name).shape[0];
      this.buffers.setValue(name, new Float32Array(c).fill(name.endsWith('running_var') ? 1 : 0));
    }
  }

  /** Channels of the teacher taps the student reads and reproduces, shallow first. */
  tapChannels(): [number, number, number] {
    return [0, 1, 2].map((i) => this.#n.tapChannels(i)) as [number, number, number];
  }

  /** Every tensor name: parameters, then buffers. */
  tensorNames(): string[] {
    return [...this.params.names(), ...this.buffers.names()];
  }

  /** Sets a parameter or buffer by name (copied). */
  setTensor(name: string, value: Float32Array): void {
    expectString(name, 'name');
    expectFloat32Array(value, 'value');
    (this.params.names().includes(name) ? this.params : this.buffers).setValue(name, value);
  }

  /** A copy of a parameter or buffer. */
  tensor(name: string): Float32Array {
    expectString(name, 'name');
    return this.params.names().includes(name) ? this.params.value(name) : this.buffers.value(name);
  }

  shape(name: string): number[] {
    expectString(name, 'name');
    return (this.params.names().includes(name) ? this.params : this.buffers).info(name).shape;
  }

  /** Floats kept for the backward since the last recorded forward. */
  keptFloats(): number {
    return this.#n.keptFloats();
  }

  #taps(features: readonly Tensor4[]): { f: Float32Array[]; n: number; h: number[]; w: number[] } {
    if (!Array.isArray(features) || features.length !== 3)
      throw new TypeError(`features must be an array of the 3 teacher taps, received ${Array.isArray(features) ? `${features.length} entries` : typeof features}`);
    const ch = this.tapChannels();
    const n = features[0]?.shape?.[0];
    const f: Float32Array[] = [];
    const h: number[] = [];
    const w: number[] = [];
    features.forEach((t, i) => {
      expectObject(t, `features[${i}]`);
      if (!Array.isArray(t.shape) || t.shape.length !== 4) throw new TypeError(`features[${i}].shape must be [n, c, h, w]`);
      const [tn, c, th, tw] = t.shape;
      if (tn !== n) throw new RangeError(`features[${i}] has batch ${tn}, features[0] has ${n}`);
      if (c !== ch[i]) throw new RangeError(`features[${i}] must have ${ch[i]} channels for a ${this.teacher} teacher, received ${c}`);
      f.push(expectFloat32Array(t.data, `features[${i}].data`, tn * c * th * tw));
      h.push(th);
      w.push(tw);
    });
    if (h[0] !== 2 * h[1] || h[1] !== 2 * h[2] || w[0] !== 2 * w[1] || w[1] !== 2 * w[2] || h[2] % 2 || w[2] % 2)
      throw new RangeError(
        `the teacher taps must halve in size from one to the next and the deepest must have even sides (an input size that is a multiple of 32), received ${h.map((v, i) => `${v}x${w[i]}`).join(', ')}`,
      );
    return { f, n, h, w };
  }

  /** The decoder's outputs for the teacher taps, finest first, each shaped as its tap. */
  async forward(features: readonly Tensor4[], options: RdForwardOptions = {}): Promise<[Tensor4, Tensor4, Tensor4]> {
    const t = this.#taps(features);
    const o = expectObject(options, 'options');
    const bnTrain = o.bnTrain === undefined ? false : expectBoolean(o.bnTrain, 'options.bnTrain');
    const record = o.record === undefined ? false : expectBoolean(o.record, 'options.record');
    const out = await callNative(() => this.#n.forward(t.f, t.n, t.h, t.w, bnTrain, record));
    return out.map((data, i) => ({ data, shape: [...features[i].shape] })) as [Tensor4, Tensor4, Tensor4];
  }

  /** Back-propagates the gradients of the last recorded forward's outputs into params' gradients. */
  async backward(grads: readonly Float32Array[]): Promise<void> {
    if (!Array.isArray(grads) || grads.length !== 3) throw new TypeError('grads must be an array of 3 Float32Arrays');
    const g = grads.map((v, i) => expectFloat32Array(v, `grads[${i}]`));
    await callNative(() => this.#n.backward(g));
  }

  /**
   * One step of the original's training on a batch of teacher taps (BN in training mode).
   * `loss`: 'map' (default, the original code's loss_function over each sample's flattened map)
   * or 'pixel' (the paper's per-pixel cosine, averaged over positions).
   */
  async trainStep(features: readonly Tensor4[], adam: AdamOptions = RD_ADAM, loss: 'map' | 'pixel' = 'map'): Promise<RdStepResult> {
    const mode = expectOneOf(loss, 'loss', ['map', 'pixel'] as const);
    const t = this.#taps(features);
    const o = expectObject(adam, 'adam');
    const lr = o.lr === undefined ? 1e-3 : expectNumber(o.lr, 'adam.lr', { min: 0 });
    let betas: readonly [number, number] = [0.9, 0.999];
    if (o.betas !== undefined) {
      if (!Array.isArray(o.betas) || o.betas.length !== 2) throw new TypeError('adam.betas must be a [beta1, beta2] pair');
      betas = [expectNumber(o.betas[0], 'adam.betas[0]', { min: 0, max: 0.999999999 }), expectNumber(o.betas[1], 'adam.betas[1]', { min: 0, max: 0.999999999 })];
    }
    const eps = o.eps === undefined ? 1e-8 : expectNumber(o.eps, 'adam.eps', { min: 0 });
    const wd = o.weightDecay === undefined ? 0 : expectNumber(o.weightDecay, 'adam.weightDecay', { min: 0 });
    const r = await callNative(() => this.#n.trainStep(t.f, t.n, t.h, t.w, lr, betas[0], betas[1], eps, wd, mode === 'pixel'));
    return { loss: r.loss, scaleLosses: r.scaleLosses as [number, number, number], seconds: r.seconds };
  }
}

/** FNV-1a of a string's UTF-8 bytes (the per-tensor seed). */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * The paper's per-pixel loss for one scale: the mean over the batch and the positions of
 * 1 - cos over channels (torch's F.cosine_similarity(dim=1, eps)). a (teacher), b (student):
 * [n, c, h, w]. Returns the loss and both gradients.
 * @example const { loss, gradB } = await cosinePixelLoss(t, s, [16, 256, 64, 64]);
 */
export async function cosinePixelLoss(a: Float32Array, b: Float32Array, shape: readonly [number, number, number, number], options: { eps?: number } = {}): Promise<{ loss: number; gradA: Float32Array; gradB: Float32Array }> {
  if (!Array.isArray(shape) || shape.length !== 4) throw new TypeError('shape must be [n, c, h, w]');
  const [n, c, h, w] = shape.map((v, i) => expectInteger(v, `shape[${i}]`, { min: 1 }));
  const da = expectFloat32Array(a, 'a', n * c * h * w);
  const db = expectFloat32Array(b, 'b', n * c * h * w);
  const eps = options.eps === undefined ? 1e-8 : expectNumber(options.eps, 'options.eps', { min: Number.MIN_VALUE });
  return callNative(() => native().trainCosinePixelLoss(da, db, [n, c, h * w], eps));
}
