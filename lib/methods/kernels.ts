/**
 * The native kernels of PatchCore and PaDiM (native/ methods family), behind the same
 * validation as every other wrapper: the methods never call native() themselves. Inputs are
 * read in place; results are new Float32Arrays over native storage.
 */
import { callNative } from '../core/errors.js';
import { native } from '../core/native.js';
import { describe, expectFloat32Array, expectInteger, expectNumber, expectShape } from '../core/validate.js';
import type { Tensor4 } from '../nn/backbone.js';

const product = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

/** A float32 NCHW tensor whose data matches its shape. */
function expectTensor4(t: Tensor4, name: string): [number, number, number, number] {
  const shape = expectShape(t?.shape, `${name}.shape`, 4) as [number, number, number, number];
  expectFloat32Array(t.data, `${name}.data`, product(shape));
  return shape;
}

/**
 * PatchCore's locally aware patch features of two layers: each layer's 3x3 neighbourhoods
 * adaptive-average pooled to `layerDim`, `b` resized to `a`'s grid, the stack pooled to
 * `outDim`. Returns [n * h * w, outDim] rows (h, w: `a`'s grid).
 */
export async function patchcoreEmbed(a: Tensor4, b: Tensor4, layerDim: number, outDim: number): Promise<Float32Array> {
  const sa = expectTensor4(a, 'a');
  const sb = expectTensor4(b, 'b');
  if (sa[0] !== sb[0]) throw new RangeError(`a and b must hold the same number of images, received ${sa[0]} and ${sb[0]}`);
  expectInteger(layerDim, 'layerDim', { min: 1, max: 65536 });
  expectInteger(outDim, 'outDim', { min: 1, max: 65536 });
  return callNative(() => native().patchcoreEmbed(a.data, sa, b.data, sb, layerDim, outDim));
}

/**
 * PaDiM's embedding: the `channels` subset (indices into the layers' concatenated channels)
 * of the layers, deeper ones repeated to the first layer's grid. Returns [n, channels, h, w].
 */
export async function padimEmbed(layers: readonly Tensor4[], channels: Int32Array): Promise<Float32Array> {
  if (!Array.isArray(layers) || layers.length === 0)
    throw new TypeError(`layers must be a non-empty array of [n, c, h, w] tensors, received ${describe(layers)}`);
  const shapes = layers.map((l, i) => expectTensor4(l, `layers[${i}]`));
  shapes.forEach((s, i) => {
    if (s[0] !== shapes[0][0]) throw new RangeError(`layers[${i}] must hold ${shapes[0][0]} images as layers[0], received ${s[0]}`);
  });
  if (!(channels instanceof Int32Array)) throw new TypeError(`channels must be an Int32Array, received ${describe(channels)}`);
  const total = shapes.reduce((a, s) => a + s[1], 0);
  const bad = channels.findIndex((c) => c < 0 || c >= total);
  if (bad >= 0) throw new RangeError(`channels[${bad}] must be in [0, ${total}), received ${channels[bad]}`);
  return callNative(() => native().padimEmbed(layers.map((l) => l.data), shapes, channels));
}

/**
 * PaDiM's fit of [n, d, p] embeddings: per position the mean [p, d] and the inverse of
 * (unbiased covariance + reg I) [p, d, d].
 */
export async function padimFit(embeddings: Float32Array, shape: readonly [n: number, d: number, p: number], reg: number): Promise<[mean: Float32Array, precision: Float32Array]> {
  const s = expectShape([...shape], 'shape', 3);
  expectFloat32Array(embeddings, 'embeddings', product(s));
  if (s[0] < 2) throw new RangeError(`shape[0] must be >= 2 (a covariance needs two images), received ${s[0]}`);
  expectNumber(reg, 'reg', { min: 0 });
  return callNative(() => native().padimFit(embeddings, s, reg));
}

/** Mahalanobis distances [n, p] of [n, d, p] embeddings to a padimFit() result. */
export async function padimScore(
  embeddings: Float32Array,
  shape: readonly [n: number, d: number, p: number],
  mean: Float32Array,
  precision: Float32Array,
): Promise<Float32Array> {
  const s = expectShape([...shape], 'shape', 3);
  const [, d, p] = s;
  expectFloat32Array(embeddings, 'embeddings', product(s));
  expectFloat32Array(mean, 'mean', p * d);
  expectFloat32Array(precision, 'precision', p * d * d);
  return callNative(() => native().padimScore(embeddings, s, mean, precision));
}
