/**
 * The seeded value formula shared with test/fixtures/backbone/make_parity.py: element i of
 * tensor `name` is lowbias32(i * 0x9E3779B9 + fnv1a(name)) / 2^32, mapped per tensor kind.
 * Both sides compute in float64 with the same operations and round to float32 once.
 */
import { writeSafetensors } from '../../lib/io/safetensors.js';

export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export function uniform(name: string, count: number): Float64Array {
  const seed = fnv1a(name);
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    let x = (Math.imul(i, 0x9e3779b9) + seed) >>> 0;
    x ^= x >>> 16;
    x = Math.imul(x, 0x7feb352d) >>> 0;
    x ^= x >>> 15;
    x = Math.imul(x, 0x846ca68b) >>> 0;
    x ^= x >>> 16;
    out[i] = (x >>> 0) / 4294967296;
  }
  return out;
}

export function seededTensor(name: string, shape: readonly number[]): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const u = uniform(name, n);
  const out = new Float32Array(n);
  let f: (v: number) => number;
  if (name.endsWith('running_var')) f = (v) => 0.5 + v;
  else if (name.endsWith('running_mean')) f = (v) => 0.1 * (2 * v - 1);
  else if ((name.endsWith('.weight') || name.endsWith('_gamma')) && shape.length === 1) f = (v) => 0.5 + 0.5 * v;
  else if (name.endsWith('.bias') || name.endsWith('_beta')) f = (v) => 0.1 * (2 * v - 1);
  else {
    const bound = Math.sqrt(6.0 / shape.slice(1).reduce((a, b) => a * b, 1));
    f = (v) => (2 * v - 1) * bound;
  }
  for (let i = 0; i < n; i++) out[i] = f(u[i]);
  return out;
}

export function seededInput(shape: readonly number[], name = 'input'): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const u = uniform(name, n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = 2.0 * (2 * u[i] - 1);
  return out;
}

/** Writes a weights file holding the seeded values of `tensors` ([name, shape] pairs). */
export async function writeSeededWeights(path: string, tensors: [string, number[]][]): Promise<void> {
  const out: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, shape] of tensors) out[name] = { shape, data: seededTensor(name, shape) };
  await writeSafetensors(path, out);
}
