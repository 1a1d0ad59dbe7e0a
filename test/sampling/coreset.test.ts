import { describe, expect, it } from 'vitest';
// From the modules rather than lib/index.ts, so that another area's half-finished export
// cannot keep these tests from loading.
import { coresetProjectedFeatures, coresetProjectionMatrix, coresetStartIndices } from '../../lib/internal.js';
import { coresetSubsample } from '../../lib/sampling/coreset.js';
import { numThreads, setNumThreads } from '../../lib/core/runtime.js';
import { gaussian, referenceCoreset, rejection } from '../helpers/knn-reference.js';

describe('coresetSubsample: against the original greedy loop in float64', () => {
  const n = 300;
  const d = 37;
  const features = gaussian(n * d, 60);

  for (const precision of ['float16', 'float32'] as const) {
    for (const projection of ['uniform', 'gaussian'] as const) {
      it(`${precision}, ${projection} projection to 16 dimensions`, async () => {
        const options = { dim: d, seed: 7, projectionDim: 16, projection, precision };
        const rows = await coresetProjectedFeatures(features, options);
        expect(rows.length).toBe(n * 16);
        const starts = coresetStartIndices(n, { seed: 7 });
        const got = await coresetSubsample(features, { ...options, count: 60 });
        expect(got.length).toBe(60);
        const ref = referenceCoreset(rows, 16, 60, starts, got);
        // Every choice is the farthest row up to float32 rounding, and on this data exactly it.
        expect(Math.max(...ref.slack)).toBeLessThan(1e-5);
        expect(Array.from(got)).toEqual(Array.from(ref.indices));
        expect(new Set(got).size).toBe(60);
      });
    }
  }

  it('projects with the published matrix: features x matrix, U(-1/sqrt(d), 1/sqrt(d)) or N(0, 1/p)', async () => {
    const p = 24;
    for (const projection of ['uniform', 'gaussian'] as const) {
      const m = coresetProjectionMatrix(d, { seed: 3, projectionDim: p, projection });
      expect(m.length).toBe(d * p);
      const rows = await coresetProjectedFeatures(features, { dim: d, seed: 3, projectionDim: p, projection, precision: 'float32' });
      for (let i = 0; i < n; i++)
        for (let t = 0; t < p; t++) {
          let want = 0;
          let scale = 0;
          for (let j = 0; j < d; j++) {
            want += features[i * d + j] * m[j * p + t];
            scale += Math.abs(features[i * d + j] * m[j * p + t]);
          }
          expect(Math.abs(rows[i * p + t] - want)).toBeLessThanOrEqual(1e-6 * scale + 1e-7);
        }
      const mean = m.reduce((a, b) => a + b, 0) / m.length;
      const variance = m.reduce((a, b) => a + (b - mean) ** 2, 0) / m.length;
      if (projection === 'uniform') {
        expect(Math.max(...m.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(d));
        expect(variance).toBeCloseTo(1 / (3 * d), 3);
      } else {
        expect(variance * p).toBeGreaterThan(0.85);
        expect(variance * p).toBeLessThan(1.15);
      }
    }
    // float16 rows are the float32 rows rounded to 11 significant bits.
    const f32 = await coresetProjectedFeatures(features, { dim: d, seed: 3, projectionDim: p, precision: 'float32' });
    const f16 = await coresetProjectedFeatures(features, { dim: d, seed: 3, projectionDim: p, precision: 'float16' });
    let worst = 0;
    const peak = Math.max(...f32.map(Math.abs));
    for (let i = 0; i < f32.length; i++) worst = Math.max(worst, Math.abs(f16[i] - f32[i]));
    expect(worst).toBeLessThanOrEqual(peak * 2 ** -11);
    expect(worst).toBeGreaterThan(0);
  });

  it('skips the projection when d equals projectionDim (as the original) or projectionDim is 0', async () => {
    const raw = gaussian(50 * 128, 61);
    expect(await coresetProjectedFeatures(raw, { dim: 128, precision: 'float32' })).toEqual(raw);
    const small = gaussian(80 * 9, 62);
    expect(await coresetProjectedFeatures(small, { dim: 9, projectionDim: 0, precision: 'float32' })).toEqual(small);
    const got = await coresetSubsample(small, { dim: 9, projectionDim: 0, precision: 'float32', count: 20, seed: 5 });
    const ref = referenceCoreset(small, 9, 20, coresetStartIndices(80, { seed: 5 }), got);
    expect(Array.from(got)).toEqual(Array.from(ref.indices));
    expect(() => coresetProjectionMatrix(9, { projectionDim: 9 })).toThrow(/means no projection/);
  });

  it('is reproducible: same seed and any thread count give the same rows; another seed differs', async () => {
    const big = gaussian(5000 * 40, 63);
    const before = numThreads();
    try {
      setNumThreads(2);
      const a = await coresetSubsample(big, { dim: 40, ratio: 0.05, seed: 11 });
      setNumThreads(1);
      const b = await coresetSubsample(big, { dim: 40, ratio: 0.05, seed: 11 });
      expect(a.length).toBe(250);
      expect(b).toEqual(a);
      const c = await coresetSubsample(big, { dim: 40, ratio: 0.05, seed: 12 });
      expect(c).not.toEqual(a);
    } finally {
      setNumThreads(before);
    }
    const starts = coresetStartIndices(5000, { seed: 11 });
    expect(starts.length).toBe(10);
    expect(new Set(starts).size).toBe(10);
    expect(Array.from(coresetStartIndices(4, { seed: 1 })).sort()).toEqual([0, 1, 2, 3]);
  });

  it('reports progress, ends with (count, count), and ratio 1 keeps every row in order', async () => {
    const calls: [number, number][] = [];
    const big = gaussian(20000 * 32, 64);
    const got = await coresetSubsample(big, { dim: 32, count: 2000, onProgress: (i, total) => calls.push([i, total]) });
    expect(got.length).toBe(2000);
    expect(calls.at(-1)).toEqual([2000, 2000]);
    for (let i = 1; i < calls.length; i++) expect(calls[i][0]).toBeGreaterThan(calls[i - 1][0]);
    const all = await coresetSubsample(features, { dim: d, ratio: 1 });
    expect(Array.from(all)).toEqual(Array.from({ length: n }, (_, i) => i));
  });

  it('stops when aborted', async () => {
    const big = gaussian(100_000 * 64, 65);
    const controller = new AbortController();
    const run = coresetSubsample(big, { dim: 64, count: 50_000, signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    const err = await rejection(run);
    expect(err.name).toBe('AbortError');
    await expect(coresetSubsample(big, { dim: 64, count: 5, signal: AbortSignal.abort() })).rejects.toThrow(/abort/i);
  });

  it('validates its arguments', async () => {
    await expect(coresetSubsample(features, { dim: d })).rejects.toThrow(
      new TypeError('options must give exactly one of ratio and count, received ratio undefined and count undefined'),
    );
    await expect(coresetSubsample(features, { dim: d, ratio: 0.5, count: 3 })).rejects.toThrow(TypeError);
    await expect(coresetSubsample(features, { dim: d, ratio: 0.001 })).rejects.toThrow(
      /options.ratio = 0.001 keeps floor\(300 x 0.001\) = 0 rows/,
    );
    await expect(coresetSubsample(features, { dim: d, ratio: 1.5 })).rejects.toThrow(/options.ratio must be <= 1, received 1.5/);
    await expect(coresetSubsample(features, { dim: d, count: 301 })).rejects.toThrow(/options.count must be <= 300, received 301/);
    await expect(coresetSubsample(features, { dim: d, count: 3, projection: 'sparse' as 'uniform' })).rejects.toThrow(
      /options.projection must be one of 'uniform', 'gaussian', received 'sparse'/,
    );
    await expect(coresetSubsample(features, { dim: d, count: 3, onProgress: 5 as unknown as () => void })).rejects.toThrow(
      /options.onProgress must be a function, received 5/,
    );
    const bad = features.slice();
    bad[d * 7 + 2] = Infinity;
    await expect(coresetSubsample(bad, { dim: d, count: 3 })).rejects.toThrow(
      new RangeError(`features[${d * 7 + 2}] is Infinity (row 7, column 2); all values must be finite`),
    );
  });
});
