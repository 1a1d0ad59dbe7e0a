/**
 * Slow, obviously-correct twins of the kNN engine for the tests: a float64 brute-force
 * search, a seeded data generator and XXH64 (BigInt) for the file checksums.
 */
import { expect } from 'vitest';
import type { KnnMetric } from '../../lib/knn/exact.js';
import type { KnnResult } from '../../lib/knn/rows.js';

/** Deterministic N(0, 1) float32 data (xorshift + Box-Muller). */
export function gaussian(count: number, seed: number): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next());
  return out;
}

/** The exact value our engine reports for one pair, in float64. */
export function pairDistance(a: Float32Array, ai: number, b: Float32Array, bi: number, d: number, metric: KnnMetric): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  let sq = 0;
  for (let t = 0; t < d; t++) {
    const x = a[ai * d + t];
    const y = b[bi * d + t];
    dot += x * y;
    na += x * x;
    nb += y * y;
    sq += (x - y) * (x - y);
  }
  switch (metric) {
    case 'l2sq':
      return sq;
    case 'l2':
      return Math.sqrt(sq);
    case 'ip':
      return dot;
    case 'cosine':
      return na > 0 && nb > 0 ? 1 - dot / Math.sqrt(na * nb) : 1;
  }
}

// Sorted candidate lists per (database, queries, metric), so that checking several k on the
// same data costs one brute force.
const sortedCache = new WeakMap<Float32Array, WeakMap<Float32Array, Map<string, { j: number; v: number }[][]>>>();

function sortedAll(db: Float32Array, queries: Float32Array, d: number, metric: KnnMetric): { j: number; v: number }[][] {
  let byQueries = sortedCache.get(db);
  if (!byQueries) sortedCache.set(db, (byQueries = new WeakMap()));
  let byMetric = byQueries.get(queries);
  if (!byMetric) byQueries.set(queries, (byMetric = new Map()));
  const key = `${metric}/${d}`;
  const hit = byMetric.get(key);
  if (hit) return hit;
  const n = db.length / d;
  const m = queries.length / d;
  const sign = metric === 'ip' ? -1 : 1;
  const lists = [];
  for (let i = 0; i < m; i++) {
    const all = Array.from({ length: n }, (_, j) => ({ j, v: pairDistance(queries, i, db, j, d, metric) }));
    all.sort((a, b) => sign * (a.v - b.v) || a.j - b.j);
    lists.push(all);
  }
  byMetric.set(key, lists);
  return lists;
}

/** Brute force: every pair in float64, sorted by (distance, index) (ip: largest first). */
export function naiveKnn(
  db: Float32Array,
  queries: Float32Array,
  d: number,
  k: number,
  metric: KnnMetric,
): { distances: Float64Array; indices: Int32Array } {
  const lists = sortedAll(db, queries, d, metric);
  const m = lists.length;
  const distances = new Float64Array(m * k);
  const indices = new Int32Array(m * k);
  for (let i = 0; i < m; i++) {
    for (let t = 0; t < k; t++) {
      distances[i * k + t] = lists[i][t].v;
      indices[i * k + t] = lists[i][t].j;
    }
  }
  return { distances, indices };
}

/** Largest squared norm of the rows of a matrix. */
export function maxSquaredNorm(x: Float32Array, d: number): number {
  let best = 0;
  for (let j = 0; j < x.length / d; j++) {
    let s = 0;
    for (let t = 0; t < d; t++) s += x[j * d + t] ** 2;
    best = Math.max(best, s);
  }
  return best;
}

/** Absolute tolerance of a float32 SGEMM-expanded distance for one query (xn: maxSquaredNorm of the database). */
export function tolerance(xn: number, queries: Float32Array, qi: number, d: number, metric: KnnMetric): number {
  let qn = 0;
  for (let t = 0; t < d; t++) qn += queries[qi * d + t] ** 2;
  switch (metric) {
    case 'l2sq':
      return 2e-6 * (qn + xn) + 1e-6;
    case 'l2':
      return Math.sqrt(2e-6 * (qn + xn)) + 1e-5;
    case 'ip':
      return 2e-6 * Math.sqrt(qn * xn) + 1e-6;
    case 'cosine':
      return 2e-6;
  }
}

/**
 * Checks a result against the brute force: distances within tolerance, every returned index
 * really at the reported distance, no duplicates, nearest first, and the same indices as the
 * reference wherever the reference is not a near-tie.
 */
