/**
 * Fuzzing every file format anomalens reads: seeded mutants (bit flips, truncations, length
 * fields, hostile JSON keys, re-sealed container checksums, absurd image dimensions) must
 * each load or be refused with a typed error (AnomalensError, TypeError, RangeError) naming
 * the file; never a crash, a hang or an untyped error. Each format's batch runs in a child
 * process, so a crash fails the test with the mutant's number and mutator.
 * ANOMALENS_FUZZ_COUNT (default 500 per format) and ANOMALENS_FUZZ_SEED run more or others;
 * ANOMALENS_FUZZ_ONLY=<format>:<i> replays one mutant.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Detector, FaissIndex, MemoryBank } from '../../lib/index.js';
import { writeSeededWeights } from '../helpers/seeded.js';
import { tempDir } from '../helpers/tmp.js';
import { ensureDist } from '../serve/helpers.js';

const COUNT = Number(process.env.ANOMALENS_FUZZ_COUNT ?? 500);
const SEED = Number(process.env.ANOMALENS_FUZZ_SEED ?? 1);
const ONLY = process.env.ANOMALENS_FUZZ_ONLY?.split(':');
const parity = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures/backbone/parity.json'), 'utf8'));
// Stem and layer1 of the seeded resnet18: a detector on it loads in milliseconds.
const tensors = (parity.archs.resnet18.tensors as [string, number[]][]).filter(([n]) => /^(conv1|bn1|layer1)\./.test(n));
const { dir, cleanup } = tempDir('anomalens-fuzz-');
const weights = join(dir, 'r18-stem.safetensors');
const bases: Record<string, { file: string; ext: string }> = {};

function seededBytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** A 24-bit bottom-up BMP (BITMAPINFOHEADER). */
function bmp(w: number, h: number, rgb: Buffer): Buffer {
  const stride = (w * 3 + 3) & ~3;
  const b = Buffer.alloc(54 + stride * h);
  b.write('BM', 0, 'latin1');
  b.writeUInt32LE(b.length, 2);
  b.writeUInt32LE(54, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(w, 18);
  b.writeInt32LE(h, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(24, 28);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++) b[54 + (h - 1 - y) * stride + x * 3 + c] = rgb[(y * w + x) * 3 + 2 - c];
  return b;
}

beforeAll(async () => {
  ensureDist();
  await writeSeededWeights(weights, tensors);
  bases.weights = { file: weights, ext: 'safetensors' };
  const det = await Detector.create({ method: 'dn2', arch: 'resnet18', weights, size: 32 });
  const train = { data: new Float32Array(seededBytes(4 * 3 * 32 * 32, 3)).map((v) => v / 255 - 0.5), shape: [4, 3, 32, 32] as [number, number, number, number] };
  await det.fit(train);
  bases.detector = { file: join(dir, 'base.anomalens'), ext: 'anomalens' };
  await det.save(bases.detector.file);
  det.dispose();
  const rows = new Float32Array(seededBytes(64 * 16, 5)).map((v) => v / 255);
  const bank = new MemoryBank(16);
  await bank.add(rows);
  bases.bank = { file: join(dir, 'base.anb'), ext: 'anb' };
  await bank.save(bases.bank.file);
  bank.dispose();
  const index = new FaissIndex(16, 'HNSW8');
  await index.add(rows);
  bases.faiss = { file: join(dir, 'base.anf'), ext: 'anf' };
  await index.save(bases.faiss.file);
  index.dispose();
  const w = 24, h = 20;
  const rgb = seededBytes(w * h * 3, 7);
  const img = () => sharp(rgb, { raw: { width: w, height: h, channels: 3 } });
  for (const [format, make] of [['png', () => img().png()], ['jpeg', () => img().jpeg()], ['tiff', () => img().tiff()]] as const) {
    bases[format] = { file: join(dir, `base.${format}`), ext: format };
    writeFileSync(bases[format].file, await make().toBuffer());
  }
  bases.bmp = { file: join(dir, 'base.bmp'), ext: 'bmp' };
  writeFileSync(bases.bmp.file, bmp(w, h, rgb));
  bases.mask = { file: join(dir, 'base_mask.png'), ext: 'png' };
  const mask = Buffer.alloc(w * h);
  for (let i = 0; i < mask.length; i++) mask[i] = (i % w) > 12 ? 255 : 0;
  writeFileSync(bases.mask.file, await sharp(mask, { raw: { width: w, height: h, channels: 1 } }).png().toBuffer());
});
afterAll(cleanup);

interface Outcome { counts: { ok: number; typed: number }; failures: { i: number; how: string; error: string }[] }

function runBatch(format: string): Promise<Outcome> {
  const work = join(dir, format);
  mkdirSync(work, { recursive: true });
  const progress = join(work, 'progress.txt');
  const cfg = { format, base: bases[format].file, ext: bases[format].ext, work, weights, seed: SEED, count: COUNT, progress, only: ONLY?.[0] === format ? Number(ONLY[1]) : undefined };
  const child = spawn(process.execPath, [join(import.meta.dirname, 'fuzz-child.mjs'), join(import.meta.dirname, '../../dist'), JSON.stringify(cfg)], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_NUM_THREADS: '1' },
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  // A hang is a failure too: 90 s is ~10x what a batch of 500 takes.
  const timer = setTimeout(() => child.kill('SIGKILL'), Number(process.env.ANOMALENS_FUZZ_TIMEOUT_MS ?? 90_000) * Math.max(1, COUNT / 500));
  return new Promise((resolve, reject) => {
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve(JSON.parse(out.trim().split('\n').pop()!));
      const last = existsSync(progress) ? readFileSync(progress, 'utf8').trim().split('\n').pop() : 'none';
      reject(new Error(`${format}: the reader ${signal ? `died of ${signal}` : `exited ${code}`} on mutant ${last} (seed ${SEED}; replay with ANOMALENS_FUZZ_SEED=${SEED} ANOMALENS_FUZZ_ONLY=${format}:${last?.split(' ')[0]})\n${err.slice(-2000)}`));
    });
  });
}

describe(`fuzzed files (${COUNT} mutants per format, seed ${SEED}): typed errors naming the file, no crash, no hang`, () => {
  for (const format of ['weights', 'detector', 'bank', 'faiss', 'png', 'jpeg', 'bmp', 'tiff', 'mask']) {
    it.skipIf(ONLY && ONLY[0] !== format)(format, async () => {
      const r = await runBatch(format);
      expect(r.failures, JSON.stringify(r.failures.slice(0, 5), null, 1)).toEqual([]);
      expect(r.counts.ok + r.counts.typed).toBe(ONLY ? 1 : COUNT);
      // Most mutants must be refused, or the mutators do not reach the parsers.
      if (!ONLY) expect(r.counts.typed).toBeGreaterThan(COUNT / 4);
      console.log(`${format}: ${r.counts.typed} refused, ${r.counts.ok} read`);
    });
  }
});
