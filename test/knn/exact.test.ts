import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
// From the modules rather than lib/index.ts, so that another area's half-finished export
// cannot keep these tests from loading.
import { MemoryBank } from '../../lib/knn/bank.js';
import { KNN_METRICS, knnEngineInfo, knnSearch } from '../../lib/knn/exact.js';
import type { KnnMetric } from '../../lib/knn/exact.js';
import { numThreads, setNumThreads } from '../../lib/core/runtime.js';
import { expectMatchesNaive, gaussian, naiveKnn, rejection } from '../helpers/knn-reference.js';
import { tempDir } from '../helpers/tmp.js';

const { dir, cleanup } = tempDir('anomalens-knn-');
afterAll(cleanup);

describe('knnSearch: exact search against a brute-force float64 loop', () => {
  // n = 13, d = 124: odd sizes exercise the SIMD tails; k = 1 and k = n.
  for (const metric of KNN_METRICS) {
    it(`${metric}: 13 x 124, k = 1 and k = n`, async () => {
      const d = 124;
      const db = gaussian(13 * d, 1);
      const q = gaussian(7 * d, 2);
      for (const k of [1, 13]) {
        const r = await knnSearch(db, q, { k, metric, dim: d });
        expect(r.rows).toBe(7);
        expect(r.k).toBe(k);
        expectMatchesNaive(r, db, q, d, k, metric);
      }
    });
  }

  // 2049 rows: several database tiles plus a tail; 1 and 5 queries: the database-split plan;
  // 131 queries: the query-split plan.
  for (const metric of KNN_METRICS) {
    it(`${metric}: 2049 x 67, few and many queries, k = 1, 10, 100`, async () => {
      const d = 67;
      const db = gaussian(2049 * d, 3);
      for (const m of [1, 5, 131]) {
        const q = gaussian(m * d, 4 + m);
        for (const k of [1, 10, 100]) expectMatchesNaive(await knnSearch(db, q, { k, metric, dim: d }), db, q, d, k, metric);
      }
    });
  }

  it('k = 1024 (the maximum) on 1500 rows', async () => {
    const d = 9;
    const db = gaussian(1500 * d, 5);
    const q = gaussian(3 * d, 6);
    expectMatchesNaive(await knnSearch(db, q, { k: 1024, dim: d }), db, q, d, 1024, 'l2sq');
  });

  it('duplicate rows tie and come out by lower index, for every metric and plan', async () => {
    const d = 31;
    const n = 1500;
    const db = gaussian(n * d, 7);
    const row = db.slice(40 * d, 41 * d);
    for (const at of [3, 517, 1041, 1499]) db.set(row, at * d);
    // A scaled copy has the same cosine distance (scaling by 2 is exact in float32).
    const queries = new Float32Array(70 * d);
    for (let i = 0; i < 70; i++) queries.set(row, i * d);
    for (const metric of ['l2sq', 'l2', 'ip'] as KnnMetric[]) {
      for (const m of [1, 70]) {
        const r = await knnSearch(db, queries.subarray(0, m * d), { k: 5, metric, dim: d });
        for (let i = 0; i < m; i++) {
          expect(Array.from(r.indices.subarray(i * 5, i * 5 + 5))).toEqual([3, 40, 517, 1041, 1499]);
          expect(new Set(r.distances.subarray(i * 5, i * 5 + 5)).size).toBe(1);
        }
      }
    }
    const scaled = new Float32Array(db);
    scaled.set(row.map((v) => 2 * v), 1041 * d);
    const r = await knnSearch(scaled, queries.subarray(0, d), { k: 5, metric: 'cosine', dim: d });
    expect(Array.from(r.indices)).toEqual([3, 40, 517, 1041, 1499]);
  });

  it('cosine: a zero vector is at distance 1 from everything', async () => {
    const db = new Float32Array([0, 0, 1, 0, -1, 0]);
    const r = await knnSearch(db, new Float32Array([0, 0, 2, 0]), { k: 3, metric: 'cosine', dim: 2 });
    expect(Array.from(r.indices)).toEqual([0, 1, 2, 1, 0, 2]);
    expect(Array.from(r.distances)).toEqual([1, 1, 1, 0, 1, 2]);
  });

  it('gives the same answer on 1 and 2 threads', async () => {
    const before = numThreads();
    const d = 40;
    const db = gaussian(3000 * d, 8);
    const q = gaussian(100 * d, 9);
    try {
      setNumThreads(1);
      const one = await knnSearch(db, q, { k: 7, dim: d });
      setNumThreads(2);
      const two = await knnSearch(db, q, { k: 7, dim: d });
      expect(two.indices).toEqual(one.indices);
      expect(two.distances).toEqual(one.distances);
    } finally {
      setNumThreads(before);
    }
  });

  it('accepts { data, shape } matrices, zero queries and caller-allocated outputs', async () => {
    const d = 5;
    const db = gaussian(20 * d, 10);
    const q = gaussian(4 * d, 11);
    const a = await knnSearch({ data: db, shape: [20, d] }, { data: q, shape: [4, d] }, { k: 3 });
    const out = { distances: new Float32Array(12), indices: new Int32Array(12) };
    const b = await knnSearch(db, q, { k: 3, dim: d, out });
    expect(b.distances).toBe(out.distances);
    expect(b.indices).toBe(out.indices);
    expect(b.indices).toEqual(a.indices);
    const none = await knnSearch(db, new Float32Array(0), { k: 3, dim: d });
    expect(none.rows).toBe(0);
    expect(none.distances.length).toBe(0);
    // A subarray with a byte offset is read in place.
    const big = new Float32Array(3 * d + q.length);
    big.set(q, 3 * d);
    expect((await knnSearch(db, big.subarray(3 * d), { k: 3, dim: d })).indices).toEqual(a.indices);
  });
});

