// Map kernels: bilinear resize against torch F.interpolate and cosine distance against torch
// F.cosine_similarity (bit for bit), Gaussian blur against scipy.ndimage.gaussian_filter in
// float64 (within one float32 rounding), L2 against numpy float64; slow TypeScript twins of
// every kernel on small odd shapes; out / in-place options; argument errors.
// Golden fixtures: test/fixtures/maps/make_fixtures.py.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import {
  cosineDistanceMap,
  gaussianBlur,
  l2DistanceMap,
  numThreads,
  resizeBilinear,
  setNumThreads,
} from '../../lib/index.js';
import { gaussianRadius } from '../../lib/internal.js';
import {
  blurReference,
  cosineReference,
  l2Reference,
  reflect,
  resizeReference,
  seededMaps,
  specialPixels,
} from '../helpers/maps-reference.js';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'maps');
const fixture = JSON.parse(readFileSync(join(FIX, 'expected.json'), 'utf8')) as { cases: Case[] };
const raw = gunzipSync(readFileSync(join(FIX, 'expected.bin.gz')));
const expected = new Float64Array(raw.buffer, raw.byteOffset, raw.byteLength / 8);

interface Case {
  name: string;
  op: 'resize' | 'blur' | 'cosine' | 'l2';
  shape: number[];
  size?: [number, number];
  sigma?: number;
  truncate?: number;
  special?: boolean;
  squared?: boolean;
  count: number;
  step: number;
  offset: number;
  sum: number;
  sumSquares: number;
}

const initialThreads = numThreads();
afterAll(() => setNumThreads(initialThreads));

/** Relative error of float32 `ours` against float64 `ref`, in units of float32 epsilon. */
function ulpError(ours: number, ref: number): number {
  const scale = Math.max(Math.abs(ref), 1e-30);
  return Math.abs(ours - ref) / scale / 2 ** -23;
}

function distanceInputs(c: Case): [Float32Array, Float32Array] {
  const a = seededMaps(`maps/${c.name}/a`, c.shape);
  const b = seededMaps(`maps/${c.name}/b`, c.shape);
  if (c.special) specialPixels(a, b, c.shape);
  return [a, b];
}

async function run(c: Case): Promise<Float32Array> {
  if (c.op === 'resize') return resizeBilinear(seededMaps(`maps/${c.name}/maps`, c.shape), c.shape as never, c.size!);
  if (c.op === 'blur')
    return gaussianBlur(seededMaps(`maps/${c.name}/maps`, c.shape), c.shape as never, c.sigma!, { truncate: c.truncate });
  const [a, b] = distanceInputs(c);
  if (c.op === 'cosine') return cosineDistanceMap(a, b, c.shape as never);
  return l2DistanceMap(a, b, c.shape as never, { squared: c.squared });
}

describe('against torch / scipy / numpy (fixtures)', () => {
  for (const c of fixture.cases) {
    const exact = c.op === 'resize' || c.op === 'cosine';
    it(`${c.op} ${c.name} ${JSON.stringify(c.shape)}${exact ? ' bit for bit' : ''}`, async () => {
      const out = await run(c);
      expect(out.length).toBe(c.count);
      let worst = 0;
      let mismatches = 0;
      for (let k = 0, i = 0; i < c.count; i += c.step, k++) {
        const ref = expected[c.offset + k];
        if (exact) {
          if (out[i] !== ref) mismatches++;
        } else {
          worst = Math.max(worst, ulpError(out[i], ref));
        }
      }
      expect(mismatches).toBe(0);
      // float64 accumulation rounded once: within one float32 rounding of the float64 reference.
      expect(worst).toBeLessThanOrEqual(0.51);
      let sum = 0;
      let sumSquares = 0;
      for (const v of out) {
        sum += v;
        sumSquares += v * v;
      }
      const tolerance = exact ? 1e-9 : 1e-6;
      expect(Math.abs(sum - c.sum)).toBeLessThanOrEqual(tolerance * Math.max(1, Math.abs(c.sum)) + tolerance * Math.sqrt(c.sumSquares));
      expect(Math.abs(sumSquares - c.sumSquares) / c.sumSquares).toBeLessThanOrEqual(tolerance);
    });
  }

  it('cosine fixture edge pixels: zero vectors give 1, opposite vectors 2, overflowing norms 1', async () => {
    const c = fixture.cases.find((x) => x.name === 'special-pixels')!;
    const out = await run(c);
    const [, , , w] = c.shape;
    expect(out[0]).toBe(1); // a = 0
    expect(out[2]).toBe(1); // |b|^2 overflows float32: b / inf = 0
    expect(out[w]).toBeCloseTo(0, 6); // b = a
    expect(out[w + 1]).toBeCloseTo(2, 6); // b = -a
    expect(out[w + 2]).toBeCloseTo(0, 6); // b = 2a
    expect(out[2 * w]).toBe(1); // both zero
  });
});

