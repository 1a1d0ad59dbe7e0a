// Thresholds: F1-adaptive thresholds against a brute-force F1 sweep, the fallbacks against
// their formulas in float64, anomalib's min-max normalisation written out, applyThresholds
// against per-element comparisons, JSON round trips and argument errors.
import { describe, expect, it } from 'vitest';
import { AnomalensError } from '../../lib/core/errors.js';
import { applyThresholds, fitThresholds } from '../../lib/detector/thresholds.js';
import { minMaxNormalize, parseThresholds } from '../../lib/internal.js';
import type { Thresholds } from '../../lib/detector/thresholds.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

/** Slow twin: every distinct score as threshold (anomalous when >= t); the largest t reaching the best F1. */
function bruteF1(scores: ArrayLike<number>, labels: ArrayLike<number>): { f1: number; threshold: number } {
  const distinct = [...new Set(Array.from(scores))].sort((a, b) => b - a);
  let best = { f1: -1, threshold: NaN };
  for (const t of distinct) {
    let tp = 0, fp = 0, fn = 0;
    for (let i = 0; i < scores.length; i++) {
      const p = scores[i] >= t, a = labels[i] !== 0;
      if (p && a) tp++;
      else if (p) fp++;
      else if (a) fn++;
    }
    const f1 = (2 * tp) / (2 * tp + fp + fn);
    if (f1 > best.f1 + 1e-15) best = { f1, threshold: t };
  }
  return best;
}

/** Validation data: normal scores ~ U(0, 1), anomalous ~ U(0.6, 1.6); maps 13 x 11 with a defect square. */
function validation(n: number, seed: number, withDefects = true) {
  const r = rng(seed);
  const labels = new Uint8Array(n);
  const scores = new Float32Array(n);
  const maps: Float32Array[] = [];
  const masks: Uint8Array[] = [];
  const h = 13, w = 11;
  for (let i = 0; i < n; i++) {
    labels[i] = withDefects && i % 3 === 0 ? 1 : 0;
    scores[i] = labels[i] ? 0.6 + r() : r();
    const map = new Float32Array(h * w);
    const mask = new Uint8Array(h * w);
    for (let p = 0; p < h * w; p++) map[p] = r() * 0.8;
    if (labels[i]) {
      const y0 = Math.floor(r() * 8), x0 = Math.floor(r() * 6);
      for (let y = y0; y < y0 + 4; y++) for (let x = x0; x < x0 + 4; x++) {
        mask[y * w + x] = 1;
        map[y * w + x] = 0.5 + r();
      }
    }
    maps.push(map);
    masks.push(mask);
  }
  return { scores, labels, maps, masks, h, w };
}

