/**
 * The event loop never stalls while detectors work, and memory stays flat over repeated calls.
 * These are properties of blocking and of leaks, not benchmarks: the bounds are far above what
 * a non-blocking, non-leaking implementation shows even on a loaded machine, and far below what
 * a synchronous O(n) pass or a leaked batch per call gives.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backbone, Detector, FaissIndex, MemoryBank, type Tensor4 } from '../../lib/index.js';
import { seededInput, writeSeededWeights } from '../helpers/seeded.js';
import { tempDir } from '../helpers/tmp.js';
import { writeTile } from '../serve/helpers.js';

setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;
const parity = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures/backbone/parity.json'), 'utf8'));
const tensors = (parity.archs.resnet18.tensors as [string, number[]][]).filter(([n]) => !n.startsWith('layer4') && !n.startsWith('fc'));
const { dir, cleanup } = tempDir('anomalens-resources-');
const weights = join(dir, 'r18.safetensors');
const MB = 1 << 20;
let det: Detector;
const paths: string[] = [];

beforeAll(async () => {
  await writeSeededWeights(weights, tensors);
  for (let i = 0; i < 40; i++) {
    paths.push(join(dir, `${i}.png`));
    await writeTile(paths[i], i, i % 5 === 0);
  }
  det = await Detector.create({ method: 'patchcore', arch: 'resnet18', weights, size: 64, batchSize: 8, methodOptions: { coreset: 0.5 } });
  await det.fit(paths.slice(0, 12));
});
afterAll(() => {
  det?.dispose();
  cleanup();
});

function settle(): { rss: number; heap: number; external: number } {
  gc();
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed, external: m.external + m.arrayBuffers };
}

describe('event loop', () => {
  it.each(['patchcore', 'spade'] as const)('%s: predict over 200 images (files decoded and scored in batches) never blocks the loop for long', async (method) => {
    let d = det;
    if (method !== 'patchcore') {
      d = await Detector.create({ method, arch: 'resnet18', weights, size: 64, batchSize: 8 });
      await d.fit(paths.slice(0, 12));
    }
    await d.predict(paths.slice(0, 8)); // warm-up: code compiled, pools started
    const h = monitorEventLoopDelay({ resolution: 5 });
    h.enable();
    const images = Array.from({ length: 200 }, (_, i) => paths[i % paths.length]);
    const preds = await d.predict(images);
    h.disable();
    if (d !== det) d.dispose();
    expect(preds).toHaveLength(200);
    const p99 = h.percentile(99) / 1e6;
    const max = h.max / 1e6;
    console.log(`${method}: event-loop delay while predicting 200 images: p50 ${(h.percentile(50) / 1e6).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${max.toFixed(1)} ms`);
    expect(p99).toBeLessThan(50);
    expect(max).toBeLessThan(200);
  });
});

describe('memory', () => {
  it('300 predict calls: RSS, heap and external memory flat after warm-up', async () => {
    const input: Tensor4 = { data: seededInput([2, 3, 64, 64], 'leak'), shape: [2, 3, 64, 64] };
    for (let i = 0; i < 30; i++) await det.predict(input);
    const before = settle();
    for (let i = 0; i < 300; i++) await det.predict(input);
    const after = settle();
    const growth = { rss: (after.rss - before.rss) / MB, heap: (after.heap - before.heap) / MB, external: (after.external - before.external) / MB };
    console.log(`after 300 predict calls: RSS ${(before.rss / MB).toFixed(0)} -> ${(after.rss / MB).toFixed(0)} MB, heap +${growth.heap.toFixed(1)} MB, external +${growth.external.toFixed(1)} MB`);
    // A leak of one batch's maps per call (2 x 64 x 64 floats) would be 10 MB; of its features, far more.
    expect(growth.external).toBeLessThan(4);
    expect(growth.heap).toBeLessThan(8);
    expect(after.rss).toBeLessThan(before.rss * 1.05 + 16 * MB);
  });

  it('100 create/add/dispose cycles of a 4 MB MemoryBank: native memory is freed by dispose', async () => {
    const rows = seededInput([1, 1, 4096, 256], 'bank');
    const cycle = async () => {
      const bank = new MemoryBank(256);
      await bank.add(rows);
      bank.dispose();
    };
    for (let i = 0; i < 10; i++) await cycle();
    const before = settle();
    for (let i = 0; i < 100; i++) await cycle();
    const after = settle();
    console.log(`after 100 MemoryBank cycles: RSS ${(before.rss / MB).toFixed(0)} -> ${(after.rss / MB).toFixed(0)} MB`);
    // Not freed, 100 banks would hold 400 MB.
    expect(after.rss - before.rss).toBeLessThan(40 * MB);
  });

  it('100 load/extract/dispose cycles of a Backbone and of a FaissIndex (HNSW): RSS flat after warm-up', async () => {
    const input: Tensor4 = { data: seededInput([1, 3, 64, 64], 'cycle'), shape: [1, 3, 64, 64] };
    const rows = seededInput([1, 1, 2048, 64], 'faiss');
    const backbone = async () => {
      const b = await Backbone.load({ arch: 'resnet18', weights });
      await b.extract(input, ['layer3']);
      b.dispose();
    };
    const faiss = async () => {
      const f = new FaissIndex(64, 'HNSW16');
      await f.add(rows);
      await f.search(rows.subarray(0, 64), 1);
      f.dispose();
    };
    // The allocator and oneDNN's primitive cache settle within ~100 backbone loads (RSS then
    // stays flat for 400 more): the warm-up covers that, the bound is far below 100 leaked objects.
    for (const [name, cycle, warmUp, bound] of [['Backbone', backbone, 100, 64 * MB], ['FaissIndex', faiss, 10, 24 * MB]] as const) {
      for (let i = 0; i < warmUp; i++) await cycle();
      const before = settle();
      for (let i = 0; i < 100; i++) await cycle();
      const after = settle();
      console.log(`after 100 ${name} cycles: RSS ${(before.rss / MB).toFixed(0)} -> ${(after.rss / MB).toFixed(0)} MB`);
      // Not freed, 100 backbones would hold 1.1 GB of weights, 100 indexes 80 MB.
      expect(after.rss - before.rss, name).toBeLessThan(bound);
    }
  });
});
