import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AnomalensError } from '../../lib/core/errors.js';
import {
  aupro,
  averagePrecision,
  Evaluator,
  f1Max,
  imageAuroc,
  pixelAuroc,
  prCurve,
  proCurve,
  rocCurve,
} from '../../lib/metrics/metrics.js';
import { anyBlocks, Flag, mapBlocks, native, runCurve, runMetrics, scoreBlocks } from '../../lib/internal.js';
import { numThreads, setNumThreads } from '../../lib/core/runtime.js';
import { hash32, imageCase, pixelSet, type ImageKind, type MapKind } from '../helpers/metrics-data.js';
import {
  auproSlow,
  aurocSlow,
  averagePrecisionSlow,
  f1MaxSlow,
  prCurveSlow,
  proCurveSlow,
  rocCurveSlow,
} from '../helpers/metrics-reference.js';

const TOL = 1e-9;
const fixtures = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'metrics', 'expected.json'), 'utf8'));

type Summary = { values: number[] } | { length: number; sum: number; first: number; last: number };

function expectSummary(actual: ArrayLike<number>, expected: Summary, what: string): void {
  const a = Array.from(actual);
  if ('values' in expected) {
    expect(a.length, `${what} length`).toBe(expected.values.length);
    a.forEach((v, i) => expect(Math.abs(v - expected.values[i]), `${what}[${i}]`).toBeLessThanOrEqual(TOL));
  } else {
    expect(a.length, `${what} length`).toBe(expected.length);
    const sum = a.reduce((s, v) => s + v, 0);
    expect(Math.abs(sum - expected.sum) / Math.max(1, Math.abs(expected.sum)), `${what} sum`).toBeLessThanOrEqual(TOL);
    expect(a[0]).toBeCloseTo(expected.first, 12);
    expect(a[a.length - 1]).toBeCloseTo(expected.last, 12);
  }
}

function close(actual: number, expected: number, what = 'value'): void {
  expect(Math.abs(actual - expected), `${what}: ${actual} vs ${expected}`).toBeLessThanOrEqual(TOL);
}

async function rejects(p: Promise<unknown>, pattern: RegExp, code = 'ERR_INVALID_ARGUMENT'): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e) => e,
  );
  expect(err, `expected a rejection matching ${pattern}`).toBeInstanceOf(AnomalensError);
  expect(err.code).toBe(code);
  expect(err.message).toMatch(pattern);
}

const threadsBefore = numThreads();
afterAll(() => setNumThreads(threadsBefore));

describe('image-level metrics against sklearn', () => {
  for (const c of fixtures.image) {
    it(`${c.kind} n=${c.n}`, async () => {
      const { scores, labels } = imageCase(c.kind as ImageKind, c.seed, c.n);
      expect(labels.reduce((a, b) => a + b, 0)).toBe(c.positives);
      close(await imageAuroc(scores, labels), c.auroc, 'auroc');
      close(await averagePrecision(scores, labels), c.averagePrecision, 'average precision');
      const f = await f1Max(scores, labels);
      close(f.f1, c.f1, 'f1');
      expect(f.threshold).toBe(c.f1Threshold);
      const roc = await rocCurve(scores, labels);
      expectSummary(roc.fpr, c.roc.fpr, 'roc fpr');
      expectSummary(roc.tpr, c.roc.tpr, 'roc tpr');
      expect(roc.thresholds[0]).toBe(Infinity);
      expectSummary(roc.thresholds.subarray(1), c.roc.thresholds, 'roc thresholds');
      const all = await rocCurve(scores, labels, { dropIntermediate: false });
      expectSummary(all.fpr, c.rocAll.fpr, 'roc (all) fpr');
      expectSummary(all.tpr, c.rocAll.tpr, 'roc (all) tpr');
      const pr = await prCurve(scores, labels);
      expectSummary(pr.precision, c.pr.precision, 'precision');
      expectSummary(pr.recall, c.pr.recall, 'recall');
      expectSummary(pr.thresholds.subarray(0, pr.thresholds.length - 1), c.pr.thresholds, 'pr thresholds');
    });
  }
});

