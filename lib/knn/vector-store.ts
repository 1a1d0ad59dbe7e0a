/**
 * The TypeScript half of MemoryBank and FaissIndex, written once: a native handle behind
 * guarded operations (size, dim, search, save, dispose) and the plumbing that lets load()
 * adopt a handle the addon read from a file.
 *
 * The busy state is the addon's, one per handle (bindings/): writes (add, train, setting a
 * parameter) and dispose() are refused with ERR_BUSY while any operation is in flight, reads
 * (search, save) overlap. It is not mirrored here, so the two layers can never disagree;
 * this layer adds what needs no native call: ERR_DISPOSED with the class's name, argument
 * validation and the outputs.
 */
import type { NativeVectorStore } from '../core/addon.js';
import { AnomalensError, callNative, callNativeSync } from '../core/errors.js';
import { expectString } from '../core/validate.js';
import { sweepOnce } from '../core/atomic.js';
import { expectRows, prepareOutput, type KnnOutput, type KnnResult, type Matrix, type Rows } from './rows.js';

/** Passed as the constructor's first argument by load(); the second then carries the handle. */
const fromNative = Symbol('fromNative');

/**
 * The handle a subclass constructor starts from: the loaded one when called by `loaded()`,
 * else a new one from `create` (which validates the public constructor's arguments).
 */
export function adoptOrCreate<H>(first: unknown, second: unknown, create: () => H): H {
  return first === fromNative ? (second as { handle: H }).handle : create();
}

/**
 * Reads a handle with `load` (a native static load) and wraps it: `wrap` passes its two
 * arguments to the subclass constructor, whose adoptOrCreate() then takes the handle.
 */
export async function loaded<H, T>(load: () => Promise<H>, wrap: (first: number, second: never) => T): Promise<T> {
  const handle = await callNative(load);
  return wrap(fromNative as unknown as number, { handle } as never);
}

export abstract class VectorStore<H extends NativeVectorStore> {
  protected readonly handle: H;
  readonly #kind: string;
  readonly #noun: string;

  /** `kind` and `noun` name the object in messages: 'MemoryBank' and 'bank', say. */
  protected constructor(handle: H, kind: string, noun: string) {
    this.handle = handle;
    this.#kind = kind;
    this.#noun = noun;
  }

  /** Number of stored rows. */
  get size(): number {
    return this.handle.size;
  }
  get dim(): number {
    return this.handle.dim as number;
  }
  get disposed(): boolean {
    return this.handle.disposed;
  }

  /** The k nearest stored rows of each query (queries: m x dim); `out` receives the result if given. */
  async search(queries: Float32Array | Matrix, k: number, out?: KnnOutput): Promise<KnnResult> {
    this.checkUsable('search');
    const q = this.rows(queries, 'queries');
    const result = prepareOutput(k, 'k', this.size, q, out, [q.data]);
    await callNative(() => this.handle.search(q.data, q.rows, result.k, result.distances, result.indices));
    return result;
  }

  /** Writes the rows atomically (temporary file, fsync, rename), in a checksummed container. */
  async save(path: string): Promise<void> {
    this.checkUsable('save');
    expectString(path, 'path');
    // The native writer names its temporary file as lib/core/atomic.ts does.
    await sweepOnce(path);
    await callNative(() => this.handle.save(path));
  }

  /** Frees the rows now. Throws ERR_BUSY while an operation is in flight; idempotent. */
  dispose(): void {
    callNativeSync(() => this.handle.dispose());
  }

  /** Appends rows `x` (n x dim, copied); `name` names the argument in messages. */
  protected async addRows(x: Float32Array | Matrix, name: string): Promise<void> {
    this.checkUsable('add');
    const r = this.rows(x, name);
    await callNative(() => this.handle.add(r.data, r.rows));
  }

  /** A rows argument of this store's dimension. */
  protected rows(x: unknown, name: string): Rows {
    return expectRows(x, name, this.dim, `the ${this.#noun} dim`);
  }

  /** ERR_DISPOSED for `op` once disposed. */
  protected checkUsable(op: string): void {
    if (this.disposed) throw new AnomalensError('ERR_DISPOSED', `${this.#kind}.${op}: the ${this.#noun} was disposed`);
  }
}
