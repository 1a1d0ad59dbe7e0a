/**
 * Slow, obvious TypeScript twins of the map kernels (lib/maps/maps.ts), written from the reference
 * definitions rather than from our C++: PyTorch's bilinear source index / weights and its two
 * kernels' arithmetic (float rounding emulated with Math.fround), scipy's Gaussian filter as a
 * direct 2-D sum over the reflected neighbourhood (no separability), and cosine / Euclidean
 * distances per pixel.
 */
import { uniform } from './seeded.js';

const f = Math.fround;

/** The test inputs: element i of `name` is float32(2 * uniform(name)[i] - 1), as make_fixtures.py. */
export function seededMaps(name: string, shape: readonly number[]): Float32Array {
  const u = uniform(name, shape.reduce((a, b) => a * b, 1));
  const out = new Float32Array(u.length);
  for (let i = 0; i < u.length; i++) out[i] = 2 * u[i] - 1;
  return out;
}

/** make_fixtures.py's special_pixels(): edge cases over some pixels of image 0 of [n, c, h, w]. */
export function specialPixels(a: Float32Array, b: Float32Array, shape: readonly number[]): void {
  const [, c, h, w] = shape;
  const each = (y: number, x: number, fn: (i: number) => void) => {
    if (y < h && x < w) for (let ch = 0; ch < c; ch++) fn((ch * h + y) * w + x);
  };
  each(0, 0, (i) => (a[i] = 0));
  each(0, 1, (i) => (a[i] = f(a[i] * 1e-10)));
  each(0, 2, (i) => (b[i] = f(b[i] * 1e19)));
  each(1, 0, (i) => (b[i] = a[i]));
  each(1, 1, (i) => (b[i] = -a[i]));
  each(1, 2, (i) => (b[i] = 2 * a[i]));
  each(2, 0, (i) => {
    a[i] = 0;
    b[i] = 0;
  });
}

interface Tap {
  i0: number;
  i1: number;
  l0: number;
  l1: number;
}

/** PyTorch's compute_source_index_and_lambda (align_corners false): float scale, double index, float weights. */
function tap(inSize: number, outSize: number, d: number): Tap {
  if (inSize === outSize) return { i0: d, i1: d, l0: 1, l1: 0 };
  const scale = f(inSize / outSize);
  const src = Math.max(scale * (d + 0.5) - 0.5, 0);
  const i0 = Math.trunc(src);
  const l1 = f(Math.min(Math.max(src - i0, 0), 1));
  return { i0, i1: i0 < inSize - 1 ? i0 + 1 : i0, l0: f(1 - l1), l1 };
}

/**
 * F.interpolate(bilinear, align_corners=False) of [n, c, ih, iw]. The channels-last kernel
 * (c == 1 or a 1 x 1 input) sums float weights * values in float64; the generic one is
 * fma(h0, ly0, h1 * ly1) over h = fma(v0, lx0, v1 * lx1), emulated here as fround(exact
 * product + addend), which can differ from a true fma by one ulp in rare double-rounding cases.
 */
export function resizeReference(x: Float32Array, shape: readonly number[], oh: number, ow: number): Float32Array {
  const [n, c, ih, iw] = shape;
  const channelsLast = c === 1 || ih * iw === 1;
  const fma = (a: number, b: number, addend: number) => f(a * b + addend);
  const out = new Float32Array(n * c * oh * ow);
  for (let p = 0; p < n * c; p++)
    for (let y = 0; y < oh; y++) {
      const ty = tap(ih, oh, y);
      for (let xo = 0; xo < ow; xo++) {
        const tx = tap(iw, ow, xo);
        const v = (yy: number, xx: number) => x[(p * ih + yy) * iw + xx];
        let r: number;
        if (channelsLast) {
          r = f(ty.l0 * tx.l0) * v(ty.i0, tx.i0) + f(ty.l0 * tx.l1) * v(ty.i0, tx.i1);
          r += f(ty.l1 * tx.l0) * v(ty.i1, tx.i0);
          r += f(ty.l1 * tx.l1) * v(ty.i1, tx.i1);
        } else {
          const h0 = fma(v(ty.i0, tx.i0), tx.l0, f(v(ty.i0, tx.i1) * tx.l1));
          const h1 = fma(v(ty.i1, tx.i0), tx.l0, f(v(ty.i1, tx.i1) * tx.l1));
          r = fma(h0, ty.l0, f(h1 * ty.l1));
        }
        out[(p * oh + y) * ow + xo] = r;
      }
    }
  return out;
}

