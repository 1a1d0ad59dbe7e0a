/**
 * Exact k-nearest-neighbour search (`knnSearch`): SGEMM + per-query top-k in the native core.
 * The growable bank is knn/bank.ts, the faiss indexes knn/faiss.ts, PatchCore's coreset
 * sampling/coreset.ts; the arguments and outputs they share are knn/rows.ts.
 */
import { callNative, callNativeSync } from '../core/errors.js';
import { native } from '../core/native.js';
import { expectObject, expectOneOf } from '../core/validate.js';
import { expectRows, prepareOutput, type KnnOutput, type KnnResult, type Matrix } from './rows.js';

export type KnnMetric = 'l2sq' | 'l2' | 'ip' | 'cosine';
export const KNN_METRICS: readonly KnnMetric[] = ['l2sq', 'l2', 'ip', 'cosine'];

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
  const q = expectRows(queries, 'queries', db.dim, 'options.dim');
  if (q.dim !== db.dim) throw new RangeError(`queries must have rows of ${db.dim} values (the database's), received ${q.dim}`);
  if (db.rows === 0) throw new RangeError('database must have at least one row, received 0');
  const metric = o.metric === undefined ? 'l2sq' : expectOneOf(o.metric, 'options.metric', KNN_METRICS);
  const screening = o.screening === undefined ? 'auto' : expectOneOf(o.screening, 'options.screening', KNN_SCREENING);
  const result = prepareOutput(o.k, 'options.k', db.rows, q, o.out, [db.data, q.data]);
  await callNative(() =>
    native().knnSearch(db.data, db.rows, q.data, q.rows, db.dim, result.k, metric, result.distances, result.indices, screening),
  );
  return result;
}

/** Which kernels the exact search uses on this CPU. */
export function knnEngineInfo(): { scanKernel: 'avx512' | 'avx2' | 'scalar'; bf16Screening: boolean } {
  return callNativeSync(() => native().knnEngineInfo());
}
