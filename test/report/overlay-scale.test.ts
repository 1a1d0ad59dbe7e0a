// Overlays on the detector's pixel scale: detectorOverlayRange against minMaxNormalize, and
// `predict --out` end to end on synthetic tiles: a normal image's overlay has no hot pixel
// (recovered from the PNG), while per-image scaling (--overlay-scale image) makes it hot.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Detector } from '../../lib/detector/detector.js';
import { decodeImage } from '../../lib/image/images.js';
import { JET_LUT, main, minMaxNormalize } from '../../lib/internal.js';
import { detectorOverlayRange, renderOverlay } from '../../lib/report/overlay.js';
import { writeSeededWeights } from '../helpers/seeded.js';
import { writeTileDataset } from '../helpers/synthetic-tiles.js';
import { tempDir } from '../helpers/tmp.js';

const parity = JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/backbone/parity.json'), 'utf8'));
const { dir, cleanup } = tempDir('anomalens-overlay-scale-');
const weights = join(dir, 'r18.safetensors');
const data = join(dir, 'tile');

async function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((stdout += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((stderr += String(s)), true));
  const log = vi.spyOn(console, 'log').mockImplementation((...a) => void (stdout += a.join(' ') + '\n'));
  const err = vi.spyOn(console, 'error').mockImplementation((...a) => void (stderr += a.join(' ') + '\n'));
  try {
    return { code: await main(['node', 'anomalens', ...args]), stdout, stderr };
  } finally {
    o.mockRestore();
    e.mockRestore();
    log.mockRestore();
    err.mockRestore();
  }
}

beforeAll(async () => {
  await writeSeededWeights(weights, parity.archs.resnet18.tensors);
  await writeTileDataset(data, { nTrain: 6, nGood: 3, defects: { spot: 3 } });
});
afterAll(cleanup);

describe('detectorOverlayRange', () => {
  it("maps the detector's normalisation onto the colour map: the pixel threshold at its middle", () => {
    const thr = { pixel: 2.5, normalization: { pixel: { min: 1, max: 5 } } };
    expect(detectorOverlayRange(thr)).toEqual([0.5, 4.5]);
    // the colour index of renderOverlay with this range is floor(normalised value * 256)
    const w = 64, h = 1;
    const map = Float32Array.from({ length: w }, (_, i) => -0.5 + (i * 6) / w + 0.013);
    const img = { data: new Uint8Array(w * 3), width: w, height: h };
    const rgb = renderOverlay(img, map, { alpha: 1, range: detectorOverlayRange(thr) });
    for (let i = 0; i < w; i++) {
      const idx = Math.min(255, Math.floor(minMaxNormalize(map[i], thr.pixel, thr.normalization.pixel) * 256));
      expect(Array.from(rgb.subarray(i * 3, i * 3 + 3)), `value ${map[i]}`).toEqual(Array.from(JET_LUT.subarray(idx * 3, idx * 3 + 3)));
    }
    // a zero span is taken as 1, as minMaxNormalize does
    expect(detectorOverlayRange({ pixel: 3, normalization: { pixel: { min: 2, max: 2 } } })).toEqual([2.5, 3.5]);
    expect(detectorOverlayRange(undefined)).toBeUndefined();
    expect(detectorOverlayRange({ pixel: 1 })).toBeUndefined();
    expect(detectorOverlayRange({ image: 1, normalization: { image: { min: 0, max: 1 } } })).toBeUndefined();
  });
});

/** Pixels whose heatmap colour (recovered from a 0.5 blend) is jet's hot part: red high, blue low. */
function hotPixels(overlay: Uint8Array, image: Uint8Array): number {
  let hot = 0;
  for (let p = 0; p < overlay.length; p += 3) {
    const r = 2 * overlay[p] - image[p], b = 2 * overlay[p + 2] - image[p + 2];
    if (r > 200 && b < 60) hot++;
  }
  return hot;
}

describe('predict --out overlays', () => {
  const model = join(dir, 'padim.anomalens');
  const normal = join(data, 'test/good/0.png');

  it("colours a normal image's overlay on the detector's scale, so that it is not hot; per-image scaling only on request", async () => {
    let r = await run('eval', '--method', 'padim', '--arch', 'resnet18', '--weights', weights, '--data', data, '--size', '64', '--option', 'd=40', '--save', model);
    expect(r.code, r.stderr).toBe(0);
    const det = await Detector.load(model);
    const [p] = await det.predict([normal]);
    const range = detectorOverlayRange(det.thresholds);
    expect(range).toBeDefined();
    // the premise: nothing in the normal image reaches the pixel threshold
    expect(Math.max(...p.anomalyMap!)).toBeLessThan(det.thresholds!.pixel!);
    det.dispose();

    r = await run('predict', '--model', model, '--data', normal, '--out', join(dir, 'detector'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    r = await run('predict', '--model', model, '--data', normal, '--out', join(dir, 'image'), '--overlay-scale', 'image');
    expect(r.code, r.stderr).toBe(0);
    const image = await decodeImage(normal);
    const read = async (sub: string) => new Uint8Array(await sharp(join(dir, sub, '0_overlay.png')).removeAlpha().raw().toBuffer());
    const onScale = await read('detector');
    const perImage = await read('image');
    // exactly the render with the detector's range (PNG is lossless)
    expect(Buffer.from(onScale).equals(Buffer.from(renderOverlay(image, p.anomalyMap!, { range, mask: p.predMask })))).toBe(true);
    expect(hotPixels(onScale, image.data)).toBe(0);
    expect(hotPixels(perImage, image.data)).toBeGreaterThan(0);
  });

  it('--overlay-scale detector needs a model with pixel thresholds; without them predict says so', async () => {
    const bare = join(dir, 'bare.anomalens');
    let r = await run('fit', '--method', 'padim', '--arch', 'resnet18', '--weights', weights, '--data', data, '--size', '64', '--option', 'd=40', '--out', bare);
    expect(r.code, r.stderr).toBe(0);
    r = await run('predict', '--model', bare, '--data', normal, '--out', join(dir, 'x'), '--overlay-scale', 'detector');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--overlay-scale detector: .* has no pixel threshold/);
    r = await run('predict', '--model', bare, '--data', normal, '--out', join(dir, 'y'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/note: .*no pixel thresholds, so each overlay is scaled to its own min and max/);
    r = await run('predict', '--model', bare, '--data', normal, '--out', join(dir, 'z'), '--overlay-scale', 'sideways');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/'--overlay-scale <scale>' argument 'sideways' is invalid. Allowed choices are detector, image/);
  });
});