const engine = knnEngineInfo();
const noScreen = engine.bf16Screening ? false : 'this CPU has no AVX512-BF16: the bf16-screened path is not used here';
if (noScreen) console.log(`skipped: ${noScreen}`);

describe('knnSearch: bf16-screened exact path', () => {
  it('reports the kernels in use', () => {
    expect(['avx512', 'avx2', 'scalar']).toContain(engine.scanKernel);
    expect(typeof engine.bf16Screening).toBe('boolean');
  });

  for (const metric of ['l2sq', 'l2'] as const) {
    it.skipIf(noScreen)(`${metric}: 3001 x 37, 1 / 5 / 131 queries, k = 1, 10, 100, against the brute force`, async () => {
      const d = 37;
      const db = gaussian(3001 * d, 70);
      for (const m of [1, 5, 131]) {
        const q = gaussian(m * d, 71 + m);
        for (const k of [1, 10, 100])
          expectMatchesNaive(await knnSearch(db, q, { k, metric, dim: d, screening: 'bf16' }), db, q, d, k, metric);
      }
    });
  }

  it.skipIf(noScreen)('keeps duplicate rows tied, by lower index', async () => {
    const d = 31;
    const db = gaussian(3000 * d, 72);
    const row = db.slice(40 * d, 41 * d);
    for (const at of [3, 517, 1041, 2999]) db.set(row, at * d);
    const queries = new Float32Array(70 * d);
    for (let i = 0; i < 70; i++) queries.set(row, i * d);
    for (const m of [1, 70]) {
      const r = await knnSearch(db, queries.subarray(0, m * d), { k: 5, dim: d, screening: 'bf16' });
      for (let i = 0; i < m; i++) {
        expect(Array.from(r.indices.subarray(i * 5, i * 5 + 5))).toEqual([3, 40, 517, 1041, 2999]);
        expect(Array.from(r.distances.subarray(i * 5, i * 5 + 5))).toEqual([0, 0, 0, 0, 0]);
      }
    }
  });

  it.skipIf(noScreen)('is more accurate than the float32 expansion on features with a large common offset', async () => {
    // ReLU-like features far from the origin: ||x||^2 - 2 q.x + ||q||^2 cancels badly in
    // float32; screening centres the rows and re-scores sum((q - x)^2) directly.
    const d = 64;
    const db = gaussian(4000 * d, 73).map((v) => 50 + 0.1 * v);
    const q = gaussian(80 * d, 74).map((v) => 50 + 0.1 * v);
    const ref = naiveKnn(db, q, d, 5, 'l2sq');
    const screened = await knnSearch(db, q, { k: 5, dim: d, screening: 'bf16' });
    const plain = await knnSearch(db, q, { k: 5, dim: d, screening: 'off' });
    let errScreened = 0;
    let errPlain = 0;
    for (let i = 0; i < ref.distances.length; i++) {
      errScreened = Math.max(errScreened, Math.abs(screened.distances[i] - ref.distances[i]) / ref.distances[i]);
      errPlain = Math.max(errPlain, Math.abs(plain.distances[i] - ref.distances[i]) / ref.distances[i]);
    }
    expect(errScreened).toBeLessThan(1e-5);
    expect(errPlain).toBeGreaterThan(errScreened);
    expect(screened.indices).toEqual(ref.indices);
  });

  it.skipIf(noScreen)('falls back to float32 for queries bf16 cannot separate, still within tolerance', async () => {
    // Two far clusters with tiny spread: after centring, bf16 maps each cluster to one point,
    // so every row is a candidate and the screen hands the queries to the float32 path.
    const d = 32;
    const n = 6000;
    const noise = gaussian(n * d, 75);
    const db = new Float32Array(n * d);
    for (let i = 0; i < n; i++) for (let t = 0; t < d; t++) db[i * d + t] = (i % 2 ? 1000 : -1000) + 1e-3 * noise[i * d + t];
    const q = db.slice(0, 70 * d).map((v, i) => v + 1e-3 * noise[(i * 7) % noise.length]);
    const r = await knnSearch(db, q, { k: 10, dim: d, screening: 'bf16' });
    expectMatchesNaive(r, db, q, d, 10, 'l2sq');
  });

  it.skipIf(noScreen)('MemoryBank keeps a bf16 copy for l2 metrics and searches through it', async () => {
    const d = 37;
    const db = gaussian(3000 * d, 76);
    const q = gaussian(200 * d, 77);
    const bank = new MemoryBank(d);
    expect(bank.screening).toBe('auto');
    await bank.add(db.subarray(0, 1000 * d));
    await bank.add(db.subarray(1000 * d)); // the bf16 copy keeps the first batch's mean
    expectMatchesNaive(await bank.search(q, 10), db, q, d, 10, 'l2sq');
    const forced = new MemoryBank(d, { screening: 'bf16' });
    await forced.add(db);
    expect(forced.screening).toBe('bf16');
    expectMatchesNaive(await forced.search(q.subarray(0, 7 * d), 3), db, q.subarray(0, 7 * d), d, 3, 'l2sq');
    expect(new MemoryBank(d, { screening: 'off' }).screening).toBe('off');
    expect(new MemoryBank(d, { metric: 'ip' }).screening).toBe('off');
    const path = join(dir, 'screened.bank');
    await forced.save(path);
    const loaded = await MemoryBank.load(path, { screening: 'bf16' });
    expect(loaded.screening).toBe('bf16');
    expect((await loaded.search(q, 10)).indices).toEqual((await forced.search(q, 10)).indices);
    expect((await MemoryBank.load(path, { screening: 'off' })).screening).toBe('off');
  });
});

