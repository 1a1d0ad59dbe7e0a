import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnomalensError, Detector, type MethodName, type Tensor4 } from '../../lib/index.js';
import { seededInput, writeSeededWeights } from '../helpers/seeded.js';
import { tempDir } from '../helpers/tmp.js';

interface MapFixture { maxAbs: number; l2: number; samples: [number, number][] }
const parity = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures/backbone/parity.json'), 'utf8'));
const fx: {
  train: { name: string; shape: number[] };
  test: { name: string; shape: number[] };
  options: Record<string, Record<string, unknown>>;
  methods: Record<string, { scores: number[]; maps: MapFixture[] | null }>;
} = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures/detectors/expected.json'), 'utf8'));

const batch = (s: { name: string; shape: number[] }): Tensor4 => ({ data: seededInput(s.shape, s.name), shape: s.shape as Tensor4['shape'] });
const train = batch(fx.train);
const test = batch(fx.test);
const { dir, cleanup } = tempDir();
const weights = join(dir, 'r18.safetensors');
beforeAll(() => writeSeededWeights(weights, parity.archs.resnet18.tensors));
afterAll(cleanup);

function relErr(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
}

describe('detectors against the original code of each method (seeded resnet18, 64x64 inputs)', () => {
  for (const method of ['dn2', 'spade', 'patchcore', 'padim'] as MethodName[]) {
    it(`${method}: image scores and maps within 1e-4; save/load gives identical predictions`, async () => {
      const det = await Detector.create({ method, arch: 'resnet18', weights, methodOptions: fx.options[method], batchSize: 5 });
      await det.fit(train);
      const preds = await det.predict(test);
      const ref = fx.methods[method];
      expect(preds.length).toBe(ref.scores.length);
      preds.forEach((p, i) => {
        expect(relErr(p.predScore, ref.scores[i]), `${method} score ${i}`).toBeLessThan(1e-4);
        expect(p.predLabel).toBeUndefined();
        if (!ref.maps) {
          expect(p.anomalyMap).toBeUndefined();
          return;
        }
        const m = p.anomalyMap!;
        expect(m.length).toBe(64 * 64);
        const r = ref.maps[i];
        let worst = 0;
        for (const [j, v] of r.samples) worst = Math.max(worst, Math.abs(m[j] - v));
        expect(worst / r.maxAbs, `${method} map ${i}`).toBeLessThan(1e-4);
        let l2 = 0;
        for (const v of m) l2 += v * v;
        expect(relErr(Math.sqrt(l2), r.l2), `${method} map ${i} l2`).toBeLessThan(1e-4);
      });
      const file = join(dir, `${method}.anomalens`);
      await det.save(file);
      const again = await Detector.load(file);
      expect(again.method).toBe(method);
      expect(again.fitSeconds).toBe(det.fitSeconds);
      const preds2 = await again.predict(test);
      preds2.forEach((p, i) => {
        expect(p.predScore).toBe(preds[i].predScore);
        if (p.anomalyMap) expect(Array.from(p.anomalyMap)).toEqual(Array.from(preds[i].anomalyMap!));
      });
    });
  }
});