describe('pixel-level metrics against the float64 MVTec AD reference and sklearn', () => {
  for (const c of fixtures.pixel) {
    it(`${c.name}: ${c.sizes.length} maps, ${c.regions} regions`, async () => {
      const { maps, masks } = pixelSet(c.seed, c.sizes, c.kind as MapKind);
      for (const limit of Object.keys(c.aupro))
        close(await aupro(maps, masks, { fprLimit: Number(limit) }), c.aupro[limit], `aupro@${limit}`);
      close(await pixelAuroc(maps, masks), c.pixelAuroc, 'pixel auroc');
      close(await averagePrecision(maps, masks), c.averagePrecision, 'pixel AP');
      const f = await f1Max(maps, masks);
      close(f.f1, c.f1, 'pixel f1');
      expect(f.threshold).toBe(c.f1Threshold);
      const pro = await proCurve(maps, masks);
      expectSummary(pro.fpr, c.pro.fpr, 'pro fpr');
      expectSummary(pro.pro, c.pro.pro, 'pro');
      expectSummary(pro.thresholds.subarray(1, pro.thresholds.length - 1), c.pro.thresholds, 'pro thresholds');
      const all = await runMetrics(mapBlocks(maps, masks, true), 15, { fprLimit: 0.3 });
      expect(all.regions).toBe(c.regions);
      expect(all.positives).toBe(c.positives);
      expect(all.positives + all.negatives).toBe(c.pixels);
      close(all.aupro as number, c.aupro['0.3']);
      close(all.auroc as number, c.pixelAuroc);
    });
  }

  it('the tiny sets also match the brute-force twin', async () => {
    for (const c of fixtures.pixel.slice(0, 2)) {
      const { maps, masks } = pixelSet(c.seed, c.sizes, c.kind as MapKind);
      for (const limit of [0.3, 0.05, 1]) close(await aupro(maps, masks, { fprLimit: limit }), auproSlow(maps, masks, limit));
      const slow = proCurveSlow(maps, masks);
      const fast = await proCurve(maps, masks);
      expect(Array.from(fast.thresholds)).toEqual(slow.thresholds);
      fast.fpr.forEach((v, i) => close(v, slow.fpr[i]));
      fast.pro.forEach((v, i) => close(v, slow.pro[i]));
    }
  });
});

