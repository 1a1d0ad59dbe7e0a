// Overlays: the jet table against matplotlib (fixture test/fixtures/overlay/jet.json, made by
// make_jet.py), blend values and contour pixels on tiny images against per-pixel twins, and
// the written PNG decoded back. The CSV score table: csv.test.ts.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { AnomalensError } from '../../lib/core/errors.js';
import { JET_LUT, maskContour } from '../../lib/internal.js';
import { renderOverlay, writeOverlay } from '../../lib/report/overlay.js';
import { magneticTile, missing } from '../helpers/shared-data.js';
import { tempDir } from '../helpers/tmp.js';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'overlay');
const { dir: tmp, cleanup } = tempDir('anomalens-overlay-');
afterAll(cleanup);

function tinyImage(w: number, h: number) {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 29 + 7) % 256;
  return { data, width: w, height: h };
}

/** A rectangle mask [x0, x1) x [y0, y1). */
function rect(w: number, h: number, x0: number, y0: number, x1: number, y1: number): Uint8Array {
  const m = new Uint8Array(w * h);
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) m[y * w + x] = 1;
  return m;
}

describe('jet colour map', () => {
  it("equals matplotlib's cm.jet(x, bytes=True)", () => {
    const ref = JSON.parse(readFileSync(join(FIX, 'jet.json'), 'utf8')) as { lut: number[][] };
    expect(Array.from(JET_LUT)).toEqual(ref.lut.flat());
  });
});

describe('renderOverlay', () => {
  it('blends round(alpha * jet + (1 - alpha) * image) with the map scaled to its range', () => {
    const w = 7, h = 5;
    const img = tinyImage(w, h);
    const map = Float32Array.from({ length: w * h }, (_, i) => Math.sin(i) * 3 + 1);
    const lo = Math.min(...map), hi = Math.max(...map);
    for (const alpha of [0.5, 0.3, 1, 0]) {
      const out = renderOverlay(img, map, { alpha });
      for (let p = 0; p < w * h; p++) {
        const idx = Math.min(255, Math.floor(((map[p] - lo) / (hi - lo)) * 256));
        for (let c = 0; c < 3; c++) expect(out[p * 3 + c]).toBe(Math.round(alpha * JET_LUT[idx * 3 + c] + (1 - alpha) * img.data[p * 3 + c]));
      }
    }
    // a fixed range clips: below -> jet(0) (dark blue), above -> jet(1) (dark red)
    const out = renderOverlay(img, new Float32Array(w * h).fill(-10).fill(10, 3), { range: [0, 1], alpha: 1 });
    expect(Array.from(out.subarray(0, 3))).toEqual([0, 0, 127]);
    expect(Array.from(out.subarray(9, 12))).toEqual([127, 0, 0]);
    // a constant map is all low end
    const flat = renderOverlay(img, new Float32Array(w * h).fill(2), { alpha: 1 });
    expect(Array.from(flat.subarray(0, 6))).toEqual([0, 0, 127, 0, 0, 127]);
  });

  it("draws the mask's inner contour, 1 or 2 px wide, in the contour colour", () => {
    const w = 12, h = 10;
    const img = tinyImage(w, h);
    const map = new Float32Array(w * h);
    const mask = rect(w, h, 3, 2, 9, 7);  // x 3..8, y 2..6
    const out = renderOverlay(img, map, { mask, contourColor: [255, 0, 0] });
    const plain = renderOverlay(img, map);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const edge = mask[y * w + x] === 1 && (x === 3 || x === 8 || y === 2 || y === 6);
        const p = (y * w + x) * 3;
        expect(Array.from(out.subarray(p, p + 3)), `pixel ${x},${y}`).toEqual(edge ? [255, 0, 0] : Array.from(plain.subarray(p, p + 3)));
      }
    // width 2: two rings
    const c2 = maskContour(mask, w, h, 2);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const inside = x >= 3 && x <= 8 && y >= 2 && y <= 6;
        const d = Math.min(x - 3, 8 - x, y - 2, 6 - y);
        expect(c2[y * w + x], `pixel ${x},${y}`).toBe(inside && d <= 1 ? 1 : 0);
      }
    // a mask touching the image border is closed by the border; a full mask is all border
    const corner = maskContour(rect(w, h, 0, 0, 3, 3), w, h);
    expect(Array.from(corner.subarray(0, 4))).toEqual([1, 1, 1, 0]);
    expect(corner[1 * w + 1]).toBe(0);
    expect(corner[2 * w + 1]).toBe(1);
    // a diagonal neighbour outside counts (8-connected erosion): an L shape's inner corner
    const l = rect(w, h, 2, 2, 6, 6);
    l[2 * w + 5] = 0;
    expect(maskContour(l, w, h)[3 * w + 4]).toBe(1);
  });

  it('rejects maps and masks of the wrong size', () => {
    const img = tinyImage(4, 3);
    expect(() => renderOverlay(img, new Float32Array(11))).toThrow(/4x3 = 12/);
    expect(() => renderOverlay(img, new Float32Array(12), { mask: new Uint8Array(5) })).toThrow(/options.mask must have 4x3/);
    expect(() => renderOverlay(img, new Float32Array(12), { range: [1, 1] })).toThrow(/max > min/);
    expect(() => renderOverlay(img, new Float32Array(12), { alpha: 2 })).toThrow(RangeError);
    expect(() => renderOverlay(img, new Float32Array(12).fill(NaN))).toThrow(AnomalensError);
  });
});

