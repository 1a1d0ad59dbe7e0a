/**
 * Approximate nearest-neighbour indexes through faiss, for memory banks too large for exact
 * search: IVF-Flat ('IVF1024,Flat'), IVF-PQ ('IVF1024,PQ16'), HNSW ('HNSW32'), or exact
 * 'Flat' (faiss' IndexFlatL2 / IndexFlatIP), by faiss factory string.
 *
 * For IVF-PQ write 'PQ16np' rather than 'PQ16' unless you need polysemous codes: faiss
 * otherwise runs its polysemous training, minutes of simulated annealing even on small data.
 */
import { AnomalensError, callNative, callNativeSync } from '../core/errors.js';
import { expectRows, prepareOutput } from './exact.js';
import type { KnnOutput, KnnResult, Matrix } from './exact.js';
import { native } from '../core/native.js';
import { expectInteger, expectObject, expectOneOf, expectString } from '../core/validate.js';

export type FaissMetric = 'l2sq' | 'ip';

export interface FaissIndexOptions {
  /** 'l2sq' (squared L2 distances, ascending; default) or 'ip' (inner products, descending). */
  metric?: FaissMetric;
}

const fromNative = Symbol('fromNative');

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
export class FaissIndex {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly #native: any;

  constructor(dim: number, factory: string, options: FaissIndexOptions = {}) {
    if ((dim as unknown) === fromNative) {
      this.#native = (options as { handle: unknown }).handle;
      return;
    }
    expectInteger(dim, 'dim', { min: 1, max: 1 << 24 });
    expectString(factory, 'factory');
    const o = expectObject(options, 'options');
    const metric = o.metric === undefined ? 'l2sq' : expectOneOf(o.metric, 'options.metric', ['l2sq', 'ip'] as const);
    this.#native = callNativeSync(() => new (native().FaissIndex)(dim, factory, metric));
  }

  /** Reads an index written by `save()`; a truncated or corrupted file rejects with ERR_INVALID_FILE. */
  static async load(path: string): Promise<FaissIndex> {
    expectString(path, 'path');
    const handle = await callNative(() => native().FaissIndex.load(path) as Promise<unknown>);
    return new FaissIndex(fromNative as unknown as number, '', { handle } as FaissIndexOptions);
  }

  get size(): number {
    return this.#native.size as number;
  }
  get dim(): number {
    return this.#native.dim as number;
  }
  get isTrained(): boolean {
    return this.#native.isTrained as boolean;
  }
  /** The faiss factory string the index was built from. */
  get factory(): string {
    return this.#native.factory as string;
  }
  get metric(): FaissMetric {
    return this.#native.metric as FaissMetric;
  }
  get disposed(): boolean {
    return this.#native.disposed as boolean;
  }

  /** IVF cells probed per query (null when the index has no IVF level). */
  get nprobe(): number | null {
    const v = this.#native.nprobe as number | null;
    return v === null || v < 0 ? null : v;
  }
  set nprobe(value: number) {
    this.#checkUsable('nprobe');
    expectInteger(value, 'nprobe', { min: 1 });
    callNativeSync(() => this.#native.setNprobe(value));
  }

  /** HNSW search-time candidate list size (null when the index is not HNSW). */
  get efSearch(): number | null {
    const v = this.#native.efSearch as number | null;
    return v === null || v < 0 ? null : v;
  }
  set efSearch(value: number) {
    this.#checkUsable('efSearch');
    expectInteger(value, 'efSearch', { min: 1 });
    callNativeSync(() => this.#native.setEfSearch(value));
  }

  /** Trains the index on x (n x dim). IVF needs at least nlist rows (faiss wants ~39 x nlist). */
  async train(x: Float32Array | Matrix): Promise<void> {
    this.#checkUsable('train');
    const r = expectRows(x, 'x', this.dim, 'the index dim');
    if (r.rows === 0) throw new RangeError('x must have at least one row, received 0');
    await callNative(() => this.#native.train(r.data, r.rows) as Promise<void>);
  }

  /** Adds x (n x dim) with consecutive ids from `size`. */
  async add(x: Float32Array | Matrix): Promise<void> {
    this.#checkUsable('add');
    const r = expectRows(x, 'x', this.dim, 'the index dim');
    await callNative(() => this.#native.add(r.data, r.rows) as Promise<void>);
  }

  /** The k nearest stored vectors of each query (queries: m x dim); `out` receives the result if given. */
  async search(queries: Float32Array | Matrix, k: number, out?: KnnOutput): Promise<KnnResult> {
    this.#checkUsable('search');
    const q = expectRows(queries, 'queries', this.dim, 'the index dim');
    const result = prepareOutput(k, 'k', this.size, q, out, [q.data]);
    await callNative(() => this.#native.search(q.data, q.rows, result.k, result.distances, result.indices) as Promise<void>);
    return result;
  }

  /** Writes the index atomically, in a checksummed container around faiss' serialisation. */
  async save(path: string): Promise<void> {
    this.#checkUsable('save');
    expectString(path, 'path');
    await callNative(() => this.#native.save(path) as Promise<void>);
  }

  /** Frees the index now. Throws ERR_BUSY while an operation is in flight; idempotent. */
  dispose(): void {
    callNativeSync(() => this.#native.dispose());
  }

  #checkUsable(op: string): void {
    if (this.disposed) throw new AnomalensError('ERR_DISPOSED', `FaissIndex.${op}: the index was disposed`);
  }
}
