/**
 * k-nearest-neighbour search: exact search (`knnSearch`, `MemoryBank`), approximate faiss
 * indexes (`FaissIndex`) and PatchCore's greedy coreset subsampling (`coresetSubsample`).
 *
 * Vectors are rows of a row-major Float32Array (n rows of d values). Results are row-major
 * m x k: `indices[i * k + j]` is the j-th nearest database row of query i.
 */
import { AnomalensError, callNative, callNativeSync } from '../core/errors.js';
import { native } from '../core/native.js';
import { describe, expectInteger, expectObject, expectOneOf, expectString } from '../core/validate.js';

// The approximate indexes and the coreset live in their own files; importing them from here
// works too.
export { FaissIndex } from './faiss.js';
export type { FaissIndexOptions, FaissMetric } from './faiss.js';
export { coresetSubsample, coresetProjectedFeatures, coresetProjectionMatrix, coresetStartIndices } from '../sampling/coreset.js';
export type { CoresetOptions, CoresetProjectionOptions } from '../sampling/coreset.js';

export type KnnMetric = 'l2sq' | 'l2' | 'ip' | 'cosine';
export const KNN_METRICS: readonly KnnMetric[] = ['l2sq', 'l2', 'ip', 'cosine'];
/** The largest k any search accepts. */
export const KNN_MAX_K = 1024;

/** A row-major matrix: `data` holds shape[0] rows of shape[1] values. */
export interface Matrix {
  data: Float32Array;
  shape: readonly number[];
}

/** Caller-allocated outputs of m x k elements each. */
export interface KnnOutput {
  distances: Float32Array;
  indices: Int32Array;
}

/**
 * The k nearest neighbours of m queries, row-major m x k.
 * - `distances`: l2sq = squared Euclidean, l2 = Euclidean, cosine = 1 - cos (nearest first),
 *   ip = inner product (largest first, a similarity as in faiss).
 * - `indices`: database rows; equal distances are ordered by lower index.
 */
export interface KnnResult extends KnnOutput {
  /** Number of queries m. */
  rows: number;
  k: number;
}

/**
 * How an l2 / l2sq search may use bfloat16 screening (CPUs with AVX512-BF16): products are
 * first computed in bf16 at twice the float32 rate, a rigorous error bound keeps every row
 * that could be among the k nearest, and those are re-scored exactly in float32, so results
 * are exact either way. 'auto' (default): when the work is large enough to pay off; 'off':
 * always the float32 SGEMM path; 'bf16': whenever the CPU supports it (tests, benchmarks).
 */
export type KnnScreening = 'auto' | 'off' | 'bf16';
export const KNN_SCREENING: readonly KnnScreening[] = ['auto', 'off', 'bf16'];

export interface KnnSearchOptions {
  /** Neighbours per query, 1..1024 and at most the number of database rows. */
  k: number;
  /** Default 'l2sq'. */
  metric?: KnnMetric;
  /** Default 'auto'; see KnnScreening. */
  screening?: KnnScreening;
  /** Row length d, required when database and queries are plain Float32Arrays. */
  dim?: number;
  /** Caller-allocated outputs (m x k each), filled and returned instead of new arrays. */
  out?: KnnOutput;
}

/** A validated matrix argument. */
export interface Rows {
  data: Float32Array;
  rows: number;
  dim: number;
}

/**
 * Reads a Float32Array (with `dim`) or a { data, shape: [rows, dim] } matrix. Only types and
 * sizes are checked here; NaN / infinity is found by the native worker (it is O(n)) and
 * reported as a RangeError naming the element.
 */