describe('hand-computed cases', () => {
  it('AUROC, AP and F1 of the sklearn documentation example', async () => {
    const scores = [0.1, 0.4, 0.35, 0.8];
    const labels = [0, 0, 1, 1];
    expect(await imageAuroc(scores, labels)).toBe(0.75);
    close(await averagePrecision(scores, labels), 0.5 * 1 + 0.5 * (2 / 3));
    expect(await f1Max(scores, labels)).toEqual({ f1: 0.8, threshold: 0.35 });
    const roc = await rocCurve(scores, labels);
    expect(Array.from(roc.fpr)).toEqual([0, 0, 0.5, 0.5, 1]);
    expect(Array.from(roc.tpr)).toEqual([0, 0.5, 0.5, 1, 1]);
    expect(Array.from(roc.thresholds)).toEqual([Infinity, 0.8, 0.4, 0.35, 0.1]);
  });

  it('ties count one half and -0 equals +0', async () => {
    expect(await imageAuroc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1])).toBe(0.5);
    // pos 2 vs neg 1: 1, pos 2 vs neg 2: 1/2, pos 3 vs both: 2 -> 3.5 / 4
    expect(await imageAuroc(new Float32Array([1, 2, 2, 3]), [0, 0, 1, 1])).toBe(0.875);
    for (const engine of [1, 2] as const) {
      const r = await runMetrics(scoreBlocks(new Float32Array([-0, 0, -0, 0]), [1, 0, 0, 1]), Flag.Auroc | Flag.F1Max, { engine });
      expect(r.auroc).toBe(0.5);
      expect(r.f1).toBe(2 / 3);
      const c = await runCurve(scoreBlocks(new Float32Array([-0, 0, 1]), [1, 0, 1]), 'roc', { engine });
      expect(Array.from(c.thresholds)).toEqual([Infinity, 1, 0]);
    }
  });

  it('AUPRO of one region, with and without interpolation at the limit', async () => {
    const maps = [{ data: new Float32Array([0.9, 0.2, 0.8, 0.1, 0.3, 0.4]), shape: [2, 3] }];
    const masks = [new Uint8Array([1, 1, 0, 0, 0, 0])];
    // (0,0) (0,.5) (.25,.5) (.5,.5) (.75,.5) (.75,1) (1,1) (1,1)
    close(await aupro(maps, masks), (0.125 + 0.025) / 0.3);
    close(await aupro(maps, masks, { fprLimit: 0.25 }), 0.125 / 0.25);
    close(await aupro(maps, masks, { fprLimit: 1 }), 0.625);
  });

  it('regions touching diagonally are one region (8-connectivity)', async () => {
    // mask 1 1 0 / 0 0 1: one region of 3 pixels with 8-connectivity (two with 4-connectivity)
    const maps = [{ data: new Float32Array([0.9, 0.3, 0.5, 0.1, 0.2, 0.8]), shape: [2, 3] }];
    const masks = [new Uint8Array([255, 255, 0, 0, 0, 255])];
    close(await aupro(maps, masks), 2 / 3); // 4-connectivity would give 0.75
    close(await aupro(maps, masks, { fprLimit: 1 }), 8 / 9);
    expect((await runMetrics(mapBlocks(maps, masks, true), Flag.Aupro, {})).regions).toBe(1);
  });

  it('defect-free images count in the FPR only', async () => {
    const maps = [
      { data: new Float32Array([0.9, 0.2, 0.8, 0.1, 0.3, 0.4]), shape: [2, 3] },
      { data: new Float32Array([0.05, 0.05, 0.05, 0.05]), shape: [2, 2] },
    ];
    const masks = [
      { data: new Uint8Array([1, 1, 0, 0, 0, 0]), shape: [2, 3] },
      { data: new Uint8Array(4), shape: [2, 2] },
    ];
    // FPR now over 8 defect-free pixels: (0,.5) (1/8,.5) (2/8,.5) (3/8,.5): interpolated at .3
    close(await aupro(maps, masks), 0.5);
    close(await aupro(maps, masks), auproSlow(maps, masks));
  });
});

