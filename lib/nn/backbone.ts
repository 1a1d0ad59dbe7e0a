/**
 * ResNet backbones: load weights, extract feature maps at named taps.
 *
 * @example
 * const bb = await Backbone.load({ arch: 'wide_resnet50_2', weights: 'wrn50.safetensors' });
 * const f = await bb.extract(batch, ['layer2', 'layer3']);
 * f.layer2.shape; // [n, 512, h / 8, w / 8]
 */
import type { NativeBackbone } from '../core/addon.js';
import { AnomalensError, callNative, callNativeSync } from '../core/errors.js';
import { native } from '../core/native.js';
import { describe, expectAllFinite, expectFloat32Array, expectObject, expectOneOf, expectShape, expectString } from '../core/validate.js';
import { weightsFor } from '../io/weights.js';

export const TORCHVISION_ARCHS = [
  'resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152', 'wide_resnet50_2', 'wide_resnet101_2',
] as const;
export const ONNX_V2_ARCHS = ['resnet18_v2', 'resnet34_v2', 'resnet50_v2', 'resnet101_v2', 'resnet152_v2'] as const;
export const ARCHS = [...TORCHVISION_ARCHS, ...ONNX_V2_ARCHS] as const;
export type Arch = (typeof ARCHS)[number];

/** Taps in forward order. `stem` is the max-pool output that feeds the first stage. */
export function tapsOf(arch: Arch): string[] {
  const stages = (ONNX_V2_ARCHS as readonly string[]).includes(arch) ? 'stage' : 'layer';
  return ['stem', `${stages}1`, `${stages}2`, `${stages}3`, `${stages}4`, 'avgpool'];
}

/** A float32 NCHW tensor. */
export interface Tensor4 {
  data: Float32Array;
  shape: [number, number, number, number];
}

export interface LayerProfile {
  /** Layer, e.g. `layer2.0.conv2` or `layer3 (to NCHW)`. */
  name: string;
  /** oneDNN implementation that ran it. */
  impl: string;
  ms: number;
  /** Work of the step in GFLOP (convolutions only). */
  gflop: number;
}

export interface BackboneOptions {
  arch: Arch;
  /**
   * Path of a safetensors file (torchvision / timm names, or ONNX Model Zoo v2 names), or an
   * `hf:<owner>/<repo>[@rev]/<file>` spec downloaded once into the cache. Default: the arch's
   * ImageNet weights from the Hub (DEFAULT_WEIGHTS; v2 archs have none and need this option).
   */
  weights?: string;
}

export class Backbone {
  readonly #native: NativeBackbone;
  readonly arch: Arch;
  readonly weights: string;
  /** Every tap of the architecture in forward order. */
  readonly taps: readonly string[];
  /** The taps the loaded weights can produce (a file may hold only the first stages). */
  readonly availableTaps: readonly string[];

  private constructor(nb: NativeBackbone, arch: Arch, weights: string) {
    this.#native = nb;
    this.arch = arch;
    this.weights = weights;
    this.taps = nb.taps();
    this.availableTaps = nb.availableTaps();
  }

  /**
   * Loads weights for `arch`. Missing, unexpected or mis-shaped tensors reject with
   * ERR_WEIGHTS_MISMATCH naming the tensor. Without `weights`, the arch's default weights
   * are downloaded once (ERR_IO naming the URL and the manual fix when that fails).
   */
  static async load(options: BackboneOptions): Promise<Backbone> {
    const o = expectObject(options, 'options');
    const arch = expectOneOf(o.arch, 'options.arch', ARCHS);
    const weights = await weightsFor(arch, o.weights as string | undefined);
    let nb;
    try {
      nb = await callNative(() => native().loadBackbone(arch, weights));
    } catch (err) {
      // Checks of one tensor ("negative variance", a wrong shape) name the tensor; the file too.
      if (err instanceof AnomalensError && !err.message.includes(weights)) {
        const e = new AnomalensError(err.code, `'${weights}': ${err.message}`, { cause: err });
        e.stack = err.stack?.replace(err.message, e.message);
        throw e;
      }
      throw err;
    }
    return new Backbone(nb, arch, weights);
  }

  /** The deepest tap the weights provide. */
  get deepestTap(): string {
    return this.availableTaps[this.availableTaps.length - 1];
  }

  /** Output shape of `tap` for an input of shape [n, 3, h, w]. */
  tapShape(tap: string, inputShape: readonly number[]): [number, number, number, number] {
    this.#checkTap(tap, 'tap');
    const shape = expectShape([...inputShape], 'inputShape', 4);
    return callNativeSync(() => this.#native.tapShape(tap, shape)) as [number, number, number, number];
  }

  /**
   * Runs the forward pass up to the deepest requested tap. `input` is a normalised NCHW batch
   * ([n, 3, h, w]); it is read in place, not copied. Returns one tensor per tap.
   */
  async extract(input: Tensor4, taps: readonly string[]): Promise<Record<string, Tensor4>> {
    return (await this.#run(input, taps, false)).outputs;
  }

  /** extract() that also times every step (slower: it synchronises between layers). */
  async profile(input: Tensor4, taps: readonly string[]): Promise<{ outputs: Record<string, Tensor4>; layers: LayerProfile[] }> {
    const r = await this.#run(input, taps, true);
    return { outputs: r.outputs, layers: r.profile ?? [] };
  }

  /** Releases the weights; refused with ERR_BUSY while an extract() is in flight. */
  dispose(): void {
    callNativeSync(() => this.#native.dispose());
  }

  async #run(input: Tensor4, taps: readonly string[], profile: boolean) {
    const t = expectObject(input, 'input');
    const shape = expectShape(t.shape, 'input.shape', 4);
    if (shape[1] !== 3) throw new RangeError(`input.shape[1] must be 3 (RGB channels), received ${shape[1]}`);
    const data = expectFloat32Array(t.data, 'input.data', shape[0] * shape[1] * shape[2] * shape[3]);
    expectAllFinite(data, 'input.data');
    if (!Array.isArray(taps) || taps.length === 0)
      throw new TypeError(`taps must be a non-empty array of tap names, received ${describe(taps)}`);
    taps.forEach((tap, i) => this.#checkTap(tap, `taps[${i}]`));
    if (new Set(taps).size !== taps.length) throw new RangeError(`taps must not repeat a tap, received [${taps.join(', ')}]`);
    // The addon gives every output as [n, c, h, w].
    return callNative(
      () => this.#native.extract(data, shape, [...taps], profile) as Promise<{ outputs: Record<string, Tensor4>; profile?: LayerProfile[] }>,
    );
  }

  #checkTap(tap: unknown, name: string): void {
    if (typeof tap !== 'string') throw new TypeError(`${name} must be a tap name, received ${describe(tap)}`);
    if (!this.taps.includes(tap))
      throw new RangeError(`${name} must be one of ${this.taps.map((x) => `'${x}'`).join(', ')} for ${this.arch}, received '${tap}'`);
    if (!this.availableTaps.includes(tap))
      throw new AnomalensError(
        'ERR_WEIGHTS_MISMATCH',
        `tap '${tap}' is deeper than the weights '${this.weights}' provide (they hold taps up to '${this.deepestTap}')`,
      );
  }
}