export function expectMatchesNaive(
  got: KnnResult,
  db: Float32Array,
  queries: Float32Array,
  d: number,
  k: number,
  metric: KnnMetric,
): void {
  const n = db.length / d;
  const kk = Math.min(n, k + 1);  // one more, to know whether rank k - 1 is a near-tie
  const ref = naiveKnn(db, queries, d, kk, metric);
  const m = queries.length / d;
  const sign = metric === 'ip' ? -1 : 1;
  const xn = maxSquaredNorm(db, d);
  for (let i = 0; i < m; i++) {
    const tol = tolerance(xn, queries, i, d, metric);
    const seen = new Set<number>();
    for (let t = 0; t < k; t++) {
      const at = i * k + t;
      const rat = i * kk + t;
      const idx = got.indices[at];
      expect(idx, `query ${i} rank ${t}`).toBeGreaterThanOrEqual(0);
      expect(seen.has(idx), `query ${i}: index ${idx} returned twice`).toBe(false);
      seen.add(idx);
      expect(Math.abs(got.distances[at] - ref.distances[rat]), `query ${i} rank ${t} distance`).toBeLessThanOrEqual(tol);
      expect(Math.abs(pairDistance(queries, i, db, idx, d, metric) - got.distances[at])).toBeLessThanOrEqual(tol);
      if (t > 0) expect(sign * (got.distances[at] - got.distances[at - 1])).toBeGreaterThanOrEqual(0);
      const prev = t > 0 ? ref.distances[rat - 1] : Infinity;
      const next = t + 1 < kk ? ref.distances[rat + 1] : Infinity;
      const clear = Math.abs(ref.distances[rat] - prev) > 2 * tol && Math.abs(next - ref.distances[rat]) > 2 * tol;
      if (clear) expect(idx, `query ${i} rank ${t} index`).toBe(ref.indices[rat]);
    }
  }
}

// ---- XXH64 (BigInt), the twin of native/src/knn/file.cpp ----------------------------------
const M64 = (1n << 64n) - 1n;
const P1 = 11400714785074694791n;
const P2 = 14029467366897019727n;
const P3 = 1609587929392839161n;
const P4 = 9650029242287828579n;
const P5 = 2870177450012600261n;
const rotl = (x: bigint, r: bigint) => ((x << r) | (x >> (64n - r))) & M64;
const round = (acc: bigint, lane: bigint) => (rotl((acc + lane * P2) & M64, 31n) * P1) & M64;

export function xxh64(data: Uint8Array, seed = 0n): bigint {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const len = data.length;
  let p = 0;
  let acc: bigint;
  if (len >= 32) {
    const v = [(seed + P1 + P2) & M64, (seed + P2) & M64, seed, (seed - P1) & M64];
    for (; p + 32 <= len; p += 32) for (let i = 0; i < 4; i++) v[i] = round(v[i], view.getBigUint64(p + 8 * i, true));
    acc = (rotl(v[0], 1n) + rotl(v[1], 7n) + rotl(v[2], 12n) + rotl(v[3], 18n)) & M64;
    for (let i = 0; i < 4; i++) acc = (((acc ^ round(0n, v[i])) * P1) & M64) + P4 & M64;
  } else {
    acc = (seed + P5) & M64;
  }
  acc = (acc + BigInt(len)) & M64;
  for (; p + 8 <= len; p += 8) acc = ((rotl(acc ^ round(0n, view.getBigUint64(p, true)), 27n) * P1) & M64) + P4 & M64;
  if (p + 4 <= len) {
    acc = ((rotl(acc ^ ((BigInt(view.getUint32(p, true)) * P1) & M64), 23n) * P2) & M64) + P3 & M64;
    p += 4;
  }
  for (; p < len; p++) acc = (rotl(acc ^ ((BigInt(data[p]) * P5) & M64), 11n) * P1) & M64;
  acc ^= acc >> 33n;
  acc = (acc * P2) & M64;
  acc ^= acc >> 29n;
  acc = (acc * P3) & M64;
  acc ^= acc >> 32n;
  return acc;
}

/**
 * The original PatchCore greedy loop in float64 on already-projected rows (n x p): initial
 * distance = mean Euclidean distance to the starting rows, then repeatedly the farthest row
 * (lowest index on ties) and a min-update. `follow` (optional) replays another
 * implementation's choices, so the check can report how far each choice is from the best.
 */
export function referenceCoreset(
  rows: Float32Array,
  p: number,
  count: number,
  starts: Int32Array,
  follow?: Int32Array,
): { indices: Int32Array; slack: number[] } {
  const n = rows.length / p;
  const dist = (i: number, j: number) => {
    let s = 0;
    for (let t = 0; t < p; t++) s += (rows[i * p + t] - rows[j * p + t]) ** 2;
    return Math.sqrt(s);
  };
  const mind = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (const st of starts) s += dist(i, st);
    mind[i] = s / starts.length;
  }
  const indices = new Int32Array(count);
  const slack: number[] = [];
  for (let t = 0; t < count; t++) {
    let best = 0;
    for (let i = 1; i < n; i++) if (mind[i] > mind[best]) best = i;
    const chosen = follow ? follow[t] : best;
    slack.push((mind[best] - mind[chosen]) / Math.max(mind[best], 1e-30));
    indices[t] = best;
    for (let i = 0; i < n; i++) mind[i] = Math.min(mind[i], dist(i, chosen));
  }
  return { indices, slack };
}

/** The error a promise rejects with (fails the test when it resolves). */
export async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected a rejection').toBeInstanceOf(Error);
  return err as Error & { code?: string };
}
