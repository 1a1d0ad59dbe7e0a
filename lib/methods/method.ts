/**
 * The contract between the Detector (batching, backbone, pre/post-processing, files) and each
 * method's pure compute (what it keeps from the training features and how it scores).
 */
import type { Backbone, Tensor4 } from '../nn/backbone.js';
import type { NamedTensor } from '../io/safetensors.js';

/** Features of one batch, by tap. */
export type Features = Record<string, Tensor4>;

export interface MethodScores {
  /** Image scores, one per image. */
  scores: Float32Array;
  /** Anomaly maps [n, h, w] at the network input's resolution (undefined: image-level method). */
  maps?: Float32Array;
}

export interface Method {
  readonly name: string;
  /** Backbone taps the method reads. */
  readonly taps: string[];
  /** Notes for the user (e.g. a tap substituted because the weights stop early). */
  readonly notes: string[];
  /** Accumulates one training batch. */
  fitBatch(features: Features): Promise<void>;
  /** Builds the model from everything accumulated; `onProgress(fraction)` on long steps. */
  finishFit(onProgress?: (fraction: number) => void): Promise<void>;
  /** Scores one batch whose network input was `inputSize` [h, w]. */
  score(features: Features, inputSize: [number, number]): Promise<MethodScores>;
  /** Serialisable configuration (restored by the factory). */
  config(): Record<string, unknown>;
  /** Learned state as named float tensors. */
  state(): Record<string, NamedTensor>;
  /** Restores state() output. */
  restore(state: Record<string, { shape: number[]; data: Float32Array }>): void;
}

/** Creates a method for a loaded backbone from validated options (or a saved config). */
export type MethodFactory = (backbone: Backbone, options: Record<string, unknown>) => Method;

/** The deepest tap of a list that the backbone has, and a note when one was substituted. */
export function tapOrDeepest(backbone: Backbone, wanted: string): { tap: string; note?: string } {
  if (backbone.availableTaps.includes(wanted)) return { tap: wanted };
  const tap = backbone.deepestTap;
  return {
    tap,
    note: `'${wanted}' is not available from '${backbone.weights}' (its weights stop at '${tap}'); using '${tap}' globally average-pooled instead`,
  };
}

// These two passes are O(n) loops in JavaScript (a batch of SPADE's layer1 features at 224 is
// millions of elements): they yield to the event loop every YIELD_EVERY elements, so that a
// server scoring a batch still answers its other requests.
const YIELD_EVERY = 1 << 20;
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Global average pooling of an NCHW tensor to [n, c] rows. */
export async function globalAvgPool(t: Tensor4): Promise<Float32Array> {
  const [n, c, h, w] = t.shape;
  const hw = h * w;
  const out = new Float32Array(n * c);
  let since = 0;
  for (let i = 0; i < n * c; i++) {
    let s = 0;
    const base = i * hw;
    for (let j = 0; j < hw; j++) s += t.data[base + j];
    out[i] = s / hw;
    if ((since += hw) >= YIELD_EVERY) (since = 0), await yieldToLoop();
  }
  return out;
}

/** NCHW -> per-image rows of pixel vectors, [n * h * w, c] (NHWC). */
export async function toRows(t: Tensor4): Promise<Float32Array> {
  const [n, c, h, w] = t.shape;
  const hw = h * w;
  const out = new Float32Array(n * hw * c);
  let since = 0;
  for (let i = 0; i < n; i++) {
    const src = i * c * hw;
    const dst = i * hw * c;
    for (let ch = 0; ch < c; ch++) {
      const plane = src + ch * hw;
      for (let p = 0; p < hw; p++) out[dst + p * c + ch] = t.data[plane + p];
      if ((since += hw) >= YIELD_EVERY) (since = 0), await yieldToLoop();
    }
  }
  return out;
}

/**
 * Concatenates the accumulated batches and empties `parts` as it goes, so each batch can be
 * released as soon as it is copied: peak memory is the result plus one batch, not twice the
 * training features.
 */
export function drainConcat(parts: Float32Array[]): Float32Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Float32Array(n);
  let o = 0;
  parts.reverse();
  while (parts.length) {
    const p = parts.pop()!;
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Reads a required tensor of a saved state, with a clear error. */
export function stateTensor(state: Record<string, { shape: number[]; data: Float32Array }>, name: string, method: string) {
  const t = state[name];
  if (!t) throw new RangeError(`saved ${method} detector lacks tensor '${name}'`);
  return t;
}