describe('writeOverlay', () => {
  it('writes the rendered pixels as a PNG, atomically', async () => {
    const w = 9, h = 6;
    const img = tinyImage(w, h);
    const src = join(tmp, 'src.png');
    await sharp(img.data, { raw: { width: w, height: h, channels: 3 } }).png().toFile(src);
    const map = Float32Array.from({ length: w * h }, (_, i) => i / (w * h));
    const mask = rect(w, h, 2, 1, 6, 5);
    const out = join(tmp, 'out', 'nested', 'src.overlay.png');
    await writeOverlay(src, map, { out, mask, alpha: 0.4 });
    const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([w, h, 3]);
    expect(new Uint8Array(data)).toEqual(renderOverlay(img, map, { mask, alpha: 0.4 }));
    expect(readdirSync(join(tmp, 'out', 'nested'))).toEqual(['src.overlay.png']);
    await expect(writeOverlay(src, new Float32Array(10), { out })).rejects.toThrow(new RegExp(`9x6 = 54 elements \\(the size of ${src}`));
    await expect(writeOverlay(join(tmp, 'absent.png'), map, { out })).rejects.toThrow(/absent.png/);
  });

  const skip = missing(magneticTile);
  it.skipIf(!!skip)(`draws a readable overlay on a magnetic-tile image ${skip ?? ''}`, async () => {
    const image = join(magneticTile, 'test', 'blowhole', 'exp1_num_108719.jpg');
    const maskPath = join(magneticTile, 'ground_truth', 'blowhole', 'exp1_num_108719_mask.png');
    const { data: m, info } = await sharp(maskPath).greyscale().raw().toBuffer({ resolveWithObject: true });
    const w = info.width, h = info.height;
    const mask = Uint8Array.from(m, (v) => (v > 127 ? 1 : 0));
    // a smooth map peaking on the defect's centre
    let cx = 0, cy = 0, n = 0;
    for (let p = 0; p < w * h; p++) if (mask[p]) { cx += p % w; cy += Math.floor(p / w); n++; }
    cx /= n; cy /= n;
    const map = Float32Array.from({ length: w * h }, (_, p) => Math.exp(-((p % w - cx) ** 2 + (Math.floor(p / w) - cy) ** 2) / (2 * 15 ** 2)));
    const out = join(tmp, 'tile.overlay.png');
    await writeOverlay(image, map, { out, mask, range: [0, 1] });
    const meta = await sharp(out).metadata();
    expect([meta.width, meta.height]).toEqual([w, h]);
  });
});