export function expectRows(value: unknown, name: string, dim?: number, dimName = 'options.dim'): Rows {
  if (value instanceof Float32Array) {
    if (dim === undefined)
      throw new TypeError(`${dimName} must be an integer when ${name} is a Float32Array, received undefined`);
    expectInteger(dim, dimName, { min: 1 });
    if (value.length % dim !== 0)
      throw new RangeError(
        `${name} must hold whole rows of ${dim} values, received a Float32Array of length ${value.length}`,
      );
    return { data: value, rows: value.length / dim, dim };
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && !ArrayBuffer.isView(value)) {
    const m = value as { data?: unknown; shape?: unknown };
    if (!(m.data instanceof Float32Array))
      throw new TypeError(`${name}.data must be a Float32Array, received ${describe(m.data)}`);
    if (!Array.isArray(m.shape) || m.shape.length !== 2)
      throw new TypeError(`${name}.shape must be [rows, dim], received ${describe(m.shape)}`);
    const [rows, d] = m.shape as unknown[];
    expectInteger(rows, `${name}.shape[0]`, { min: 0 });
    expectInteger(d, `${name}.shape[1]`, { min: 1 });
    if (dim !== undefined && d !== dim)
      throw new RangeError(`${name}.shape[1] must be ${dim}, received ${d as number}`);
    if (m.data.length !== (rows as number) * (d as number))
      throw new RangeError(
        `${name}.data must have ${name}.shape[0] * ${name}.shape[1] = ${(rows as number) * (d as number)} elements, received ${m.data.length}`,
      );
    return { data: m.data, rows: rows as number, dim: d as number };
  }
  throw new TypeError(`${name} must be a Float32Array or a { data: Float32Array, shape: [rows, dim] } matrix, received ${describe(value)}`);
}

function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return (
    a.buffer === b.buffer &&
    a.byteOffset < b.byteOffset + b.byteLength &&
    b.byteOffset < a.byteOffset + a.byteLength
  );
}

/** Validates k against the database size and allocates (or checks) the outputs. */
export function prepareOutput(
  k: unknown,
  kName: string,
  databaseRows: number,
  queries: Rows,
  out: unknown,
  inputs: ArrayBufferView[],
): KnnResult {
  expectInteger(k, kName, { min: 1, max: KNN_MAX_K });
  if ((k as number) > databaseRows)
    throw new RangeError(`${kName} must be <= the number of database rows (${databaseRows}), received ${k as number}`);
  const count = queries.rows * (k as number);
  if (out === undefined)
    return { distances: new Float32Array(count), indices: new Int32Array(count), rows: queries.rows, k: k as number };
  const o = expectObject(out, 'out');
  if (!(o.distances instanceof Float32Array))
    throw new TypeError(`out.distances must be a Float32Array, received ${describe(o.distances)}`);
  if (!(o.indices instanceof Int32Array))
    throw new TypeError(`out.indices must be an Int32Array, received ${describe(o.indices)}`);
  for (const [name, arr] of [['out.distances', o.distances], ['out.indices', o.indices]] as const) {
    if (arr.length !== count)
      throw new RangeError(`${name} must have queries x k = ${queries.rows} x ${k as number} = ${count} elements, received ${arr.length}`);
    if (inputs.some((input) => overlaps(arr, input)))
      throw new RangeError(`${name} must not share memory with the inputs`);
  }
  if (overlaps(o.distances, o.indices)) throw new RangeError('out.distances and out.indices must not share memory');
  return { distances: o.distances, indices: o.indices, rows: queries.rows, k: k as number };
}

/**
 * Exact k-nearest-neighbour search of each query row among the database rows (SGEMM +
 * per-query top-k, multithreaded; see `setNumThreads`).
 * @example
 * const { distances, indices } = await knnSearch(bank, queries, { k: 5, dim: 256 })
 * // indices[i * 5] is the nearest bank row of query i
 */
export async function knnSearch(
  database: Float32Array | Matrix,
  queries: Float32Array | Matrix,
  options: KnnSearchOptions,
): Promise<KnnResult> {
  const o = expectObject(options, 'options');
  const db = expectRows(database, 'database', o.dim as number | undefined);
  const q = expectRows(queries, 'queries', db.dim, o.dim === undefined ? 'options.dim' : 'options.dim');
  if (q.dim !== db.dim) throw new RangeError(`queries must have rows of ${db.dim} values (the database's), received ${q.dim}`);
  if (db.rows === 0) throw new RangeError('database must have at least one row, received 0');
  const metric = o.metric === undefined ? 'l2sq' : expectOneOf(o.metric, 'options.metric', KNN_METRICS);
  const screening = o.screening === undefined ? 'auto' : expectOneOf(o.screening, 'options.screening', KNN_SCREENING);
  const result = prepareOutput(o.k, 'options.k', db.rows, q, o.out, [db.data, q.data]);
  await callNative(() =>
    native().knnSearch(db.data, db.rows, q.data, q.rows, db.dim, result.k, metric, result.distances, result.indices, screening) as Promise<void>,
  );
  return result;
}

/** Which kernels the exact search uses on this CPU. */
export function knnEngineInfo(): { scanKernel: 'avx512' | 'avx2' | 'scalar'; bf16Screening: boolean } {
  return callNativeSync(() => native().knnEngineInfo());
}

