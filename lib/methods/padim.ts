/**
 * PaDiM (Defard et al.: "PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection
 * and Localization", 2020), as its public code computes it: layer1-3 (v2: stage1-3) features
 * concatenated at layer1's resolution (deeper layers repeated, nearest neighbour), a seeded
 * random subset of d channels (100 when the layers have <= 448 channels as resnet18's, else
 * 550 as wide_resnet50_2's), per position the mean and the inverse of (unbiased covariance +
 * 0.01 I), Mahalanobis distance map, bilinear upsampling to the input size, Gaussian blur
 * sigma 4; image score = maximum of the map.
 * Difference from the original code: its channel subset comes from Python's random.sample with
 * seed 1024; here from a documented integer hash (seededSubset), so it can be reproduced
 * anywhere. The concatenation equals the original's unfold/fold when layer sizes divide; for
 * other sizes, the nearest source row floor(y * h_l / h_0) is used.
 */
import type { Backbone } from '../nn/backbone.js';
import { gaussianBlur, resizeBilinear } from '../maps/maps.js';
import { expectInteger, expectNumber } from '../core/validate.js';
import { padimEmbed, padimFit, padimScore } from './kernels.js';
import { drainConcat, stateTensor, type Features, type Method, type MethodScores } from './method.js';
import { seededSubset } from './seeded.js';

export interface PadimOptions {
  /** Channels kept (default 100 or 550, see above). */
  d?: number;
  /** Seed of the channel subset (default 1024). */
  seed?: number;
  /** Covariance regularisation (default 0.01). */
  reg?: number;
  /** Gaussian sigma of the map (default 4). */
  sigma?: number;
}

export function createPadim(backbone: Backbone, options: Record<string, unknown>): Method {
  const stage = backbone.taps[1].replace(/\d$/, '');
  const layers = [1, 2, 3].map((i) => `${stage}${i}`);
  const missing = layers.filter((t) => !backbone.availableTaps.includes(t));
  if (missing.length) throw new RangeError(`PaDiM needs ${layers.join(', ')}; '${backbone.weights}' lacks ${missing.join(', ')}`);
  const arch = backbone.arch;
  const channels = layers.map((l) => backbone.tapShape(l, [1, 3, 64, 64])[1]);
  const total = channels.reduce((a, b) => a + b, 0);
  const d = expectInteger(options.d ?? (total <= 448 ? 100 : 550), 'options.d', { min: 1, max: total });
  const seed = expectInteger(options.seed ?? 1024, 'options.seed', { min: 0, max: 2 ** 32 - 1 });
  const reg = expectNumber(options.reg ?? 0.01, 'options.reg', { min: 0 });
  const sigma = expectNumber(options.sigma ?? 4, 'options.sigma', { min: 0 });
  const subset = seededSubset(total, d, seed);
  const parts: Float32Array[] = [];
  let grid: [number, number] | undefined;
  let mean: Float32Array | undefined;
  let precision: Float32Array | undefined;

  const embed = async (f: Features): Promise<{ data: Float32Array; n: number; p: number }> => {
    const n = f[layers[0]].shape[0];
    const [h, w] = [f[layers[0]].shape[2], f[layers[0]].shape[3]];
    if (grid && (grid[0] !== h || grid[1] !== w))
      throw new RangeError(`PaDiM was fitted on a ${grid[0]}x${grid[1]} ${layers[0]} grid but received ${h}x${w}: use the fit's input size`);
    grid = [h, w];
    const data = await padimEmbed(layers.map((l) => f[l]), subset);
    return { data, n, p: h * w };
  };

  return {
    name: 'padim',
    taps: layers,
    notes: [],
    async fitBatch(f: Features) {
      parts.push((await embed(f)).data);
    },
    async finishFit() {
      const all = drainConcat(parts);
      const p = grid![0] * grid![1];
      const n = all.length / (d * p);
      if (n < 2) throw new RangeError(`PaDiM needs at least 2 training images, received ${n}`);
      const [m, prec] = await padimFit(all, [n, d, p], reg);
      mean = m;
      precision = prec;
    },
    async score(f: Features, inputSize: [number, number]): Promise<MethodScores> {
      const e = await embed(f);
      const dist = await padimScore(e.data, [e.n, d, e.p], mean!, precision!);
      const [H, W] = inputSize;
      const up = await resizeBilinear(dist, [e.n, 1, grid![0], grid![1]], [H, W]);
      const maps = sigma > 0 ? await gaussianBlur(up, [e.n, H, W], sigma) : up;
      const scores = new Float32Array(e.n);
      for (let i = 0; i < e.n; i++) {
        let mx = -Infinity;
        for (let j = i * H * W; j < (i + 1) * H * W; j++) if (maps[j] > mx) mx = maps[j];
        scores[i] = mx;
      }
      return { scores, maps };
    },
    config: () => ({ d, seed, reg, sigma, layers, arch }),
    state() {
      const p = grid![0] * grid![1];
      return {
        mean: { shape: [grid![0], grid![1], d], data: mean! },
        precision: { shape: [p, d, d], data: precision! },
        channels: { shape: [d], data: Float32Array.from(subset) },
      };
    },
    restore(state) {
      const m = stateTensor(state, 'mean', 'padim');
      grid = [m.shape[0], m.shape[1]];
      mean = m.data;
      precision = stateTensor(state, 'precision', 'padim').data;
    },
  };
}