describe('detector behaviour', () => {
  it('thresholds give labels and masks', async () => {
    const det = await Detector.create({ method: 'patchcore', arch: 'resnet18', weights, methodOptions: { coreset: 1 } });
    await det.fit(train);
    det.thresholds = { image: fx.methods.patchcore.scores[1] + 1e-3, pixel: 0 };
    const p = await det.predict(test);
    expect(p.map((x) => x.predLabel)).toEqual(fx.methods.patchcore.scores.map((s) => (s >= fx.methods.patchcore.scores[1] + 1e-3 ? 1 : 0)));
    expect(p[0].predMask!.every((v) => v === 1)).toBe(true);
  });

  it('PatchCore with a 50% coreset keeps half the patches and scores no lower than the full bank', async () => {
    const full = await Detector.create({ method: 'patchcore', arch: 'resnet18', weights, methodOptions: { coreset: 1 } });
    const half = await Detector.create({ method: 'patchcore', arch: 'resnet18', weights, methodOptions: { coreset: 0.5, seed: 3 } });
    await full.fit(train);
    await half.fit(train);
    const a = await full.predict(test);
    const b = await half.predict(test);
    // A subset of the bank can only move nearest neighbours farther away.
    b.forEach((p, i) => expect(p.predScore).toBeGreaterThanOrEqual(a[i].predScore - 1e-3));
    const file = join(dir, 'half.anomalens');
    await half.save(file);
    const reopened = await (await import('../../lib/index.js')).readSafetensors(file);
    expect(reopened.tensors['state.bank'].shape).toEqual([Math.round(12 * 8 * 8 * 0.5), 1024]);
  });

  it('clear errors: unfitted, wrong weights on load, bad options, corrupt file', async () => {
    const det = await Detector.create({ method: 'dn2', arch: 'resnet18', weights });
    await expect(det.predict(test)).rejects.toThrow(/not fitted/);
    await expect(det.save(join(dir, 'x.anomalens'))).rejects.toThrow(/not fitted/);
    await expect(Detector.create({ method: 'knn' as MethodName, arch: 'resnet18', weights })).rejects.toThrow(RangeError);
    await expect(Detector.create({ method: 'patchcore', arch: 'resnet18', weights, methodOptions: { coreset: 2 } })).rejects.toThrow(
      /options\.coreset must be <= 1, received 2/,
    );
    await expect(det.fit([])).rejects.toThrow(/must not be empty/);
    await det.fit(train);
    const file = join(dir, 'dn2.anomalens');
    await det.save(file);
    const other = join(dir, 'other.safetensors');
    writeFileSync(other, readFileSync(weights));
    const bytes = readFileSync(other);
    bytes[bytes.length - 1] ^= 1;  // same shapes, different values
    writeFileSync(other, bytes);
    const err = await Detector.load(file, { weights: other }).catch((e) => e);
    expect(err).toBeInstanceOf(AnomalensError);
    expect(err.code).toBe('ERR_WEIGHTS_MISMATCH');
    expect(err.message).toMatch(/fitted with weights of SHA-256/);
    const notDetector = await Detector.load(weights).catch((e) => e);
    expect(notDetector.code).toBe('ERR_INVALID_FILE');
    const truncated = join(dir, 'trunc.anomalens');
    writeFileSync(truncated, readFileSync(file).subarray(0, 200));
    expect((await Detector.load(truncated).catch((e) => e)).code).toBe('ERR_INVALID_FILE');
    expect(existsSync(file)).toBe(true);
    const r = await det.predict(test);
    expect(r[0].anomalyMap).toBeUndefined();
  });

  it('fit and predict from image files: maps at each image own resolution', async () => {
    const sharp = (await import('sharp')).default;
    const paths: string[] = [];
    for (const [i, [w, h]] of [[70, 50], [64, 64], [90, 40]].entries()) {
      const px = Buffer.alloc(w * h * 3);
      for (let j = 0; j < px.length; j++) px[j] = (j * 13 + i * 7) & 255;
      const p = join(dir, `img${i}.png`);
      await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(p);
      paths.push(p);
    }
    const det = await Detector.create({ method: 'padim', arch: 'resnet18', weights, size: 64, batchSize: 2 });
    const events: string[] = [];
    det.onProgress = (e) => events.push(`${e.phase}:${e.done}/${e.total}`);
    await det.fit(paths);
    const preds = await det.predict(paths);
    expect(preds.map((p) => [p.width, p.height, p.anomalyMap!.length])).toEqual([[70, 50, 3500], [64, 64, 4096], [90, 40, 3600]]);
    expect(preds.map((p) => p.path)).toEqual(paths);
    expect(events).toContain('fit:3/3');
    expect(events).toContain('predict:3/3');
  });
});
