/**
 * SPADE (Cohen, Hoshen: "Sub-Image Anomaly Detection with Deep Pyramid Correspondences",
 * 2020), as its public code computes it:
 * - image score: mean Euclidean distance of the pooled feature to its K nearest training
 *   images (K = 5 default; the paper also uses 50);
 * - map: for each of layer1-3 (v2: stage1-3), per pixel, the Euclidean distance to the nearest
 *   pixel feature of those K images, bilinearly upsampled (align_corners false) to the input
 *   size; the layers averaged; Gaussian blur sigma 4.
 * Difference from the original code: its gallery loop visits pixels in chunks of 100 and drops
 * the remainder (a bug); every gallery pixel is used here. Its torch.pairwise_distance adds
 * eps = 1e-6 to each difference; plain Euclidean distance is used here (differences ~1e-6).
 */
import type { Backbone } from '../nn/backbone.js';
import { knnSearch } from '../knn/exact.js';
import { gaussianBlur, resizeBilinear } from '../maps/maps.js';
import type { NamedTensor } from '../io/safetensors.js';
import { expectInteger, expectNumber } from '../core/validate.js';
import { drainConcat, globalAvgPool, stateTensor, tapOrDeepest, toRows, type Features, type Method, type MethodScores } from './method.js';

export interface SpadeOptions {
  /** Nearest training images per test image (default 5). */
  topK?: number;
  /** Gaussian sigma of the map (default 4). */
  sigma?: number;
}

export function createSpade(backbone: Backbone, options: Record<string, unknown>): Method {
  const topK = expectInteger(options.topK ?? 5, 'options.topK', { min: 1, max: 1024 });
  const sigma = expectNumber(options.sigma ?? 4, 'options.sigma', { min: 0 });
  const stage = backbone.taps[1].replace(/\d$/, '');
  const layers = [1, 2, 3].map((i) => `${stage}${i}`).filter((t) => backbone.availableTaps.includes(t));
  if (layers.length === 0) throw new RangeError(`SPADE needs ${stage}1-3; '${backbone.weights}' stops at '${backbone.deepestTap}'`);
  const { tap: pooledTap, note } = tapOrDeepest(backbone, 'avgpool');
  const taps = [...new Set([...layers, pooledTap])];
  const pooledParts: Float32Array[] = [];
  const layerParts: Record<string, Float32Array[]> = Object.fromEntries(layers.map((l) => [l, []]));
  let pooled: Float32Array | undefined;
  let pooledDim = 0;
  // Training pixel rows per layer: [N * h * w, c] (NHWC), with the per-image block size.
  const rows: Record<string, { data: Float32Array; c: number; hw: number; h: number; w: number }> = {};
  return {
    name: 'spade',
    taps,
    notes: note ? [note] : [],
    async fitBatch(f: Features) {
      pooledDim = f[pooledTap].shape[1];
      pooledParts.push(await globalAvgPool(f[pooledTap]));
      for (const l of layers) {
        layerParts[l].push(await toRows(f[l]));
        const [, c, h, w] = f[l].shape;
        rows[l] = { data: new Float32Array(0), c, hw: h * w, h, w };
      }
    },
    async finishFit() {
      pooled = drainConcat(pooledParts);
      for (const l of layers) {
        rows[l].data = drainConcat(layerParts[l]);
      }
      const n = pooled.length / pooledDim;
      if (n < topK) throw new RangeError(`SPADE with topK = ${topK} needs at least ${topK} training images, received ${n}`);
    },
    async score(f: Features, inputSize: [number, number]): Promise<MethodScores> {
      const n = f[pooledTap].shape[0];
      const q = await globalAvgPool(f[pooledTap]);
      const nTrain = pooled!.length / pooledDim;
      const near = await knnSearch({ data: pooled!, shape: [nTrain, pooledDim] }, { data: q, shape: [n, pooledDim] }, { k: topK, metric: 'l2' });
      const scores = new Float32Array(n);
      const [H, W] = inputSize;
      const maps = new Float32Array(n * H * W);
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let j = 0; j < topK; j++) s += near.distances[i * topK + j];
        scores[i] = s / topK;
        const sum = new Float32Array(H * W);
        for (const l of layers) {
          const r = rows[l];
          if (f[l].shape[2] !== r.h || f[l].shape[3] !== r.w)
            throw new RangeError(`SPADE was fitted on ${r.h}x${r.w} ${l} features but received ${f[l].shape[2]}x${f[l].shape[3]}: use the fit's input size`);
          const gallery = new Float32Array(topK * r.hw * r.c);
          for (let j = 0; j < topK; j++) {
            const img = near.indices[i * topK + j];
            gallery.set(r.data.subarray(img * r.hw * r.c, (img + 1) * r.hw * r.c), j * r.hw * r.c);
          }
          const one = { data: f[l].data.subarray(i * r.c * r.hw, (i + 1) * r.c * r.hw), shape: [1, r.c, r.h, r.w] as [number, number, number, number] };
          const query = await toRows(one);
          const nn = await knnSearch({ data: gallery, shape: [topK * r.hw, r.c] }, { data: query, shape: [r.hw, r.c] }, { k: 1, metric: 'l2' });
          const up = await resizeBilinear(nn.distances, [1, 1, r.h, r.w], [H, W]);
          for (let p = 0; p < H * W; p++) sum[p] += up[p];
        }
        for (let p = 0; p < H * W; p++) sum[p] /= layers.length;
        maps.set(sum, i * H * W);
      }
      return { scores, maps: sigma > 0 ? await gaussianBlur(maps, [n, H, W], sigma) : maps };
    },
    config: () => ({ topK, sigma, layers, pooledTap }),
    state() {
      const s: Record<string, NamedTensor> = { pooled: { shape: [pooled!.length / pooledDim, pooledDim], data: pooled! } };
      for (const l of layers) {
        const r = rows[l];
        s[`rows.${l}`] = { shape: [r.data.length / (r.hw * r.c), r.h, r.w, r.c], data: r.data };
      }
      return s;
    },
    restore(state) {
      const p = stateTensor(state, 'pooled', 'spade');
      pooled = p.data;
      pooledDim = p.shape[1];
      for (const l of layers) {
        const t = stateTensor(state, `rows.${l}`, 'spade');
        const [, h, w, c] = t.shape;
        rows[l] = { data: t.data, c, hw: h * w, h, w };
      }
    },
  };
}
