/**
 * Approximate nearest-neighbour indexes through faiss, for memory banks too large for exact
 * search: IVF-Flat ('IVF1024,Flat'), IVF-PQ ('IVF1024,PQ16'), HNSW ('HNSW32'), or exact
 * 'Flat' (faiss' IndexFlatL2 / IndexFlatIP), by faiss factory string.
 *
 * For IVF-PQ write 'PQ16np' rather than 'PQ16' unless you need polysemous codes: faiss
 * otherwise runs its polysemous training, minutes of simulated annealing even on small data.
 */
import type { NativeFaissIndex } from '../core/addon.js';
import { callNative, callNativeSync } from '../core/errors.js';
import { native } from '../core/native.js';
import { expectInteger, expectObject, expectOneOf, expectString } from '../core/validate.js';
import type { Matrix } from './rows.js';
import { adoptOrCreate, loaded, VectorStore } from './vector-store.js';

export type FaissMetric = 'l2sq' | 'ip';

export interface FaissIndexOptions {
  /** 'l2sq' (squared L2 distances, ascending; default) or 'ip' (inner products, descending). */
  metric?: FaissMetric;
}

/**
 * A faiss index. Train it (IVF / PQ need training; HNSW and Flat do not), add vectors, then
 * search; `nprobe` (IVF) and `efSearch` (HNSW) trade recall for speed. An approximate search
 * may find fewer than k neighbours: missing entries have index -1.
 *
 * Concurrent searches are fine; train / add / setting a parameter / dispose while another
 * operation is in flight throw ERR_BUSY.
 * @example
 * const index = new FaissIndex(128, 'IVF1024,Flat')
 * await index.train(sample)
 * await index.add(vectors)
 * index.nprobe = 16
 * const { indices } = await index.search(queries, 10)
 */
export class FaissIndex extends VectorStore<NativeFaissIndex> {
  constructor(dim: number, factory: string, options: FaissIndexOptions = {}) {
    super(
      adoptOrCreate(dim, options, () => {
        expectInteger(dim, 'dim', { min: 1, max: 1 << 24 });
        expectString(factory, 'factory');
        const o = expectObject(options, 'options');
        const metric = o.metric === undefined ? 'l2sq' : expectOneOf(o.metric, 'options.metric', ['l2sq', 'ip'] as const);
        return callNativeSync(() => new (native().FaissIndex)(dim, factory, metric));
      }),
      'FaissIndex',
      'index',
    );
  }

  /** Reads an index written by `save()`; a truncated or corrupted file rejects with ERR_INVALID_FILE. */
  static async load(path: string): Promise<FaissIndex> {
    expectString(path, 'path');
    return loaded(() => native().FaissIndex.load(path), (first, second) => new FaissIndex(first, '', second));
  }

  get isTrained(): boolean {
    return this.handle.isTrained;
  }
  /** The faiss factory string the index was built from. */
  get factory(): string {
    return this.handle.factory as string;
  }
  get metric(): FaissMetric {
    return this.handle.metric as FaissMetric;
  }

  /** IVF cells probed per query (null when the index has no IVF level). */
  get nprobe(): number | null {
    return present(this.handle.nprobe);
  }
  set nprobe(value: number) {
    this.#setParameter('nprobe', value, (v) => this.handle.setNprobe(v));
  }

  /** HNSW search-time candidate list size (null when the index is not HNSW). */
  get efSearch(): number | null {
    return present(this.handle.efSearch);
  }
  set efSearch(value: number) {
    this.#setParameter('efSearch', value, (v) => this.handle.setEfSearch(v));
  }

  /** Trains the index on x (n x dim). IVF needs at least nlist rows (faiss wants ~39 x nlist). */
  async train(x: Float32Array | Matrix): Promise<void> {
    this.checkUsable('train');
    const r = this.rows(x, 'x');
    if (r.rows === 0) throw new RangeError('x must have at least one row, received 0');
    await callNative(() => this.handle.train(r.data, r.rows));
  }

  /** Adds x (n x dim) with consecutive ids from `size`. */
  async add(x: Float32Array | Matrix): Promise<void> {
    await this.addRows(x, 'x');
  }

  // A search-time parameter: a positive integer, refused (ERR_BUSY) under a running search.
  #setParameter(name: string, value: number, set: (value: number) => void): void {
    this.checkUsable(name);
    expectInteger(value, name, { min: 1 });
    callNativeSync(() => set(value));
  }
}

/** The addon reports a parameter the index lacks as -1 (null once disposed). */
function present(v: number | null): number | null {
  return v === null || v < 0 ? null : v;
}