describe('slow TypeScript twins', () => {
  const resizeShapes: [number[], [number, number]][] = [
    [[1, 3, 13, 7], [31, 17]],
    [[2, 1, 13, 7], [31, 17]],
    [[1, 2, 17, 9], [5, 4]],
    [[2, 2, 1, 1], [3, 4]],
    [[1, 2, 1, 1], [1, 1]],
    [[1, 1, 1, 1], [1, 1]],
    [[1, 2, 6, 5], [6, 11]],
    [[1, 2, 3, 8], [1, 1]],
    [[1, 3, 1, 7], [2, 9]],
  ];
  for (const [shape, [oh, ow]] of resizeShapes)
    it(`resizeBilinear ${JSON.stringify(shape)} -> ${oh}x${ow}`, async () => {
      const x = seededMaps(`twin/resize/${shape.join('x')}`, shape);
      const ours = await resizeBilinear(x, shape as never, [oh, ow]);
      const ref = resizeReference(x, shape, oh, ow);
      for (let i = 0; i < ref.length; i++) expect(ulpError(ours[i], ref[i])).toBeLessThanOrEqual(1);
    });

  it('resizeBilinear: [n, h, w] is [n, 1, h, w]', async () => {
    const x = seededMaps('twin/resize3', [3, 5, 6]);
    expect(await resizeBilinear(x, [3, 5, 6], [11, 4])).toEqual(await resizeBilinear(x, [3, 1, 5, 6], [11, 4]));
  });

  const blurCases: [number[], number, number][] = [
    [[2, 7, 5], 0.5, 4],
    [[1, 3, 11], 4, 4],
    [[1, 13, 2], 1.7, 3],
    [[1, 1, 1], 2, 4],
    [[3, 4, 4], 0.9, 1],
    [[1, 7, 9], 50, 4], // radius 200: reflected back and forth many times
  ];
  for (const [shape, sigma, truncate] of blurCases)
    it(`gaussianBlur ${JSON.stringify(shape)} sigma ${sigma} truncate ${truncate} (direct 2-D sum)`, async () => {
      const x = seededMaps(`twin/blur/${shape.join('x')}`, shape);
      const ours = await gaussianBlur(x, shape as never, sigma, { truncate });
      const ref = blurReference(x, shape, sigma, truncate);
      for (let i = 0; i < ref.length; i++) expect(ulpError(ours[i], ref[i])).toBeLessThanOrEqual(1);
    });

  it('reflect() is scipy\'s half-sample symmetric extension, repeated', () => {
    const n = 4;
    const row = Array.from({ length: 20 }, (_, i) => reflect(i - 8, n));
    expect(row).toEqual([0, 1, 2, 3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0, 1, 2, 3]);
  });

  const distanceShapes = [
    [2, 7, 5, 3],
    [1, 33, 9, 7],
    [2, 9, 1, 1],
    [1, 3, 2, 2],
    [1, 1, 3, 5],
  ];
  for (const shape of distanceShapes) {
    it(`cosineDistanceMap ${JSON.stringify(shape)}`, async () => {
      const a = seededMaps(`twin/cos/${shape.join('x')}/a`, shape);
      const b = seededMaps(`twin/cos/${shape.join('x')}/b`, shape);
      specialPixels(a, b, shape);
      const ours = await cosineDistanceMap(a, b, shape as never);
      const ref = cosineReference(a, b, shape);
      for (let i = 0; i < ref.length; i++) expect(Math.abs(ours[i] - ref[i])).toBeLessThanOrEqual(1e-6);
    });
    it(`l2DistanceMap ${JSON.stringify(shape)} (and squared)`, async () => {
      const a = seededMaps(`twin/l2/${shape.join('x')}/a`, shape);
      const b = seededMaps(`twin/l2/${shape.join('x')}/b`, shape);
      for (const squared of [false, true]) {
        const ours = await l2DistanceMap(a, b, shape as never, { squared });
        const ref = l2Reference(a, b, shape, squared);
        for (let i = 0; i < ref.length; i++) expect(ulpError(ours[i], ref[i])).toBeLessThanOrEqual(0.51);
      }
    });
  }

  it('cosineDistanceMap honours eps', async () => {
    const a = new Float32Array([1e-6, 0]);
    const b = new Float32Array([1, 0]);
    const shape = [1, 2, 1, 1] as const;
    expect((await cosineDistanceMap(a, b, shape))[0]).toBeCloseTo(0, 6);
    // with eps 1e-3 the first vector is divided by 1e-3, not by its norm: cos = 1e-3
    expect((await cosineDistanceMap(a, b, shape, { eps: 1e-3 }))[0]).toBeCloseTo(1 - 1e-3, 6);
  });
});

