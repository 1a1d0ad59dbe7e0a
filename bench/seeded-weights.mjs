// Seeded weights for benches: the same values as test/helpers/seeded.ts (plain JS, so that
// benches need no TypeScript from test/). Speed does not depend on the values; the formula
// only keeps activations at a sane scale (no denormals) through many layers.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensors } from '../dist/lib/index.js';

const here = dirname(fileURLToPath(import.meta.url));

function fnv1a(s) {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export function seededTensor(name, shape) {
  const n = shape.reduce((a, b) => a * b, 1);
  const seed = fnv1a(name);
  let f;
  if (name.endsWith('running_var')) f = (v) => 0.5 + v;
  else if (name.endsWith('running_mean')) f = (v) => 0.1 * (2 * v - 1);
  else if ((name.endsWith('.weight') || name.endsWith('_gamma')) && shape.length === 1) f = (v) => 0.5 + 0.5 * v;
  else if (name.endsWith('.bias') || name.endsWith('_beta')) f = (v) => 0.1 * (2 * v - 1);
  else {
    const bound = Math.sqrt(6.0 / shape.slice(1).reduce((a, b) => a * b, 1));
    f = (v) => (2 * v - 1) * bound;
  }
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let x = (Math.imul(i, 0x9e3779b9) + seed) >>> 0;
    x ^= x >>> 16;
    x = Math.imul(x, 0x7feb352d) >>> 0;
    x ^= x >>> 15;
    x = Math.imul(x, 0x846ca68b) >>> 0;
    x ^= x >>> 16;
    out[i] = f((x >>> 0) / 4294967296);
  }
  return out;
}

/** The [name, shape] list of `arch` (torchvision names) from the backbone parity fixture. */
export function archTensors(arch) {
  const fixture = JSON.parse(readFileSync(join(here, '..', 'test', 'fixtures', 'backbone', 'parity.json'), 'utf8'));
  const a = fixture.archs[arch];
  if (!a) throw new Error(`no tensor list for ${arch} in test/fixtures/backbone/parity.json`);
  return a.tensors;
}

/**
 * Path of a seeded weights file for `arch` holding the stem and the stages up to `lastStage`
 * (1-4), written on first use under `dir` and reused afterwards.
 */
export async function seededWeights(arch, lastStage, dir = join(here, '.peers', 'weights')) {
  const path = join(dir, `${arch}-stages1-${lastStage}.seeded.safetensors`);
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  const keep = (name) => {
    const m = /^layer(\d)\./.exec(name);
    return m ? Number(m[1]) <= lastStage : !name.startsWith('fc.');
  };
  const tensors = {};
  for (const [name, shape] of archTensors(arch)) if (keep(name)) tensors[name] = { shape, data: seededTensor(name, shape) };
  await writeSafetensors(path, tensors);
  return path;
}

/** A 32-bit hash of (seed, i), an unsigned integer (the benches' seeded data). */
export function hash32(seed, i) {
  let x = (i + Math.imul(seed, 0x9e3779b9)) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** n hashed values in [-scale, scale) from `seed` (the benches' seeded tensors). */
export function hashed(n, seed, scale = 1) {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * (hash32(seed, i) / 2 ** 31 - 1);
  return out;
}