// ---- MemoryBank ---------------------------------------------------------------------------

export interface MemoryBankOptions {
  /** Default 'l2sq' (PatchCore's and faiss IndexFlatL2's squared distances). */
  metric?: KnnMetric;
  /**
   * Default 'auto'. With 'auto' or 'bf16', an l2 / l2sq bank on a CPU with AVX512-BF16 keeps a
   * bfloat16 copy of its rows (+50% memory) for screened exact searches; 'off' keeps none.
   */
  screening?: KnnScreening;
}

const fromNative = Symbol('fromNative');

/**
 * A growable set of d-dimensional vectors with exact kNN search and an atomic,
 * checksummed file format.
 *
 * Concurrent `search()` / `save()` calls are fine; `add()` while any operation is in flight
 * rejects with ERR_BUSY, and so does `dispose()`. After `dispose()` every call rejects with
 * ERR_DISPOSED.
 * @example
 * const bank = new MemoryBank(1536)
 * await bank.add(features)                 // n x 1536
 * const { distances } = await bank.search(patches, 1)
 * await bank.save('bank.anb')
 */
export class MemoryBank {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly #native: any;

  constructor(dim: number, options: MemoryBankOptions = {}) {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    if ((dim as any) === fromNative) {
      this.#native = (options as { handle: unknown }).handle;
      return;
    }
    expectInteger(dim, 'dim', { min: 1, max: 1 << 24 });
    const o = expectObject(options, 'options');
    const metric = o.metric === undefined ? 'l2sq' : expectOneOf(o.metric, 'options.metric', KNN_METRICS);
    const screening = o.screening === undefined ? 'auto' : expectOneOf(o.screening, 'options.screening', KNN_SCREENING);
    this.#native = callNativeSync(() => new (native().MemoryBank)(dim, metric, screening));
  }

  /** Reads a bank written by `save()`. A truncated or corrupted file rejects with ERR_INVALID_FILE. */
  static async load(path: string, options: { screening?: KnnScreening } = {}): Promise<MemoryBank> {
    expectString(path, 'path');
    const o = expectObject(options, 'options');
    const screening = o.screening === undefined ? 'auto' : expectOneOf(o.screening, 'options.screening', KNN_SCREENING);
    const handle = await callNative(() => native().MemoryBank.load(path, screening) as Promise<unknown>);
    return new MemoryBank(fromNative as unknown as number, { handle } as MemoryBankOptions);
  }

  /** Number of rows. */
  get size(): number {
    return this.#native.size as number;
  }
  get dim(): number {
    return this.#native.dim as number;
  }
  get metric(): KnnMetric {
    return this.#native.metric as KnnMetric;
  }
  get disposed(): boolean {
    return this.#native.disposed as boolean;
  }
  /** 'off' when searches never use bf16 screening (option 'off', another metric, or a CPU without AVX512-BF16). */
  get screening(): KnnScreening {
    return this.#native.screening as KnnScreening;
  }

  /** Appends rows (a Float32Array of n x dim values, copied). */
  async add(rows: Float32Array | Matrix): Promise<void> {
    this.#checkUsable('add');
    const r = expectRows(rows, 'rows', this.dim, 'the bank dim');
    await callNative(() => this.#native.add(r.data, r.rows) as Promise<void>);
  }

  /** The k nearest rows of each query (queries: m x dim); `out` receives the result if given. */
  async search(queries: Float32Array | Matrix, k: number, out?: KnnOutput): Promise<KnnResult> {
    this.#checkUsable('search');
    const q = expectRows(queries, 'queries', this.dim, 'the bank dim');
    const result = prepareOutput(k, 'k', this.size, q, out, [q.data]);
    await callNative(() => this.#native.search(q.data, q.rows, result.k, result.distances, result.indices) as Promise<void>);
    return result;
  }

  /** Writes the bank atomically (temporary file, fsync, rename). */
  async save(path: string): Promise<void> {
    this.#checkUsable('save');
    expectString(path, 'path');
    await callNative(() => this.#native.save(path) as Promise<void>);
  }

  /** Frees the rows now. Throws ERR_BUSY while an operation is in flight; idempotent. */
  dispose(): void {
    callNativeSync(() => this.#native.dispose());
  }

  #checkUsable(op: string): void {
    if (this.disposed) throw new AnomalensError('ERR_DISPOSED', `MemoryBank.${op}: the bank was disposed`);
  }
}