describe('threads, views and options', () => {
  it('gives the same bits on 1 and 2 threads', async () => {
    const shape = [3, 70, 9, 13] as const;
    const a = seededMaps('threads/a', shape);
    const b = seededMaps('threads/b', shape);
    const results: Float32Array[][] = [];
    for (const t of [1, 2]) {
      setNumThreads(t);
      results.push([
        await resizeBilinear(a, shape, [37, 5]),
        await resizeBilinear(a.subarray(0, 3 * 9 * 13), [3, 9, 13], [37, 50]),
        await gaussianBlur(a.subarray(0, 3 * 9 * 13), [3, 9, 13], 2),
        await cosineDistanceMap(a, b, shape),
        await l2DistanceMap(a, b, shape),
      ]);
    }
    setNumThreads(initialThreads);
    for (let k = 0; k < results[0].length; k++) expect(results[1][k]).toEqual(results[0][k]);
  });

  it('reads inputs through views (byteOffset)', async () => {
    const base = seededMaps('views/base', [1 + 2 * 3 * 5 * 4]);
    const view = base.subarray(1);
    const copy = view.slice();
    expect(await resizeBilinear(view, [2, 3, 5, 4], [7, 3])).toEqual(await resizeBilinear(copy, [2, 3, 5, 4], [7, 3]));
    expect(await gaussianBlur(view, [6, 5, 4], 1.5)).toEqual(await gaussianBlur(copy, [6, 5, 4], 1.5));
    expect(await cosineDistanceMap(view, copy, [2, 3, 5, 4])).toEqual(await cosineDistanceMap(copy, copy, [2, 3, 5, 4]));
  });

  it('writes into options.out and returns it', async () => {
    const shape = [2, 3, 5, 4] as const;
    const a = seededMaps('out/a', shape);
    const b = seededMaps('out/b', shape);
    const out = new Float32Array(2 * 3 * 7 * 9);
    expect(await resizeBilinear(a, shape, [7, 9], { out })).toBe(out);
    expect(out).toEqual(await resizeBilinear(a, shape, [7, 9]));
    const map = new Float32Array(2 * 5 * 4);
    expect(await cosineDistanceMap(a, b, shape, { out: map })).toBe(map);
    expect(map).toEqual(await cosineDistanceMap(a, b, shape));
    expect(await l2DistanceMap(a, b, shape, { out: map, squared: true })).toBe(map);
    expect(map).toEqual(await l2DistanceMap(a, b, shape, { squared: true }));
    const blurred = new Float32Array(a.length);
    expect(await gaussianBlur(a, [6, 5, 4], 3, { out: blurred })).toBe(blurred);
    expect(blurred).toEqual(await gaussianBlur(a, [6, 5, 4], 3));
  });

  it('blurs in place when options.out is the input', async () => {
    const x = seededMaps('inplace', [4, 31, 17]);
    const expectedBlur = await gaussianBlur(x, [4, 31, 17], 4);
    expect(await gaussianBlur(x, [4, 31, 17], 4, { out: x })).toBe(x);
    expect(x).toEqual(expectedBlur);
  });

  it('refuses an out that overlaps an input', async () => {
    const buf = new Float32Array(200);
    const x = buf.subarray(0, 60);
    await expect(resizeBilinear(x, [1, 6, 10], [6, 10], { out: buf.subarray(50, 110) })).rejects.toThrow(
      /options\.out must not overlap maps/,
    );
    await expect(gaussianBlur(x, [1, 6, 10], 1, { out: buf.subarray(1, 61) })).rejects.toThrow(
      /options\.out must not overlap maps \(except as the very same array, in place\)/,
    );
    await expect(cosineDistanceMap(x, x, [1, 6, 5, 2], { out: buf.subarray(5, 15) })).rejects.toThrow(
      /options\.out must not overlap a/,
    );
  });
});

