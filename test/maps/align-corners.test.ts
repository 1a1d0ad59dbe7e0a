// Bilinear resize with align_corners = true (Reverse Distillation's cal_anomaly_map) against
// torch 1.13's F.interpolate (fixtures: test/fixtures/rd/make_fixtures.py), and against an
// obvious float64 twin.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resizeBilinear } from '../../lib/index.js';
import { uniform } from '../helpers/seeded.js';

const fx = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'rd', 'expected.json'), 'utf8')) as {
  alignedResize: { shape: [number, number, number, number]; size: [number, number]; out: number[] }[];
};

function twin(x: Float32Array, [n, c, ih, iw]: number[], [oh, ow]: number[]): Float64Array {
  const out = new Float64Array(n * c * oh * ow);
  const src = (d: number, i: number, o: number) => (o > 1 ? (d * (i - 1)) / (o - 1) : 0);
  for (let p = 0; p < n * c; p++)
    for (let y = 0; y < oh; y++)
      for (let xo = 0; xo < ow; xo++) {
        const sy = src(y, ih, oh), sx = src(xo, iw, ow);
        const y0 = Math.min(Math.floor(sy), ih - 1), x0 = Math.min(Math.floor(sx), iw - 1);
        const y1 = Math.min(y0 + 1, ih - 1), x1 = Math.min(x0 + 1, iw - 1);
        const ly = sy - y0, lx = sx - x0;
        const v = (yy: number, xx: number) => x[(p * ih + yy) * iw + xx];
        out[(p * oh + y) * ow + xo] = (1 - ly) * ((1 - lx) * v(y0, x0) + lx * v(y0, x1)) + ly * ((1 - lx) * v(y1, x0) + lx * v(y1, x1));
      }
  return out;
}

describe('resizeBilinear with alignCorners', () => {
  for (const c of fx.alignedResize) {
    it(`${c.shape.join('x')} -> ${c.size.join('x')}: torch and the float64 twin`, async () => {
      const count = c.shape.reduce((a, b) => a * b, 1);
      const x = Float32Array.from(uniform('aligned', count), (u) => 2 * u - 1);
      const y = await resizeBilinear(x, c.shape, c.size, { alignCorners: true });
      const t = twin(x, c.shape, c.size);
      expect(y.length).toBe(c.out.length);
      for (let i = 0; i < y.length; i++) {
        expect(Math.abs(y[i] - c.out[i]), `torch ${i}`).toBeLessThan(1e-6);
        expect(Math.abs(y[i] - t[i]), `twin ${i}`).toBeLessThan(1e-6);
      }
    });
  }

  it('keeps the corners and differs from align_corners = false', async () => {
    const x = Float32Array.from([0, 1, 2, 3]);
    const a = await resizeBilinear(x, [1, 2, 2], [3, 3], { alignCorners: true });
    expect([...a]).toEqual([0, 0.5, 1, 1, 1.5, 2, 2, 2.5, 3]);
    const row = Float32Array.from([0, 1]);
    const t = await resizeBilinear(row, [1, 1, 2], [1, 4], { alignCorners: true });
    expect([...t].map((v) => Math.fround(v))).toEqual([0, 1 / 3, 2 / 3, 1].map(Math.fround));
    const f = await resizeBilinear(row, [1, 1, 2], [1, 4]);
    expect([...f]).toEqual([0, 0.25, 0.75, 1]);
    await expect(resizeBilinear(x, [1, 2, 2], [3, 3], { alignCorners: 1 as unknown as boolean })).rejects.toThrow(/options.alignCorners/);
  });
});