describe('fast paths against their slow twins on random inputs', () => {
  const kinds: ImageKind[] = ['ties', 'dense', 'bits'];
  for (let trial = 0; trial < 24; trial++) {
    const kind = kinds[trial % 3];
    const n = 2 + (hash32(900, trial) % 240);
    it(`${kind} n=${n} (trial ${trial})`, async () => {
      const { scores, labels } = imageCase(kind, 1000 + trial, n);
      if (labels.every((v) => v === labels[0])) labels[0] ^= 1;
      const expected = {
        auroc: aurocSlow(scores, labels),
        ap: averagePrecisionSlow(scores, labels),
        f1: f1MaxSlow(scores, labels),
      };
      const roc = rocCurveSlow(scores, labels);
      const rocAll = rocCurveSlow(scores, labels, false);
      const pr = prCurveSlow(scores, labels);
      // sort engine, bucket engine with sorting inside buckets, with counting inside buckets
      for (const opts of [{ engine: 1 }, { engine: 2 }, { engine: 2, countingMin: 1 }] as const) {
        const blocks = scoreBlocks(scores, labels);
        const r = await runMetrics(blocks, Flag.Auroc | Flag.AveragePrecision | Flag.F1Max, opts);
        close(r.auroc as number, expected.auroc, 'auroc');
        close(r.averagePrecision as number, expected.ap, 'ap');
        close(r.f1 as number, expected.f1.f1, 'f1');
        expect(r.f1Threshold).toBe(expected.f1.threshold);
        const c = await runCurve(blocks, 'roc', opts);
        expect(Array.from(c.thresholds)).toEqual(roc.thresholds);
        c.x.forEach((v, i) => close(v, roc.fpr[i]));
        c.y.forEach((v, i) => close(v, roc.tpr[i]));
        const ca = await runCurve(blocks, 'roc', { ...opts, dropIntermediate: false });
        expect(Array.from(ca.thresholds)).toEqual(rocAll.thresholds);
        const p = await runCurve(blocks, 'pr', opts);
        expect(Array.from(p.thresholds)).toEqual(pr.thresholds);
        p.x.forEach((v, i) => close(v, pr.recall[i]));
        p.y.forEach((v, i) => close(v, pr.precision[i]));
      }
    });
  }

  const mapKinds: MapKind[] = ['dense', 'ties', 'ties4'];
  for (let trial = 0; trial < 9; trial++) {
    const kind = mapKinds[trial % 3];
    it(`AUPRO and PRO curve, ${kind} maps (trial ${trial})`, async () => {
      const sizes = Array.from({ length: 2 + (trial % 4) }, (_, k) => [7 + (hash32(901, trial * 8 + k) % 12), 6 + (hash32(902, trial * 8 + k) % 13)] as [number, number]);
      const { maps, masks } = pixelSet(2000 + trial, sizes, kind);
      if (masks.every((m) => m.data.every((v) => v === 0))) masks[0].data[0] = 1;
      const slow = proCurveSlow(maps, masks);
      const blocks = mapBlocks(maps, masks, true);
      for (const opts of [{ engine: 1 }, { engine: 2 }, { engine: 2, countingMin: 1 }] as const) {
        for (const limit of [0.3, 0.02, 0.7, 1]) {
          const r = await runMetrics(blocks, Flag.Aupro | Flag.Auroc, { ...opts, fprLimit: limit });
          close(r.aupro as number, auproSlow(maps, masks, limit), `aupro@${limit}`);
        }
        const c = await runCurve(blocks, 'pro', opts);
        expect(Array.from(c.thresholds)).toEqual(slow.thresholds);
        c.x.forEach((v, i) => close(v, slow.fpr[i]));
        c.y.forEach((v, i) => close(v, slow.pro[i]));
      }
    });
  }
});