const concat = <T extends Float32Array | Uint8Array>(parts: T[], C: new (n: number) => T): T => {
  const out = new C(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

describe('fitThresholds', () => {
  it('F1-adaptive image and pixel thresholds equal a brute-force sweep', async () => {
    const v = validation(40, 1);
    const thr = await fitThresholds({ scores: v.scores, labels: v.labels, maps: v.maps, masks: v.masks });
    const img = bruteF1(v.scores, v.labels);
    const pix = bruteF1(concat(v.maps, Float32Array), concat(v.masks, Uint8Array));
    expect(thr.method).toEqual({ image: 'f1', pixel: 'f1' });
    expect(thr.image).toBe(img.threshold);
    expect(thr.pixel).toBe(pix.threshold);
    expect(thr.f1!.image).toBeCloseTo(img.f1, 12);
    expect(thr.f1!.pixel).toBeCloseTo(pix.f1, 12);
    // min-max ranges of the validation data
    expect(thr.normalization!.image).toEqual({ min: Math.min(...v.scores), max: Math.max(...v.scores) });
    const all = concat(v.maps, Float32Array);
    expect(thr.normalization!.pixel).toEqual({ min: Math.min(...all), max: Math.max(...all) });
    // one-tensor maps ({ data, shape }) give the same
    const n = v.maps.length;
    const packed = await fitThresholds({
      scores: v.scores, labels: Array.from(v.labels, (l) => l === 1),
      maps: { data: all, shape: [n, v.h, v.w] }, masks: { data: concat(v.masks, Uint8Array), shape: [n, v.h, v.w] },
    });
    expect(packed).toEqual(thr);
  });

  it("falls back to the largest normal score, nudged up, when validation has no anomalies", async () => {
    const v = validation(25, 2, false);
    const thr = await fitThresholds({ scores: v.scores, labels: v.labels, maps: v.maps, masks: v.masks });
    const maxScore = Math.max(...v.scores);
    expect(thr.method).toEqual({ image: 'max', pixel: 'max' });
    expect(thr.f1).toBeUndefined();
    expect(thr.image!).toBeGreaterThan(maxScore);
    expect(thr.image! - maxScore).toBeLessThanOrEqual(Number.EPSILON * maxScore);
    // every validation normal stays normal, and so does every pixel
    for (const s of v.scores) expect(applyThresholds(thr, s).predLabel).toBe(0);
    for (const m of v.maps) expect(applyThresholds(thr, 0, m).predMask!.every((x) => x === 0)).toBe(true);
    expect(applyThresholds(thr, maxScore * 1.0001).predLabel).toBe(1);
    // zero is nudged to the smallest positive double
    const z = await fitThresholds({ scores: [0, 0], labels: [0, 0] });
    expect(z.image).toBe(Number.MIN_VALUE);
    const neg = await fitThresholds({ scores: [-2, -1], labels: [0, 0] });
    expect(neg.image! > -1 && neg.image! - -1 < 1e-15).toBe(true);
  });

  it("falls back to mean + k std (population std, float64) with fallback 'meanStd'", async () => {
    const v = validation(30, 3, false);
    const mean = (xs: ArrayLike<number>) => Array.from(xs).reduce((a, x) => a + x, 0) / xs.length;
    const std = (xs: ArrayLike<number>) => {
      const m = mean(xs);
      return Math.sqrt(mean(Array.from(xs, (x) => (x - m) ** 2)));
    };
    const thr = await fitThresholds({ scores: v.scores, labels: v.labels, maps: v.maps, masks: v.masks, fallback: 'meanStd' });
    expect(thr.method).toEqual({ image: 'meanStd', pixel: 'meanStd' });
    expect(thr.image).toBeCloseTo(mean(v.scores) + 3 * std(v.scores), 12);
    const all = concat(v.maps, Float32Array);
    expect(thr.pixel).toBeCloseTo(mean(all) + 3 * std(all), 12);
    const k1 = await fitThresholds({ scores: v.scores, labels: v.labels, fallback: 'meanStd', stdFactor: 1 });
    expect(k1.image).toBeCloseTo(mean(v.scores) + std(v.scores), 12);
  });

  it('without masks, fits the pixel level on the maps of the normal images only', async () => {
    const v = validation(21, 4);
    const thr = await fitThresholds({ scores: v.scores, labels: v.labels, maps: v.maps });
    const normalPixels = concat(v.maps.filter((_, i) => v.labels[i] === 0), Float32Array);
    const all = concat(v.maps, Float32Array);
    expect(thr.method.pixel).toBe('max');
    expect(thr.pixel!).toBeGreaterThan(Math.max(...normalPixels));
    expect(thr.pixel!).toBeLessThan(Math.max(...all));  // the defects' pixels were not used
    expect(thr.normalization!.pixel).toEqual({ min: Math.min(...all), max: Math.max(...all) });
    await expect(fitThresholds({ maps: v.maps })).rejects.toThrow(/needs labels and maps as a list/);
    await expect(fitThresholds({ scores: v.scores.subarray(0, 5), labels: v.labels.subarray(0, 5), maps: v.maps })).rejects.toThrow(/one map per label/);
  });

  it('takes manual thresholds, fitting only the other level', async () => {
    const v = validation(30, 5);
    const thr = await fitThresholds({ scores: v.scores, labels: v.labels, maps: v.maps, masks: v.masks, image: 0.7 });
    expect(thr.image).toBe(0.7);
    expect(thr.method).toEqual({ image: 'manual', pixel: 'f1' });
    expect(thr.f1).toEqual({ pixel: thr.f1!.pixel });
    expect(thr.normalization!.image).toEqual({ min: Math.min(...v.scores), max: Math.max(...v.scores) });
    const handOnly = await fitThresholds({ image: 1.5, pixel: 0.25 });
    expect(handOnly).toEqual({ version: 1, image: 1.5, pixel: 0.25, method: { image: 'manual', pixel: 'manual' } });
    const noNorm = await fitThresholds({ scores: v.scores, labels: v.labels, normalize: false });
    expect(noNorm.normalization).toBeUndefined();
    await expect(fitThresholds({ image: 1, normalize: true })).rejects.toThrow(/needs validation data/);
  });

  it('rejects bad arguments', async () => {
    await expect(fitThresholds({})).rejects.toThrow(TypeError);
    await expect(fitThresholds({ scores: [1, 2] } as never)).rejects.toThrow(/go together/);
    await expect(fitThresholds({ scores: [1, 2], labels: [0] })).rejects.toThrow(RangeError);
    await expect(fitThresholds({ scores: [1, 2], labels: [0, 1], fallback: 'p99' as never })).rejects.toThrow(/options.fallback/);
    await expect(fitThresholds({ scores: [1, 2], labels: [0, 1], bogus: 1 } as never)).rejects.toThrow(/unknown option 'bogus'/);
    const err = await fitThresholds({ scores: new Float32Array([1, NaN]), labels: [0, 1] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AnomalensError);
    expect((err as AnomalensError).code).toBe('ERR_INVALID_ARGUMENT');
    expect((err as Error).message).toContain('scores[1] is NaN');
    await expect(fitThresholds({ maps: [new Float32Array(4)], masks: [new Uint8Array(3)] })).rejects.toThrow(RangeError);
  });
});

describe('applyThresholds and normalisation', () => {
  /** anomalib's normalize_min_max, written out. */
  const anomalib = (x: number, t: number, min: number, max: number) => Math.min(1, Math.max(0, (x - t) / (max - min) + 0.5));

  it('min-max normalisation puts the threshold at 0.5 and clips to [0, 1]', () => {
    const range = { min: -1, max: 3 };
    for (const x of [-5, -1, 0, 0.5, 1, 2.9, 3, 7]) expect(minMaxNormalize(x, 0.5, range)).toBeCloseTo(anomalib(x, 0.5, -1, 3), 15);
    expect(minMaxNormalize(0.5, 0.5, range)).toBe(0.5);
    expect(minMaxNormalize(2, 2, { min: 2, max: 2 })).toBe(0.5);  // zero range taken as 1
    expect(minMaxNormalize(2.25, 2, { min: 2, max: 2 })).toBe(0.75);
  });

  it('gives labels, masks and normalised values element by element', async () => {
    const v = validation(30, 6);
    const thr = await fitThresholds({ scores: v.scores, labels: v.labels, maps: v.maps, masks: v.masks });
    const { min, max } = thr.normalization!.pixel!;
    for (let i = 0; i < 6; i++) {
      const r = applyThresholds(thr, v.scores[i], v.maps[i]);
      expect(r.predLabel).toBe(v.scores[i] >= thr.image! ? 1 : 0);
      expect(r.normalizedScore).toBeCloseTo(anomalib(v.scores[i], thr.image!, thr.normalization!.image!.min, thr.normalization!.image!.max), 12);
      expect(r.normalizedScore! >= 0.5).toBe(r.predLabel === 1);
      for (let p = 0; p < v.maps[i].length; p++) {
        expect(r.predMask![p]).toBe(v.maps[i][p] >= thr.pixel! ? 1 : 0);
        expect(r.normalizedMap![p]).toBeCloseTo(anomalib(v.maps[i][p], thr.pixel!, min, max), 6);
      }
    }
    // a plain { image, pixel } (the Detector's) works; absent parts are left out
    expect(applyThresholds({ image: 0.5 }, 0.7)).toEqual({ predLabel: 1 });
    expect(applyThresholds({ pixel: 0.5 }, 0.7, new Float32Array([0.2, 0.5]))).toEqual({ predMask: new Uint8Array([0, 1]) });
    expect(applyThresholds({ image: 0.5, pixel: 0.5 }, 0.1)).toEqual({ predLabel: 0 });
    expect(() => applyThresholds({ image: 0.5 }, NaN)).toThrow(RangeError);
    expect(() => applyThresholds({ image: 0.5 }, 1, [1, 2] as never)).toThrow(TypeError);
  });

  it('round-trips through JSON and rejects malformed objects', async () => {
    const v = validation(30, 7);
    const thr = await fitThresholds({ scores: v.scores, labels: v.labels, maps: v.maps, masks: v.masks });
    const back = parseThresholds(JSON.parse(JSON.stringify(thr)));
    expect(back).toEqual(thr);
    const fallback = await fitThresholds({ scores: [0.1, 0.3], labels: [0, 0] });
    expect(parseThresholds(JSON.parse(JSON.stringify(fallback))).image).toBe(fallback.image);
    expect(parseThresholds({ image: 2 })).toEqual({ version: 1, image: 2, method: { image: 'manual' } });
    expect(() => parseThresholds({ version: 2 })).toThrow(/version must be 1/);
    expect(() => parseThresholds({ version: 1, method: { image: 'guess' }, image: 1 } as unknown as Thresholds)).toThrow(/method.image/);
    expect(() => parseThresholds({ version: 1, method: {}, normalization: { image: { min: 2, max: 1 } } })).toThrow(/max must be >=/);
    expect(() => parseThresholds({ version: 1, method: {}, image: 'x' })).toThrow(TypeError);
    expect(() => parseThresholds(null)).toThrow(TypeError);
  });
});
