/**
 * A small MVTec-layout data set of textured grey tiles (72 x 64) for end-to-end tests of
 * detectors, overlays and reports: normal tiles differ by a seeded texture phase, defective
 * ones carry a bright rectangle whose mask is written to ground_truth/.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

export const TILE_W = 72;
export const TILE_H = 64;

/** Writes one tile; with `defect`, a bright rectangle [x0, x1) x [y0, y1) and its mask. */
export async function writeTile(path: string, seed: number, defect?: { mask: string; rect?: [number, number, number, number] }): Promise<void> {
  const w = TILE_W, h = TILE_H;
  const px = Buffer.alloc(w * h);
  for (let i = 0; i < px.length; i++) px[i] = 100 + ((i * 7 + seed * 13 + ((i / w) | 0) * 3) % 40);
  const mask = Buffer.alloc(w * h);
  if (defect) {
    const [x0, y0, x1, y1] = defect.rect ?? [30, 20, 46, 36];
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) (px[y * w + x] = 250), (mask[y * w + x] = 255);
    await sharp(mask, { raw: { width: w, height: h, channels: 1 } }).png().toFile(defect.mask);
  }
  await sharp(px, { raw: { width: w, height: h, channels: 1 } }).png().toFile(path);
}

/**
 * Writes `root` with train/good (nTrain), test/good (nGood) and one test/<type> folder per
 * entry of `defects` (count images each, the rectangle moved per type and image).
 */
export async function writeTileDataset(root: string, o: { nTrain: number; nGood: number; defects: Record<string, number> }): Promise<void> {
  mkdirSync(join(root, 'train/good'), { recursive: true });
  mkdirSync(join(root, 'test/good'), { recursive: true });
  for (let i = 0; i < o.nTrain; i++) await writeTile(join(root, 'train/good', `${i}.png`), i);
  for (let i = 0; i < o.nGood; i++) await writeTile(join(root, 'test/good', `${i}.png`), 10 + i);
  let t = 0;
  for (const [type, count] of Object.entries(o.defects)) {
    mkdirSync(join(root, 'test', type), { recursive: true });
    mkdirSync(join(root, 'ground_truth', type), { recursive: true });
    for (let i = 0; i < count; i++) {
      const x0 = 8 + ((t * 17 + i * 11) % 44), y0 = 6 + ((t * 13 + i * 7) % 40);
      // the first type is bright and large; later ones smaller, so that some are missed
      const s = t === 0 ? 16 : Math.max(3, 10 - 3 * t);
      await writeTile(join(root, 'test', type, `${i}.png`), 20 + 10 * t + i, { mask: join(root, 'ground_truth', type, `${i}_mask.png`), rect: [x0, y0, x0 + s, y0 + s] });
    }
    t++;
  }
}
