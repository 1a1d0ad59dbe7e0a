// The PaDiM kernel wrappers against a slow float64 twin on small odd sizes, and the wrappers'
// argument errors (PatchCore's embedding is checked end to end in test/detector/).
import { describe, expect, it } from 'vitest';
import { padimEmbed, padimFit, padimScore, patchcoreEmbed } from '../../lib/internal.js';
import { gaussian } from '../helpers/knn-reference.js';

/** Mean [p, d] and inverse of (unbiased covariance + reg I) [p, d, d] of [n, d, p] rows, in float64. */
function fitTwin(e: Float32Array, n: number, d: number, p: number, reg: number) {
  const mean = new Float64Array(p * d);
  const precision = new Float64Array(p * d * d);
  for (let pos = 0; pos < p; pos++) {
    const mu = Array.from({ length: d }, (_, c) => {
      let s = 0;
      for (let i = 0; i < n; i++) s += e[(i * d + c) * p + pos];
      return s / n;
    });
    // [cov | I], Gauss-Jordan with partial pivoting.
    const a = Array.from({ length: d }, (_, r) => {
      const row = new Array(2 * d).fill(0);
      for (let c = 0; c < d; c++) {
        let s = 0;
        for (let i = 0; i < n; i++) s += (e[(i * d + r) * p + pos] - mu[r]) * (e[(i * d + c) * p + pos] - mu[c]);
        row[c] = s / (n - 1) + (r === c ? reg : 0);
      }
      row[d + r] = 1;
      return row;
    });
    for (let col = 0; col < d; col++) {
      let piv = col;
      for (let r = col + 1; r < d; r++) if (Math.abs(a[r][col]) > Math.abs(a[piv][col])) piv = r;
      [a[col], a[piv]] = [a[piv], a[col]];
      const v = a[col][col];
      for (let c = 0; c < 2 * d; c++) a[col][c] /= v;
      for (let r = 0; r < d; r++) {
        if (r === col) continue;
        const f = a[r][col];
        for (let c = 0; c < 2 * d; c++) a[r][c] -= f * a[col][c];
      }
    }
    for (let c = 0; c < d; c++) mean[pos * d + c] = mu[c];
    for (let r = 0; r < d; r++) for (let c = 0; c < d; c++) precision[(pos * d + r) * d + c] = a[r][d + c];
  }
  return { mean, precision };
}

function expectClose(got: Float32Array, want: ArrayLike<number>, tol: number) {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (Math.abs(want[i]) + 1e-3));
  expect(worst).toBeLessThan(tol);
}

describe('PaDiM kernels', () => {
  const [n, d, p] = [7, 3, 5];
  const e = gaussian(n * d * p, 11);

  it('padimFit and padimScore equal the float64 twin', async () => {
    const [mean, precision] = await padimFit(e, [n, d, p], 0.01);
    const twin = fitTwin(e, n, d, p, 0.01);
    expectClose(mean, twin.mean, 1e-4);
    expectClose(precision, twin.precision, 1e-4);
    const q = gaussian(2 * d * p, 12);
    const dist = await padimScore(q, [2, d, p], mean, precision);
    const want = new Float64Array(2 * p);
    for (let i = 0; i < 2; i++)
      for (let pos = 0; pos < p; pos++) {
        const x = Array.from({ length: d }, (_, c) => q[(i * d + c) * p + pos] - twin.mean[pos * d + c]);
        let s = 0;
        for (let r = 0; r < d; r++) for (let c = 0; c < d; c++) s += x[r] * twin.precision[(pos * d + r) * d + c] * x[c];
        want[i * p + pos] = Math.sqrt(s);
      }
    expectClose(dist, want, 1e-4);
  });

  it('padimEmbed picks the channels, deeper layers repeated to the first grid', async () => {
    const a = { data: gaussian(2 * 2 * 4 * 6, 1), shape: [2, 2, 4, 6] as [number, number, number, number] };
    const b = { data: gaussian(2 * 3 * 2 * 3, 2), shape: [2, 3, 2, 3] as [number, number, number, number] };
    const out = await padimEmbed([a, b], Int32Array.from([4, 0]));
    expect(out.length).toBe(2 * 2 * 4 * 6);
    for (let i = 0; i < 2; i++)
      for (let y = 0; y < 4; y++)
        for (let x = 0; x < 6; x++) {
          // channel 4 = b's channel 2 at the nearest source pixel floor(y * 2 / 4), floor(x * 3 / 6)
          expect(out[((i * 2 + 0) * 4 + y) * 6 + x]).toBe(b.data[((i * 3 + 2) * 2 + Math.floor(y / 2)) * 3 + Math.floor(x / 2)]);
          expect(out[((i * 2 + 1) * 4 + y) * 6 + x]).toBe(a.data[((i * 2 + 0) * 4 + y) * 6 + x]);
        }
  });

  it('rejects bad arguments, naming them', async () => {
    const t = { data: new Float32Array(8), shape: [1, 2, 2, 2] as [number, number, number, number] };
    await expect(padimFit(e, [n, d, p + 1], 0.01)).rejects.toThrow(/embeddings must have 126 elements, received 105/);
    await expect(padimFit(e.subarray(0, d * p), [1, d, p], 0.01)).rejects.toThrow(/shape\[0\] must be >= 2/);
    await expect(padimFit(e, [n, d, p], -1)).rejects.toThrow(/reg must be >= 0/);
    await expect(padimScore(e, [n, d, p], new Float32Array(3), new Float32Array(45))).rejects.toThrow(/mean must have 15 elements/);
    await expect(padimEmbed([t], Int32Array.from([2]))).rejects.toThrow(/channels\[0\] must be in \[0, 2\), received 2/);
    await expect(padimEmbed([t], [0] as unknown as Int32Array)).rejects.toThrow(TypeError);
    await expect(patchcoreEmbed(t, { data: new Float32Array(16), shape: [2, 2, 2, 2] }, 4, 4)).rejects.toThrow(
      /a and b must hold the same number of images, received 1 and 2/,
    );
    await expect(patchcoreEmbed(t, { data: new Float32Array(7), shape: [1, 2, 2, 2] }, 4, 4)).rejects.toThrow(/b.data must have 8 elements/);
  });
});
