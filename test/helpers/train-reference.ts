/**
 * Slow, obvious float64 twins of the training ops' forwards, and central finite differences
 * of the scalar sum(forward(...) * dy) with them: the reference the native backwards are
 * checked against besides autograd. Also the fixture loader of test/fixtures/train.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { uniform } from './seeded.js';

export interface FixtureOutput {
  offset: number;
  shape: number[];
  count: number;
  value?: number;
}
export interface FixtureCase {
  name: string;
  op: string;
  params: Record<string, unknown>;
  inputs: [string, number[], number, number][];
  outputs: Record<string, FixtureOutput>;
}

const FIX = join(import.meta.dirname, '..', 'fixtures', 'train');

export function loadTrainFixtures(): { cases: FixtureCase[]; get: (c: FixtureCase, out: string) => Float32Array; input: (c: FixtureCase, name: string) => Float32Array } {
  const json = JSON.parse(readFileSync(join(FIX, 'expected.json'), 'utf8')) as { cases: FixtureCase[] };
  const bin = gunzipSync(readFileSync(join(FIX, 'expected.bin.gz')));
  const all = new Float32Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength));
  return {
    cases: json.cases,
    get(c, out) {
      const o = c.outputs[out];
      if (!o) throw new Error(`case ${c.name} has no output ${out}`);
      return all.slice(o.offset, o.offset + o.count);
    },
    input(c, name) {
      const spec = c.inputs.find((s) => s[0] === name || s[0].endsWith(`.${name}`));
      if (!spec) throw new Error(`case ${c.name} has no input ${name}`);
      return seededValues(...spec);
    },
  };
}

/** scale * (2 u - 1) + offset rounded to float32, as the fixture script's seeded(). */
export function seededValues(name: string, shape: number[], scale: number, offset: number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const u = uniform(name, n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * (2.0 * u[i] - 1.0) + offset;
  return out;
}

/** max |a - b| / max |b|: the normwise relative error. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return den === 0 ? num : num / den;
}

export interface Conv64 {
  n: number; c: number; h: number; w: number; k: number; kh: number; kw: number;
  sh: number; sw: number; ph: number; pw: number;
}

/** torch's conv2d in float64: y[b, o, i, j] = bias[o] + sum x[b, c, i s - p + u, j s - p + v] w[o, c, u, v]. */
export function conv2d64(g: Conv64, x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null): Float64Array {
  const oh = Math.floor((g.h + 2 * g.ph - g.kh) / g.sh) + 1;
  const ow = Math.floor((g.w + 2 * g.pw - g.kw) / g.sw) + 1;
  const y = new Float64Array(g.n * g.k * oh * ow);
  for (let n = 0; n < g.n; n++)
    for (let o = 0; o < g.k; o++)
      for (let i = 0; i < oh; i++)
        for (let j = 0; j < ow; j++) {
          let s = b ? b[o] : 0;
          for (let c = 0; c < g.c; c++)
            for (let u = 0; u < g.kh; u++) {
              const yy = i * g.sh - g.ph + u;
              if (yy < 0 || yy >= g.h) continue;
              for (let v = 0; v < g.kw; v++) {
                const xx = j * g.sw - g.pw + v;
                if (xx < 0 || xx >= g.w) continue;
                s += x[((n * g.c + c) * g.h + yy) * g.w + xx] * w[((o * g.c + c) * g.kh + u) * g.kw + v];
              }
            }
          y[((n * g.k + o) * oh + i) * ow + j] = s;
        }
  return y;
}

/** torch's conv_transpose2d in float64, weight [c, k, kh, kw]: each input pixel scatters its kernel. */
export function convTranspose2d64(g: Conv64, x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null): Float64Array {
  const oh = (g.h - 1) * g.sh - 2 * g.ph + g.kh;
  const ow = (g.w - 1) * g.sw - 2 * g.pw + g.kw;
  const y = new Float64Array(g.n * g.k * oh * ow);
  for (let n = 0; n < g.n; n++) {
    for (let o = 0; o < g.k; o++) for (let p = 0; p < oh * ow; p++) y[(n * g.k + o) * oh * ow + p] = b ? b[o] : 0;
    for (let c = 0; c < g.c; c++)
      for (let i = 0; i < g.h; i++)
        for (let j = 0; j < g.w; j++) {
          const xv = x[((n * g.c + c) * g.h + i) * g.w + j];
          for (let o = 0; o < g.k; o++)
            for (let u = 0; u < g.kh; u++) {
              const yy = i * g.sh - g.ph + u;
              if (yy < 0 || yy >= oh) continue;
              for (let v = 0; v < g.kw; v++) {
                const xx = j * g.sw - g.pw + v;
                if (xx < 0 || xx >= ow) continue;
                y[((n * g.k + o) * oh + yy) * ow + xx] += xv * w[((c * g.k + o) * g.kh + u) * g.kw + v];
              }
            }
        }
  }
  return y;
}

/** Batch norm in float64: training mode (batch mean, biased variance) or with given statistics. */
export function batchNorm64(
  [N, C, H, W]: number[], x: ArrayLike<number>, gamma: ArrayLike<number>, beta: ArrayLike<number>, eps: number,
  stats?: { mean: ArrayLike<number>; variance: ArrayLike<number> },
): Float64Array {
  const y = new Float64Array(N * C * H * W);
  const m = N * H * W;
  for (let c = 0; c < C; c++) {
    let mean: number;
    let variance: number;
    if (stats) {
      mean = stats.mean[c];
      variance = stats.variance[c];
    } else {
      let s = 0;
      for (let n = 0; n < N; n++) for (let p = 0; p < H * W; p++) s += x[(n * C + c) * H * W + p];
      mean = s / m;
      let q = 0;
      for (let n = 0; n < N; n++) for (let p = 0; p < H * W; p++) q += (x[(n * C + c) * H * W + p] - mean) ** 2;
      variance = q / m;
    }
    const inv = 1 / Math.sqrt(variance + eps);
    for (let n = 0; n < N; n++)
      for (let p = 0; p < H * W; p++) {
        const i = (n * C + c) * H * W + p;
        y[i] = (x[i] - mean) * inv * gamma[c] + beta[c];
      }
  }
  return y;
}

/** torch.nn.Linear in float64. */
export function linear64(n: number, d: number, k: number, x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null): Float64Array {
  const y = new Float64Array(n * k);
  for (let i = 0; i < n; i++)
    for (let o = 0; o < k; o++) {
      let s = b ? b[o] : 0;
      for (let j = 0; j < d; j++) s += x[i * d + j] * w[o * d + j];
      y[i * k + o] = s;
    }
  return y;
}

/**
 * d/d(args[which][i]) of sum(f(args) * dy) by central differences in float64 (step h), for the
 * listed indices (all when omitted).
 */
export function finiteDifferences(
  f: (args: Float64Array[]) => Float64Array, args: ArrayLike<number>[], which: number, dy: ArrayLike<number>,
  indices?: number[], h = 1e-5,
): Float64Array {
  const a = args.map((v) => Float64Array.from(v));
  const target = a[which];
  const idx = indices ?? Array.from({ length: target.length }, (_, i) => i);
  const out = new Float64Array(idx.length);
  const dot = (y: Float64Array) => {
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i] * dy[i];
    return s;
  };
  idx.forEach((i, t) => {
    const v = target[i];
    target[i] = v + h;
    const plus = dot(f(a));
    target[i] = v - h;
    const minus = dot(f(a));
    target[i] = v;
    out[t] = (plus - minus) / (2 * h);
  });
  return out;
}

/** Every `step`-th index of 0..count-1 (and the last), for sampled finite differences. */
export function sampleIndices(count: number, step: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i += step) out.push(i);
  if (out[out.length - 1] !== count - 1) out.push(count - 1);
  return out;
}
