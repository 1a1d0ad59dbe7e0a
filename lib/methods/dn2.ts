/**
 * DN2 (Bergman, Cohen, Hoshen: "Deep Nearest Neighbor Anomaly Detection", 2020): kNN over
 * globally pooled features of the deepest tap; score = sum (default, as the original code's
 * faiss IndexFlatL2 sum) or mean of the squared L2 distances to the k = 2 nearest training
 * features. Image level only: no anomaly map.
 */
import type { Backbone } from '../nn/backbone.js';
import { knnSearch } from '../knn/exact.js';
import type { NamedTensor } from '../io/safetensors.js';
import { expectInteger, expectOneOf } from '../core/validate.js';
import { drainConcat, globalAvgPool, stateTensor, tapOrDeepest, type Features, type Method, type MethodScores } from './method.js';

export interface Dn2Options {
  /** Neighbours (default 2). */
  k?: number;
  /** How the k squared distances combine (default 'sum'). */
  reduce?: 'sum' | 'mean';
}

/**
 * DN2's image scores: for each of the n query rows [n, dim], the k squared L2 distances to its
 * nearest bank rows [m, dim], summed (or averaged).
 */
export async function dn2Scores(bank: Float32Array, queries: Float32Array, dim: number, k: number, reduce: 'sum' | 'mean'): Promise<Float32Array> {
  const n = queries.length / dim;
  const r = await knnSearch({ data: bank, shape: [bank.length / dim, dim] }, { data: queries, shape: [n, dim] }, { k, metric: 'l2sq' });
  const scores = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += r.distances[i * k + j];
    scores[i] = reduce === 'sum' ? s : s / k;
  }
  return scores;
}

export function createDn2(backbone: Backbone, options: Record<string, unknown>): Method {
  const k = expectInteger(options.k ?? 2, 'options.k', { min: 1, max: 1024 });
  const reduce = expectOneOf(options.reduce ?? 'sum', 'options.reduce', ['sum', 'mean'] as const);
  const { tap, note } = tapOrDeepest(backbone, 'avgpool');
  const parts: Float32Array[] = [];
  let bank: Float32Array | undefined;
  let dim = 0;
  return {
    name: 'dn2',
    taps: [tap],
    notes: note ? [note] : [],
    async fitBatch(f: Features) {
      dim = f[tap].shape[1];
      parts.push(await globalAvgPool(f[tap]));
    },
    async finishFit() {
      bank = drainConcat(parts);
      if (bank.length / dim < k) throw new RangeError(`DN2 with k = ${k} needs at least ${k} training images, received ${bank.length / dim}`);
    },
    async score(f: Features): Promise<MethodScores> {
      return { scores: await dn2Scores(bank!, await globalAvgPool(f[tap]), dim, k, reduce) };
    },
    config: () => ({ k, reduce, tap }),
    state: (): Record<string, NamedTensor> => ({ bank: { shape: [bank!.length / dim, dim], data: bank! } }),
    restore(state) {
      const t = stateTensor(state, 'bank', 'dn2');
      bank = t.data;
      dim = t.shape[1];
    },
  };
}
