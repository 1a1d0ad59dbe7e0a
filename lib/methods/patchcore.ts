/**
 * PatchCore (Roth et al.: "Towards Total Recall in Industrial Anomaly Detection", 2022), as its
 * public code computes it: layer2 + layer3 (v2: stage2 + stage3) locally aware patch features
 * (3x3 neighbourhood, each layer's patch vector adaptive-average pooled to 1024, layer3
 * resized to layer2's grid, the stack pooled to 1024), an approximate greedy coreset of the
 * training patches (10% default), squared-L2 distance to the nearest memory-bank patch
 * (faiss IndexFlatL2's), image score = the maximum patch score (or the paper's reweighting,
 * `reweight: true`), map: bilinear upsampling to the input size and Gaussian blur sigma 4.
 */
import type { Backbone } from '../nn/backbone.js';
import { coresetSubsample } from '../sampling/coreset.js';
import { knnSearch } from '../knn/exact.js';
import { gaussianBlur, resizeBilinear } from '../maps/maps.js';
import { expectBoolean, expectInteger, expectNumber } from '../core/validate.js';
import { patchcoreEmbed } from './kernels.js';
import { drainConcat, stateTensor, type Features, type Method, type MethodScores } from './method.js';

export interface PatchcoreOptions {
  /** Fraction of training patches kept in the memory bank, 0.01..1 (default 0.1). */
  coreset?: number;
  /** Width of each layer's pooled patch vector and of the final one (default 1024). */
  dim?: number;
  /** The paper's image-score reweighting (default false, as the public code). */
  reweight?: boolean;
  /** Neighbourhood size b of the reweighting (default 9). */
  reweightNeighbours?: number;
  /** Coreset seed (default 0). */
  seed?: number;
  /** Gaussian sigma of the map (default 4). */
  sigma?: number;
}

export function createPatchcore(backbone: Backbone, options: Record<string, unknown>): Method {
  const coreset = expectNumber(options.coreset ?? 0.1, 'options.coreset', { min: 0.01, max: 1 });
  const dim = expectInteger(options.dim ?? 1024, 'options.dim', { min: 1, max: 65536 });
  const reweight = expectBoolean(options.reweight ?? false, 'options.reweight');
  const b = expectInteger(options.reweightNeighbours ?? 9, 'options.reweightNeighbours', { min: 1, max: 1024 });
  const seed = expectInteger(options.seed ?? 0, 'options.seed', { min: 0, max: 2 ** 32 - 1 });
  const sigma = expectNumber(options.sigma ?? 4, 'options.sigma', { min: 0 });
  const stage = backbone.taps[1].replace(/\d$/, '');
  const layers = [`${stage}2`, `${stage}3`];
  const missing = layers.filter((t) => !backbone.availableTaps.includes(t));
  if (missing.length) throw new RangeError(`PatchCore needs ${layers.join(' and ')}; '${backbone.weights}' lacks ${missing.join(', ')}`);
  const parts: Float32Array[] = [];
  let bank: Float32Array | undefined;
  let grid: [number, number] | undefined;

  const embed = async (f: Features) => {
    const a = f[layers[0]];
    const c = f[layers[1]];
    const [, , h, w] = a.shape;
    if (grid && (grid[0] !== h || grid[1] !== w))
      throw new RangeError(`PatchCore was fitted on a ${grid[0]}x${grid[1]} patch grid but received ${h}x${w}: use the fit's input size`);
    grid = [h, w];
    const layerDim = Math.min(dim, a.shape[1] * 9, c.shape[1] * 9);
    const data = await patchcoreEmbed(a, c, layerDim, dim);
    return { data, n: a.shape[0], p: h * w };
  };

  return {
    name: 'patchcore',
    taps: layers,
    notes: [],
    async fitBatch(f: Features) {
      parts.push((await embed(f)).data);
    },
    async finishFit(onProgress) {
      const all = drainConcat(parts);
      const rows = all.length / dim;
      if (coreset >= 1) {
        bank = all;
        return;
      }
      const keep = Math.max(1, Math.floor(rows * coreset));  // int(n * percentage), as the original
      const idx = await coresetSubsample({ data: all, shape: [rows, dim] }, {
        count: keep, seed, onProgress: onProgress && ((selected, total) => onProgress(selected / total)),
      });
      bank = new Float32Array(idx.length * dim);
      for (let i = 0; i < idx.length; i++) bank.set(all.subarray(idx[i] * dim, (idx[i] + 1) * dim), i * dim);
    },
    async score(f: Features, inputSize: [number, number]): Promise<MethodScores> {
      const e = await embed(f);
      const bankRows = bank!.length / dim;
      const r = await knnSearch({ data: bank!, shape: [bankRows, dim] }, { data: e.data, shape: [e.n * e.p, dim] }, { k: 1, metric: 'l2sq' });
      const patch = r.distances;  // [n * p]
      const scores = new Float32Array(e.n);
      for (let i = 0; i < e.n; i++) {
        let best = 0;
        for (let j = 1; j < e.p; j++) if (patch[i * e.p + j] > patch[i * e.p + best]) best = j;
        scores[i] = patch[i * e.p + best];
        if (reweight) scores[i] = await reweighted(e.data, i * e.p + best, r.indices[i * e.p + best], scores[i]);
      }
      const [H, W] = inputSize;
      const up = await resizeBilinear(patch, [e.n, 1, grid![0], grid![1]], [H, W]);
      return { scores, maps: sigma > 0 ? await gaussianBlur(up, [e.n, H, W], sigma) : up };
    },
    config: () => ({ coreset, dim, reweight, reweightNeighbours: b, seed, sigma, layers }),
    state: () => ({ bank: { shape: [bank!.length / dim, dim], data: bank! }, grid: { shape: [2], data: Float32Array.from(grid!) } }),
    restore(state) {
      bank = stateTensor(state, 'bank', 'patchcore').data;
      const g = stateTensor(state, 'grid', 'patchcore').data;
      grid = [g[0], g[1]];
    },
  };

  // The paper's eq. 7: s = (1 - exp(d(m_test, m*)) / sum_{m in N_b(m*)} exp(d(m_test, m))) * s*,
  // with N_b(m*) the b nearest bank patches of m* (m* itself first) and Euclidean d.
  async function reweighted(queries: Float32Array, row: number, nearest: number, maxScore: number): Promise<number> {
    const bankRows = bank!.length / dim;
    const k = Math.min(b, bankRows);
    const mStar = bank!.subarray(nearest * dim, (nearest + 1) * dim);
    const nb = await knnSearch({ data: bank!, shape: [bankRows, dim] }, { data: mStar, shape: [1, dim] }, { k, metric: 'l2sq' });
    const q = queries.subarray(row * dim, (row + 1) * dim);
    const dists = Array.from(nb.indices, (idx) => {
      let s = 0;
      for (let j = 0; j < dim; j++) {
        const t = q[j] - bank![idx * dim + j];
        s += t * t;
      }
      return Math.sqrt(s);
    });
    const mx = Math.max(...dists);
    const exps = dists.map((v) => Math.exp(v - mx));
    const sum = exps.reduce((a, v) => a + v, 0);
    const first = Math.exp(Math.sqrt(maxScore) - mx);
    return (1 - first / sum) * maxScore;
  }
}