describe('input forms', () => {
  const c = fixtures.pixel[2];
  const sizes = [[32, 40], [32, 40], [32, 40], [32, 40]] as [number, number][];
  const { maps, masks } = pixelSet(77, sizes, 'dense');
  const n = maps.length;
  const hw = 32 * 40;
  const batchMap = new Float32Array(n * hw);
  const batchMask = new Uint8Array(n * hw);
  maps.forEach((m, k) => batchMap.set(m.data, k * hw));
  masks.forEach((m, k) => batchMask.set(m.data, k * hw));

  it('lists, one batch tensor, [n, 1, h, w] and plain arrays agree', async () => {
    const ref = await aupro(maps, masks);
    expect(await aupro({ data: batchMap, shape: [n, 32, 40] }, { data: batchMask, shape: [n, 32, 40] })).toBe(ref);
    expect(await aupro({ data: batchMap, shape: [n, 1, 32, 40] }, batchMask)).toBe(ref);
    expect(await aupro(maps.map((m) => m.data), masks)).toBe(ref);
    expect(await aupro(maps, masks.map((m) => m.data))).toBe(ref);
    const auroc = await pixelAuroc(maps, masks);
    expect(await pixelAuroc(batchMap, batchMask)).toBe(auroc);
    expect(await pixelAuroc(maps.map((m) => m.data), masks.map((m) => m.data))).toBe(auroc);
    expect(await f1Max(batchMap, batchMask)).toEqual(await f1Max(maps, masks));
    expect(c).toBeDefined();
  });

  it('maskThreshold binarises at value > threshold', async () => {
    const soft = masks.map((m) => ({ data: m.data.map((v, i) => (v ? 128 + (i % 100) : i % 100)), shape: m.shape }));
    await rejects(aupro(maps, soft), /masks\[0\]\[\d+\] \(row \d+, col \d+\) is \d+; labels and masks must be binary/);
    expect(await aupro(maps, soft, { maskThreshold: 127 })).toBe(await aupro(maps, masks));
    expect(await pixelAuroc(maps, soft, { maskThreshold: 127 })).toBe(await pixelAuroc(maps, masks));
  });

  it('image scores as number[], Float64Array and Float32Array, labels as booleans', async () => {
    const scores = [0.3, 0.1, 0.7, 0.7, 0.2];
    const labels = [false, false, true, false, true];
    const expected = aurocSlow(scores, labels.map(Number));
    expect(await imageAuroc(scores, labels)).toBe(expected);
    expect(await imageAuroc(Float64Array.from(scores), labels)).toBe(expected);
    expect(await imageAuroc(Float32Array.from(scores), Uint8Array.from(labels.map(Number)))).toBe(expected);
  });

  it('the package index exports the metrics API', async () => {
    const index = await import('../../lib/index.js');
    for (const name of ['imageAuroc', 'pixelAuroc', 'aupro', 'f1Max', 'averagePrecision', 'rocCurve', 'prCurve', 'proCurve', 'Evaluator'])
      expect(typeof (index as Record<string, unknown>)[name], name).toBe('function');
  });
});

describe('Evaluator', () => {
  const { maps, masks } = pixelSet(5, [[64, 64], [64, 64], [64, 64], [64, 64], [64, 64], [64, 64]], 'ties4');
  const scores = new Float32Array(maps.map((m) => Math.max(...m.data)));
  const labels = new Uint8Array(masks.map((m) => (m.data.some((v) => v > 0) ? 1 : 0)));

  it('accumulates batches and matches the one-shot functions', async () => {
    const ev = new Evaluator();
    ev.update({ scores: scores.subarray(0, 2), labels: labels.subarray(0, 2), maps: maps.slice(0, 2), masks: masks.slice(0, 2) });
    const hw = 64 * 64;
    const batchMap = new Float32Array(4 * hw);
    maps.slice(2).forEach((m, k) => batchMap.set(m.data, k * hw));
    const batchMask = new Uint8Array(4 * hw);
    masks.slice(2).forEach((m, k) => batchMask.set(m.data, k * hw));
    ev.update({ scores: Array.from(scores.subarray(2)), labels: Array.from(labels.subarray(2)) });
    ev.update({ maps: { data: batchMap, shape: [4, 64, 64] }, masks: { data: batchMask, shape: [4, 1, 64, 64] } });
    expect(ev.imageCount).toBe(6);
    expect(ev.pixelCount).toBe(6 * hw);
    batchMap.fill(0); // the evaluator copied it
    const r = await ev.compute();
    expect(r.image?.auroc).toBe(await imageAuroc(scores, labels));
    expect(r.image?.averagePrecision).toBe(await averagePrecision(scores, labels));
    expect(r.image?.f1Max).toEqual(await f1Max(scores, labels));
    expect(r.image?.count).toBe(6);
    expect(r.pixel?.aupro).toBe(await aupro(maps, masks));
    expect(r.pixel?.auroc).toBe(await pixelAuroc(maps, masks));
    expect(r.pixel?.averagePrecision).toBe(await averagePrecision(maps, masks));
    expect(r.pixel?.f1Max).toEqual(await f1Max(maps, masks));
    expect(r.pixel?.count).toBe(6 * hw);
    ev.reset();
    expect(ev.imageCount).toBe(0);
    expect(await ev.compute()).toEqual({ image: null, pixel: null });
  });

  it('copy: false keeps references; pixel-only and image-only evaluations', async () => {
    const data = maps[0].data.slice();
    const ev = new Evaluator({ copy: false, fprLimit: 0.1 });
    ev.update({ maps: [{ data, shape: [64, 64] }, ...maps.slice(1)], masks });
    data.set(maps[0].data);
    const r = await ev.compute();
    expect(r.image).toBeNull();
    expect(r.pixel?.aupro).toBe(await aupro(maps, masks, { fprLimit: 0.1 }));
    const img = await new Evaluator().update({ scores, labels }).compute();
    expect(img.pixel).toBeNull();
    expect(img.image?.anomalous).toBe(labels.reduce((a, b) => a + b, 0));
  });

  it('rejects bad batches and names the batch in value errors', async () => {
    const ev = new Evaluator();
    expect(() => ev.update({})).toThrow(TypeError);
    expect(() => ev.update({ maps: [maps[0].data], masks: [masks[0].data] })).toThrow(/height and width/);
    expect(() => ev.update({ scores, labels: labels.subarray(1) })).toThrow(RangeError);
    expect(() => new Evaluator({ fprLimit: 0 })).toThrow(RangeError);
    ev.update({ maps, masks });
    const bad = maps[1].data.slice();
    bad[70] = NaN;
    ev.update({ maps: [{ data: bad, shape: [64, 64] }], masks: [masks[1]] });
    await rejects(ev.compute(), /^batch 1 maps\[0\]\[70\] \(row 1, col 6\) is NaN; scores must be finite$/);
  });
});

