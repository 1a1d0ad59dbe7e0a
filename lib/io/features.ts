/**
 * Feature extraction to a file: runs a backbone over images (or an already-normalised input
 * tensor) in batches and streams each tap into a safetensors file, one tensor per tap named
 * by the tap. Memory stays bounded by one batch.
 */
import { basename } from 'node:path';
import type { Backbone, Tensor4 } from '../nn/backbone.js';
import { AnomalensError } from '../core/errors.js';
import { loadBatch, type ImageBatch, type Preprocess } from '../image/images.js';
import { readSafetensors, SafetensorsWriter } from './safetensors.js';
import { describe, expectInteger, expectString } from '../core/validate.js';

export type FeatureSource = { images: string[]; preprocess: Preprocess } | { input: string };

export interface WriteFeaturesOptions {
  backbone: Backbone;
  taps: string[];
  source: FeatureSource;
  /** Output safetensors path. Written atomically. */
  out: string;
  /** Images per forward pass (default 8). */
  batchSize?: number;
  /** Called after each batch with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

export interface FeaturesSummary {
  count: number;
  inputShape: [number, number, number, number];
  taps: { name: string; shape: number[] }[];
  seconds: number;
}

/**
 * @example
 * await writeFeatures({ backbone, taps: ['layer2', 'layer3'], source: { images: paths, preprocess: IMAGENET_PREPROCESS }, out: 'f.safetensors' })
 */
export async function writeFeatures(options: WriteFeaturesOptions): Promise<FeaturesSummary> {
  const { backbone, taps, source } = options;
  const out = expectString(options.out, 'options.out');
  const batchSize = expectInteger(options.batchSize ?? 8, 'options.batchSize', { min: 1, max: 4096 });
  if (!Array.isArray(taps) || taps.length === 0) throw new TypeError(`options.taps must be a non-empty array, received ${describe(taps)}`);
  const start = performance.now();

  // Batches come from a generator so that the next batch decodes while this one runs.
  let total: number;
  let next: (i: number) => Promise<Tensor4 & { names?: string[] }>;
  let metadata: Record<string, string>;
  if ('images' in source) {
    const paths = source.images;
    if (!Array.isArray(paths) || paths.length === 0) throw new TypeError(`source.images must be a non-empty array of paths, received ${describe(paths)}`);
    total = paths.length;
    next = async (i) => {
      const names = paths.slice(i, i + batchSize);
      const b: ImageBatch = await loadBatch(names, source.preprocess);
      return { data: b.data, shape: b.shape, names };
    };
    metadata = { source: 'images', files: JSON.stringify(paths.map((p) => basename(p))), preprocess: JSON.stringify(source.preprocess) };
  } else {
    const file = expectString(source.input, 'source.input');
    const content = await readSafetensors(file);
    const t = content.tensors.input;
    if (!t) throw new AnomalensError('ERR_INVALID_FILE', `'${file}' has no tensor named 'input' (it has: ${Object.keys(content.tensors).join(', ') || 'none'})`);
    if (!t.data || t.shape.length !== 4 || t.shape[1] !== 3)
      throw new AnomalensError('ERR_INVALID_FILE', `tensor 'input' in '${file}' must be float [n, 3, h, w], received ${t.dtype} [${t.shape.join(', ')}]`);
    const data = t.data;
    const [n, c, h, w] = t.shape;
    const per = c * h * w;
    total = n;
    next = async (i) => {
      const m = Math.min(batchSize, n - i);
      return { data: data.subarray(i * per, (i + m) * per), shape: [m, c, h, w] };
    };
    metadata = { source: 'input', input: basename(file) };
  }

  let writer: SafetensorsWriter | undefined;
  let inputShape: [number, number, number, number] | undefined;
  let shapes: { name: string; shape: number[] }[] = [];
  try {
    let pending = next(0);
    pending.catch(() => {});
    for (let i = 0; i < total; ) {
      const batch = await pending;
      const m = batch.shape[0];
      if (i + m < total) {
        pending = next(i + m);
        pending.catch(() => {});  // handled when awaited; avoids an unhandled rejection meanwhile
      }
      if (!inputShape) {
        inputShape = [total, 3, batch.shape[2], batch.shape[3]];
        shapes = taps.map((tap) => ({ name: tap, shape: backbone.tapShape(tap, inputShape!) }));
        writer = await SafetensorsWriter.create(out, shapes, {
          ...metadata, arch: backbone.arch, taps: taps.join(','), format: 'anomalens-features-v1',
        });
      } else if (batch.shape[2] !== inputShape[2] || batch.shape[3] !== inputShape[3]) {
        throw new RangeError(
          `all inputs must preprocess to one size: the first batch is ${inputShape[2]}x${inputShape[3]} but ` +
            `${batch.names ? `'${batch.names[0]}'...` : `items ${i}..${i + m - 1}`} give ${batch.shape[2]}x${batch.shape[3]}; ` +
            'use a crop or an exact [h, w] resize',
        );
      }
      const feats = await backbone.extract(batch, taps);
      for (const s of shapes) {
        const per = s.shape[1] * s.shape[2] * s.shape[3];
        await writer!.write(s.name, i * per, feats[s.name].data);
      }
      i += m;
      options.onProgress?.(i, total);
    }
    await writer!.commit();
  } catch (err) {
    await writer?.abort();
    throw err;
  }
  return { count: total, inputShape: inputShape!, taps: shapes, seconds: (performance.now() - start) / 1000 };
}