describe('argument errors', () => {
  const maps = new Float32Array(2 * 3 * 4);

  it('names the argument, the expectation and the value received', async () => {
    await expect(resizeBilinear([1, 2] as never, [1, 1, 2], [2, 2])).rejects.toThrow(
      new TypeError('maps must be a Float32Array, received an array of length 2'),
    );
    await expect(resizeBilinear(maps, [2, 3, 5], [2, 2])).rejects.toThrow(
      new RangeError('maps must have 30 elements for shape [2, 3, 5], received 24'),
    );
    await expect(resizeBilinear(maps, [2, 3, 4, 1, 1] as never, [2, 2])).rejects.toThrow(
      new RangeError('shape must be [n, c, h, w] or [n, h, w], received [2, 3, 4, 1, 1]'),
    );
    await expect(resizeBilinear(maps, [2, 3, 4], [0, 2])).rejects.toThrow(new RangeError('size[0] must be >= 1, received 0'));
    await expect(resizeBilinear(maps, [2, 3, 4], [2.5, 2])).rejects.toThrow(new RangeError('size[0] must be an integer, received 2.5'));
    await expect(resizeBilinear(maps, 'x' as never, [2, 2])).rejects.toThrow(TypeError);
    await expect(resizeBilinear(maps, [2, 3, 4], [2, 2], { out: new Float32Array(3) })).rejects.toThrow(
      new RangeError('options.out must have 8 elements, received 3'),
    );
    await expect(gaussianBlur(maps, [2, 3, 4], 0)).rejects.toThrow(new RangeError('sigma must be > 0, received 0'));
    await expect(gaussianBlur(maps, [2, 3, 4], Number.NaN)).rejects.toThrow(new RangeError('sigma must be a finite number, received NaN'));
    await expect(gaussianBlur(maps, [2, 3, 4], '4' as never)).rejects.toThrow(new TypeError('sigma must be a number, received "4"'));
    await expect(gaussianBlur(maps, [2, 3, 4], 1, { truncate: -1 })).rejects.toThrow(
      new RangeError('options.truncate must be >= 0, received -1'),
    );
    await expect(gaussianBlur(maps, [2, 3, 4], 1e6, { truncate: 4 })).rejects.toThrow(
      /kernel radius int\(truncate \* sigma \+ 0\.5\) must be <= 65536, received 4000000/,
    );
    await expect(gaussianBlur(maps, [2, 12], 1)).rejects.toThrow(new RangeError('shape must have 3 dimensions, received [2, 12]'));
    await expect(cosineDistanceMap(maps, new Float32Array(23), [2, 3, 4, 1])).rejects.toThrow(
      new RangeError('b must have 24 elements for shape [2, 3, 4, 1], received 23'),
    );
    await expect(cosineDistanceMap(maps, maps, [2, 3, 4, 1], { eps: 0 })).rejects.toThrow(
      new RangeError('options.eps must be > 0 (as a float32), received 0'),
    );
    await expect(l2DistanceMap(maps, maps, [2, 3, 4, 1], { squared: 1 as never })).rejects.toThrow(
      new TypeError('options.squared must be a boolean, received 1'),
    );
  });

  it('rejects NaN and infinity with the element and its coordinates', async () => {
    const x = seededMaps('nan', [2, 3, 4, 5]);
    x[1 * 60 + 2 * 20 + 3 * 5 + 4] = Number.NaN;
    await expect(resizeBilinear(x, [2, 3, 4, 5], [2, 2])).rejects.toThrow(
      new RangeError('maps[119] is NaN (image 1, channel 2, y 3, x 4); all values must be finite'),
    );
    await expect(gaussianBlur(x, [6, 4, 5], 1)).rejects.toThrow(
      new RangeError('maps[119] is NaN (image 5, y 3, x 4); all values must be finite'),
    );
    const y = seededMaps('inf', [2, 3, 4, 5]);
    y[7] = -Infinity;
    await expect(cosineDistanceMap(y.map(() => 1), y, [2, 3, 4, 5])).rejects.toThrow(
      new RangeError('b[7] is -Infinity (image 0, channel 0, y 1, x 2); all values must be finite'),
    );
    await expect(l2DistanceMap(y, y, [2, 3, 4, 5])).rejects.toThrow(/^a\[7\] is -Infinity/);
    // a NaN that a downsampling resize would skip is still refused
    const z = new Float32Array(16);
    z[5] = Number.NaN;
    await expect(resizeBilinear(z, [1, 4, 4], [1, 1])).rejects.toThrow(/maps\[5\] is NaN/);
  });

  it('rejects bad calls of the native binding with codes', async () => {
    const { native } = await import('../../lib/internal.js');
    const err = await Promise.resolve()
      .then(() => native().mapsResizeBilinear(new Float32Array(3), [1, 1, 2, 2], [1, 1], undefined))
      .catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('ERR_INVALID_ARGUMENT');
    expect(() => native().mapsGaussianBlur(new Float32Array(4), [1, 2, 2], -1, 4, undefined)).toThrow(RangeError);
    expect(() => native().mapsCosineDistance(new Float32Array(4), new Float32Array(4), [1, 1, 2, 2], 1e-8, new Float32Array(3))).toThrow(
      RangeError,
    );
  });

  it('gaussianRadius is scipy\'s int(truncate * sigma + 0.5)', () => {
    expect(gaussianRadius(4)).toBe(16);
    expect(gaussianRadius(0.5)).toBe(2);
    expect(gaussianRadius(1.3, 2.5)).toBe(3);
    expect(gaussianRadius(0.1)).toBe(0);
  });
});