describe('bad input', () => {
  const map = { data: new Float32Array([0.1, 0.9, 0.5, 0.3, 0.2, 0.7]), shape: [2, 3] };
  const mask = new Uint8Array([0, 1, 1, 0, 0, 0]);

  it('length and shape mismatches are RangeErrors naming both sides', async () => {
    await expect(imageAuroc([0.1, 0.2], [0, 1, 1])).rejects.toThrow(/scores and labels must have the same length, received 2 and 3/);
    await expect(pixelAuroc([map.data], [mask, mask])).rejects.toThrow(RangeError);
    await expect(pixelAuroc([map.data], [mask.subarray(1)])).rejects.toThrow(/maps\[0\] has 6 elements but masks\[0\] has 5/);
    await expect(aupro([map], [{ data: mask, shape: [3, 2] }])).rejects.toThrow(/maps\[0\] is 1 x 2 x 3 \(n x h x w\) but masks\[0\] is 1 x 3 x 2/);
    await expect(aupro([{ data: map.data, shape: [6] }], [mask])).rejects.toThrow(/shape must be \[h, w\]/);
    await expect(aupro([{ data: map.data, shape: [2, 4] }], [mask])).rejects.toThrow(/has 6 elements but shape \[2, 4\] needs 8/);
    await expect(aupro([{ data: map.data, shape: [1, 2, 2, 3] }], [mask])).rejects.toThrow(RangeError);
    await expect(imageAuroc([], [])).rejects.toThrow(/scores is empty/);
    await expect(pixelAuroc([], [])).rejects.toThrow(/maps is an empty array/);
  });

  it('wrong types are TypeErrors', async () => {
    await expect(imageAuroc('0.5' as never, [1])).rejects.toThrow(TypeError);
    await expect(imageAuroc([0.5, '1'] as never, [1, 0])).rejects.toThrow(/scores\[1\] must be a number/);
    await expect(imageAuroc([0.5], new Int32Array([1]) as never)).rejects.toThrow(TypeError);
    await expect(imageAuroc([0.5, 0.2], [1, 0.5])).rejects.toThrow(/labels\[1\] must be 0 or 1/);
    await expect(pixelAuroc([new Float64Array(6)] as never, [mask])).rejects.toThrow(/maps\[0\] must be a Float32Array/);
    await expect(pixelAuroc([map], mask as never)).rejects.toThrow(/must both be arrays/);
    await expect(aupro(map.data, mask)).rejects.toThrow(/AUPRO needs the height and width/);
  });

  it('NaN and infinite scores name the element', async () => {
    await rejects(imageAuroc([0.1, 0.2, NaN], [0, 1, 1]), /^scores\[2\] is NaN; scores must be finite$/);
    await rejects(imageAuroc(new Float32Array([0.1, -Infinity]), [0, 1]), /scores\[1\] is -Infinity/);
    const bad = map.data.slice();
    bad[5] = Infinity;
    await rejects(pixelAuroc([map, { data: bad, shape: [2, 3] }], [mask, mask]), /^maps\[1\]\[5\] \(row 1, col 2\) is Infinity/);
    const big = new Float32Array(70000);
    big[69999] = NaN;
    const bigMask = new Uint8Array(70000);
    bigMask[3] = 1;
    await rejects(pixelAuroc(big, bigMask), /^maps\[69999\] is NaN/); // bucket engine path
  });

  it('labels that are not binary name the element', async () => {
    await rejects(imageAuroc([0.1, 0.2, 0.3], new Uint8Array([0, 2, 1])), /^labels\[1\] is 2; labels and masks must be binary \(0, 1 or 255\)/);
    await rejects(pixelAuroc([map], [new Uint8Array([0, 1, 128, 0, 0, 0])]), /masks\[0\]\[2\] \(row 0, col 2\) is 128/);
    expect(await imageAuroc([0.1, 0.2, 0.3], new Uint8Array([0, 2, 1]), { maskThreshold: 0 })).toBe(1);
  });

  it('undefined metrics are errors naming the problem', async () => {
    await rejects(imageAuroc([0.1, 0.2], [1, 1]), /AUROC is undefined when only one class is present: 2 positive and 0 negative labels/);
    await rejects(imageAuroc([0.1, 0.2], [0, 0]), /only one class/);
    await rejects(averagePrecision([0.1, 0.2], [0, 0]), /average precision is undefined without positive labels/);
    await rejects(f1Max([0.1, 0.2], [0, 0]), /F1 is undefined without positive labels/);
    await rejects(rocCurve([0.1, 0.2], [0, 0]), /ROC curve is undefined/);
    await rejects(prCurve([0.1, 0.2], [0, 0]), /precision-recall curve is undefined/);
    await rejects(aupro([map], [new Uint8Array(6)]), /AUPRO is undefined: the masks contain no defect region/);
    await rejects(aupro([map], [new Uint8Array(6).fill(1)]), /AUPRO is undefined: no defect-free pixel/);
    await rejects(proCurve([map], [new Uint8Array(6)]), /PRO curve is undefined/);
    expect(await averagePrecision([0.1, 0.2], [1, 1])).toBe(1);
  });

  it('the native binding re-checks what protects memory', () => {
    const spec = (over: Record<string, unknown>) => ({
      scores: [new Float32Array(6)],
      labels: [new Uint8Array(6)],
      dims: [1, 2, 3],
      names: ['maps'],
      labelNames: ['masks'],
      flags: 1,
      ...over,
    });
    expect(() => native().metrics(spec({ dims: [1, 2, 4] }))).toThrow(/must hold 8 elements, received 6 and 6/);
    expect(() => native().metrics(spec({ labels: [new Uint8Array(5)] }))).toThrow(/received 6 and 5/);
    expect(() => native().metrics(spec({ labels: [new Int8Array(6)] }))).toThrow(TypeError);
    expect(() => native().metrics(spec({ scores: [new Int32Array(6)] }))).toThrow(TypeError);
    expect(() => native().metrics(spec({ dims: [1, -2, 3] }))).toThrow(/dims\[1\] must be a non-negative integer/);
    expect(() => native().metrics(spec({ names: [] }))).toThrow(/disagree in length/);
    expect(() => native().metricsCurve(spec({ curve: 'det' }))).toThrow(/'roc', 'pr' or 'pro'/);
  });

  it('bad options are rejected before any work', async () => {
    await expect(aupro([map], [mask], { fprLimit: 0 })).rejects.toThrow(/fprLimit must be in \(0, 1\], received 0/);
    await expect(aupro([map], [mask], { fprLimit: 1.5 })).rejects.toThrow(RangeError);
    await expect(aupro([map], [mask], { fprLimit: '0.3' as never })).rejects.toThrow(TypeError);
    await expect(pixelAuroc([map], [mask], { maskThreshold: 255 })).rejects.toThrow(RangeError);
    await expect(pixelAuroc([map], [mask], { maskThreshold: 0.5 })).rejects.toThrow(RangeError);
    await expect(rocCurve([0.1, 0.2], [0, 1], { decimate: 1 })).rejects.toThrow(RangeError);
    await expect(rocCurve([0.1, 0.2], [0, 1], { dropIntermediate: 'yes' as never })).rejects.toThrow(TypeError);
    await expect(imageAuroc([0.1, 0.2], [0, 1], 3 as never)).rejects.toThrow(TypeError);
  });
});

