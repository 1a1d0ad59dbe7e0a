/**
 * The addon in several Node environments at once: the main thread and two worker_threads load
 * it, each runs a Backbone forward pass (and a MemoryBank save / load, whose constructor also
 * lives in per-environment data), and all results are equal. Then, with the workers gone, the
 * main thread loads again: a constructor kept in a process-global static would now point into
 * a dead environment.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { loadedFrom, native } from '../../lib/internal.js';
import { seededInput, writeSeededWeights } from '../helpers/seeded.js';
import { tempDir } from '../helpers/tmp.js';

type Fixture = { archs: Record<string, { tensors: [string, number[]][] }> };
const fixture: Fixture = JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/backbone/parity.json'), 'utf8'));

const SHAPE = [2, 3, 45, 38];
const TAPS = ['layer2', 'layer4'];

// CommonJS, run with eval: loads the addon by path, as a user's worker would through the library.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const addon = require(workerData.addon);
(async () => {
  const bb = await addon.loadBackbone('resnet18', workerData.weights);
  const r = await bb.extract(new Float32Array(workerData.input), workerData.shape, workerData.taps, false);
  const bank = new addon.MemoryBank(4, 'l2sq', 'off');
  await bank.add(new Float32Array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]), 3);
  await bank.save(workerData.bank);
  const loaded = await addon.MemoryBank.load(workerData.bank, 'off');
  const d = new Float32Array(1), i = new Int32Array(1);
  await loaded.search(new Float32Array([1.9, 2, 2, 2]), 1, 1, d, i);
  const outputs = {};
  for (const t of workerData.taps) outputs[t] = { shape: r.outputs[t].shape, data: Float32Array.from(r.outputs[t].data) };
  parentPort.postMessage({ outputs, nearest: i[0], distance: d[0] });
})().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
`;

type Result = { outputs: Record<string, { shape: number[]; data: Float32Array }>; nearest: number; distance: number };

function runWorker(data: Record<string, unknown>): Promise<Result> {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER, { eval: true, workerData: data });
    let result: Result | undefined;
    w.on('message', (m: Result & { error?: string }) => {
      if (m.error) reject(new Error(m.error));
      else result = m;
    });
    w.on('error', reject);
    w.on('exit', (code) => (result ? resolve(result) : reject(new Error(`worker exited with ${code} and no result`))));
  });
}

async function mainThreadForward(weights: string, input: Float32Array) {
  const bb = await native().loadBackbone('resnet18', weights);
  const r = await bb.extract(input, SHAPE, TAPS, false);
  bb.dispose();
  return r.outputs as Result['outputs'];
}

describe('the addon in worker_threads', () => {
  const { dir, cleanup } = tempDir();
  afterAll(cleanup);

  it('two workers and the main thread run the backbone at once with equal results', async () => {
    const weights = join(dir, 'r18.safetensors');
    await writeSeededWeights(weights, fixture.archs.resnet18.tensors);
    const input = seededInput(SHAPE);
    const main = mainThreadForward(weights, input);
    const addon = loadedFrom;
    expect(addon).toBeTruthy();
    const common = { addon, weights, input: Array.from(input), shape: SHAPE, taps: TAPS };
    const [a, b, m] = await Promise.all([
      runWorker({ ...common, bank: join(dir, 'a.bank') }),
      runWorker({ ...common, bank: join(dir, 'b.bank') }),
      main,
    ]);
    for (const t of TAPS) {
      expect(m[t].shape).toEqual(t === 'layer2' ? [2, 128, 6, 5] : [2, 512, 2, 2]);
      expect(a.outputs[t].shape).toEqual(m[t].shape);
      expect(b.outputs[t].shape).toEqual(m[t].shape);
      expect(Array.from(a.outputs[t].data)).toEqual(Array.from(m[t].data));
      expect(Array.from(b.outputs[t].data)).toEqual(Array.from(m[t].data));
    }
    // Not all zero, or the comparison above would prove nothing.
    expect(m.layer4.data.some((v) => v !== 0)).toBe(true);
    for (const r of [a, b]) {
      expect(r.nearest).toBe(2);
      expect(r.distance).toBeCloseTo(0.01, 5);
    }

    // The workers have exited and their environments are gone: the main thread still works.
    const again = await mainThreadForward(weights, input);
    for (const t of TAPS) expect(Array.from(again[t].data)).toEqual(Array.from(m[t].data));
  });
});