/** scipy's 'reflect': half-sample symmetric, periodic with period 2n. */
export function reflect(i: number, n: number): number {
  const m = ((i % (2 * n)) + 2 * n) % (2 * n);
  return m < n ? m : 2 * n - 1 - m;
}

/** gaussian_filter(x, sigma, mode='reflect', truncate) per [h, w] map, as one direct 2-D sum in float64. */
export function blurReference(x: Float32Array, shape: readonly number[], sigma: number, truncate = 4): Float64Array {
  const [n, h, w] = shape;
  const r = Math.trunc(truncate * sigma + 0.5);
  const k: number[] = [];
  for (let i = -r; i <= r; i++) k.push(Math.exp((-0.5 / (sigma * sigma)) * i * i));
  const sum = k.reduce((a, b) => a + b, 0);
  const kn = k.map((v) => v / sum);
  const out = new Float64Array(n * h * w);
  for (let m = 0; m < n; m++)
    for (let y = 0; y < h; y++)
      for (let xo = 0; xo < w; xo++) {
        let s = 0;
        for (let i = -r; i <= r; i++)
          for (let j = -r; j <= r; j++) s += kn[i + r] * kn[j + r] * x[(m * h + reflect(y + i, h)) * w + reflect(xo + j, w)];
        out[(m * h + y) * w + xo] = s;
      }
  return out;
}

/**
 * 1 - cos per pixel with torch 1.13's semantics: each vector divided by max(||v||, eps), with
 * the squared norm accumulated in float32 (so it overflows where torch's does), then the dot
 * product of the normalised vectors.
 */
export function cosineReference(a: Float32Array, b: Float32Array, shape: readonly number[], eps = 1e-8): Float32Array {
  const [n, c, h, w] = shape;
  const hw = h * w;
  const out = new Float32Array(n * hw);
  for (let i = 0; i < n; i++)
    for (let p = 0; p < hw; p++) {
      const at = (ch: number) => (i * c + ch) * hw + p;
      let sa = 0;
      let sb = 0;
      for (let ch = 0; ch < c; ch++) {
        sa = f(sa + f(a[at(ch)] * a[at(ch)]));
        sb = f(sb + f(b[at(ch)] * b[at(ch)]));
      }
      const na = Math.max(f(Math.sqrt(sa)), f(eps));
      const nb = Math.max(f(Math.sqrt(sb)), f(eps));
      let dot = 0;
      for (let ch = 0; ch < c; ch++) dot += f(f(a[at(ch)] / na) * f(b[at(ch)] / nb));
      out[i * hw + p] = 1 - dot;
    }
  return out;
}

/** Euclidean distance (or its square) over channels per pixel, in float64. */
export function l2Reference(a: Float32Array, b: Float32Array, shape: readonly number[], squared = false): Float64Array {
  const [n, c, h, w] = shape;
  const hw = h * w;
  const out = new Float64Array(n * hw);
  for (let i = 0; i < n; i++)
    for (let p = 0; p < hw; p++) {
      let s = 0;
      for (let ch = 0; ch < c; ch++) {
        const d = a[(i * c + ch) * hw + p] - b[(i * c + ch) * hw + p];
        s += d * d;
      }
      out[i * hw + p] = squared ? s : Math.sqrt(s);
    }
  return out;
}
