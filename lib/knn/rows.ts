/**
 * What every nearest-neighbour search shares (exact search, MemoryBank, FaissIndex, and the
 * coreset's feature argument): row-major matrix arguments and caller-allocatable m x k outputs.
 *
 * Vectors are rows of a row-major Float32Array (n rows of d values). Results are row-major
 * m x k: `indices[i * k + j]` is the j-th nearest database row of query i.
 */
import { describe, expectInteger, expectObject } from '../core/validate.js';

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