describe('large inputs', () => {
  it('decimated curves keep their ends and stay within the step', async () => {
    const c = fixtures.pixel[4];
    const { maps, masks } = pixelSet(c.seed, c.sizes, c.kind as MapKind);
    const { scores, labels } = imageCase('dense', 31, 300_000);
    for (const [full, dec] of [
      [await rocCurve(scores, labels), await rocCurve(scores, labels, { decimate: 0.01 })],
      [await proCurve(maps, masks), await proCurve(maps, masks, { decimate: 0.01 })],
    ] as const) {
      const fx = 'fpr' in full ? full.fpr : new Float64Array();
      const dx = 'fpr' in dec ? dec.fpr : new Float64Array();
      expect(dx.length).toBeLessThan(fx.length);
      expect(dx.length).toBeLessThan(250);
      expect(dx[0]).toBe(fx[0]);
      expect(dx[dx.length - 1]).toBe(fx[fx.length - 1]);
      expect(dec.thresholds[dec.thresholds.length - 1]).toBe(full.thresholds[full.thresholds.length - 1]);
    }
    const pr = await prCurve(scores, labels, { decimate: 0.01 });
    expect(pr.recall[pr.recall.length - 1]).toBe(0);
    expect(pr.precision.length).toBeLessThan(1000);
  });

  it('results do not depend on the thread count', async () => {
    const c = fixtures.pixel[3];
    const { maps, masks } = pixelSet(c.seed, c.sizes, c.kind as MapKind);
    const { scores, labels } = imageCase('bits', 41, 500_000);
    const results = [];
    for (const t of [1, 2, 3]) {
      setNumThreads(t);
      results.push({
        pixel: await runMetrics(mapBlocks(maps, masks, true), 15, {}),
        image: await runMetrics(anyBlocks(scores, labels), 7, {}),
      });
    }
    setNumThreads(threadsBefore);
    for (const r of results.slice(1)) {
      expect(r.pixel.auroc).toBe(results[0].pixel.auroc);
      expect(r.pixel.f1).toBe(results[0].pixel.f1);
      expect(r.pixel.f1Threshold).toBe(results[0].pixel.f1Threshold);
      close(r.pixel.aupro as number, results[0].pixel.aupro as number);
      close(r.pixel.averagePrecision as number, results[0].pixel.averagePrecision as number);
      expect(r.image).toEqual(results[0].image);
    }
    close(results[0].pixel.aupro as number, c.aupro['0.3']);
  });
});