describe('knnSearch: validation', () => {
  const d = 4;
  const db = gaussian(6 * d, 12);
  const q = gaussian(2 * d, 13);

  it('rejects k out of range, naming it', async () => {
    await expect(knnSearch(db, q, { k: 7, dim: d })).rejects.toThrow(
      new RangeError('options.k must be <= the number of database rows (6), received 7'),
    );
    await expect(knnSearch(db, q, { k: 0, dim: d })).rejects.toThrow(RangeError);
    await expect(knnSearch(db, q, { k: 1025, dim: d })).rejects.toThrow(/options.k must be <= 1024, received 1025/);
    await expect(knnSearch(db, q, { k: 1.5, dim: d })).rejects.toThrow(/options.k must be an integer, received 1.5/);
    await expect(knnSearch(db, q, { k: '3' as unknown as number, dim: d })).rejects.toThrow(TypeError);
  });

  it('rejects wrong types and shapes with the argument, the expected and the received value', async () => {
    await expect(knnSearch([1, 2] as unknown as Float32Array, q, { k: 1, dim: d })).rejects.toThrow(
      /database must be a Float32Array or a \{ data: Float32Array, shape: \[rows, dim\] \} matrix, received an array of length 2/,
    );
    await expect(knnSearch(db, q, { k: 1 })).rejects.toThrow(/options.dim must be an integer when database is a Float32Array/);
    await expect(knnSearch(db, q.subarray(1), { k: 1, dim: d })).rejects.toThrow(
      /queries must hold whole rows of 4 values, received a Float32Array of length 7/,
    );
    await expect(knnSearch({ data: db, shape: [6, 4] }, { data: q, shape: [4, 2] }, { k: 1 })).rejects.toThrow(
      /queries.shape\[1\] must be 4, received 2/,
    );
    await expect(knnSearch(db, q, { k: 1, dim: d, metric: 'hamming' as KnnMetric })).rejects.toThrow(
      /options.metric must be one of 'l2sq', 'l2', 'ip', 'cosine', received 'hamming'/,
    );
    await expect(knnSearch(new Float32Array(0), q, { k: 1, dim: d })).rejects.toThrow(/at least one row/);
    await expect(
      knnSearch(db, q, { k: 2, dim: d, out: { distances: new Float32Array(3), indices: new Int32Array(4) } }),
    ).rejects.toThrow(/out.distances must have queries x k = 2 x 2 = 4 elements, received 3/);
    await expect(
      knnSearch(db, q, { k: 2, dim: d, out: { distances: new Float32Array(4), indices: new Float32Array(4) as unknown as Int32Array } }),
    ).rejects.toThrow(/out.indices must be an Int32Array/);
    const shared = new Float32Array(8);
    await expect(
      knnSearch(db, shared, { k: 2, dim: d, out: { distances: shared.subarray(4), indices: new Int32Array(4) } }),
    ).rejects.toThrow(/must not share memory/);
  });

  it('rejects NaN and infinity with the index of the first one', async () => {
    const badDb = db.slice();
    badDb[9] = NaN;
    const err = await rejection(knnSearch(badDb, q, { k: 1, dim: d }));
    expect(err).toBeInstanceOf(RangeError);
    expect(err.message).toBe('database[9] is NaN (row 2, column 1); all values must be finite');
    const badQ = q.slice();
    badQ[6] = -Infinity;
    await expect(knnSearch(db, badQ, { k: 1, dim: d })).rejects.toThrow(
      new RangeError('queries[6] is -Infinity (row 1, column 2); all values must be finite'),
    );
  });
});
