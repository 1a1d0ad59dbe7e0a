// Datasets: MVTec AD and folder layouts on a synthetic tree written with sharp, masks
// binarised at > 127 and resized against slow per-pixel twins, batches() against loadBatch,
// the prefetch bound, errors naming the file; and the real magnetic-tile counts.
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The area's own modules (not lib/index.js), so that this file runs while other areas are mid-edit.
import { batches, openFolders, openMvtec } from '../../lib/data/datasets.js';
import { binariseMask, resizeMaskNearest } from '../../lib/internal.js';
import type { Sample, SampleBatch } from '../../lib/data/datasets.js';
import { AnomalensError } from '../../lib/core/errors.js';
import { decodeImageRaw, loadBatch, squareResize } from '../../lib/image/images.js';
import { magneticTile, missing } from '../helpers/shared-data.js';
import { tempDir } from '../helpers/tmp.js';

const { dir: tmp, cleanup } = tempDir('anomalens-datasets-');
afterAll(cleanup);

/** A deterministic RGB (or grey) test image. */
function pixels(w: number, h: number, c: number, seed: number): Uint8Array {
  const out = new Uint8Array(w * h * c);
  for (let i = 0; i < out.length; i++) out[i] = (i * 37 + seed * 101 + ((i * i) % 53)) % 256;
  return out;
}

async function writeImage(path: string, w: number, h: number, seed: number, format: 'png' | 'jpeg' = 'png'): Promise<void> {
  mkdirSync(join(path, '..'), { recursive: true });
  const img = sharp(pixels(w, h, 3, seed), { raw: { width: w, height: h, channels: 3 } });
  await (format === 'png' ? img.png() : img.jpeg({ quality: 95 })).toFile(path);
}

/** A grey mask with soft edges: 255 inside [x0, x1) x [y0, y1), 128 / 127 / 60 around it. */
function softMask(w: number, h: number, x0: number, y0: number, x1: number, y1: number): Uint8Array {
  const m = new Uint8Array(w * h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const d = Math.max(x0 - x, x - (x1 - 1), y0 - y, y - (y1 - 1), 0);
      m[y * w + x] = d === 0 ? 255 : d === 1 ? 128 : d === 2 ? 127 : d === 3 ? 60 : 0;
    }
  return m;
}

async function writeMask(path: string, data: Uint8Array, w: number, h: number): Promise<void> {
  mkdirSync(join(path, '..'), { recursive: true });
  await sharp(data, { raw: { width: w, height: h, channels: 1 } }).png().toFile(path);
}

/** A small MVTec tree: 20x16 images; crack masks in both naming styles. */
async function makeMvtec(root: string): Promise<void> {
  for (let i = 0; i < 4; i++) await writeImage(join(root, 'train', 'good', `${String(i).padStart(3, '0')}.png`), 20, 16, i);
  await writeImage(join(root, 'train', 'good', '004.jpg'), 20, 16, 4, 'jpeg');
  await writeImage(join(root, 'test', 'good', '000.png'), 20, 16, 10);
  await writeImage(join(root, 'test', 'good', '001.png'), 20, 16, 11);
  await writeImage(join(root, 'test', 'crack', '000.png'), 20, 16, 20);
  await writeImage(join(root, 'test', 'crack', '001.jpg'), 20, 16, 21, 'jpeg');
  await writeImage(join(root, 'test', 'hole', '000.png'), 20, 16, 30);
  await writeMask(join(root, 'ground_truth', 'crack', '000_mask.png'), softMask(20, 16, 5, 4, 12, 9), 20, 16);
  await writeMask(join(root, 'ground_truth', 'crack', '001.png'), softMask(20, 16, 0, 0, 6, 6), 20, 16);
  await writeMask(join(root, 'ground_truth', 'hole', '000_mask.png'), softMask(20, 16, 14, 10, 18, 14), 20, 16);
}

async function expectRejects(p: Promise<unknown>, code: string, ...parts: string[]): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err, 'expected a rejection').toBeInstanceOf(AnomalensError);
  expect((err as AnomalensError).code).toBe(code);
  for (const part of parts) expect((err as Error).message).toContain(part);
}

async function collect(it: AsyncIterable<SampleBatch>): Promise<SampleBatch[]> {
  const out: SampleBatch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

const mv = join(tmp, 'mvtec', 'widget');
beforeAll(() => makeMvtec(mv));

describe('openMvtec', () => {
  it('lists train and test samples with labels, defect types and masks', async () => {
    const ds = await openMvtec(mv);
    expect(ds.name).toBe('widget');
    expect(ds.hasMasks).toBe(true);
    expect(ds.train.map((s) => s.path)).toEqual(['000.png', '001.png', '002.png', '003.png', '004.jpg'].map((f) => join(mv, 'train', 'good', f)));
    expect(ds.train.every((s) => s.label === 0 && s.defectType === 'good' && s.maskPath === undefined)).toBe(true);
    expect(ds.test).toEqual([
      { path: join(mv, 'test', 'crack', '000.png'), label: 1, defectType: 'crack', maskPath: join(mv, 'ground_truth', 'crack', '000_mask.png') },
      { path: join(mv, 'test', 'crack', '001.jpg'), label: 1, defectType: 'crack', maskPath: join(mv, 'ground_truth', 'crack', '001.png') },
      { path: join(mv, 'test', 'good', '000.png'), label: 0, defectType: 'good' },
      { path: join(mv, 'test', 'good', '001.png'), label: 0, defectType: 'good' },
      { path: join(mv, 'test', 'hole', '000.png'), label: 1, defectType: 'hole', maskPath: join(mv, 'ground_truth', 'hole', '000_mask.png') },
    ]);
  });

  it('accepts a tree without ground_truth (no masks)', async () => {
    const root = join(tmp, 'nogt');
    await writeImage(join(root, 'train', 'good', 'a.png'), 8, 8, 1);
    await writeImage(join(root, 'test', 'good', 'b.png'), 8, 8, 2);
    await writeImage(join(root, 'test', 'bad', 'c.png'), 8, 8, 3);
    const ds = await openMvtec(root);
    expect(ds.hasMasks).toBe(false);
    expect(ds.test.map((s) => [s.label, s.maskPath])).toEqual([[1, undefined], [0, undefined]]);
    // withMasks then fails on the defective image, naming it
    await expectRejects(collect(batches(ds.test, { batchSize: 4, preprocess: squareResize(8), withMasks: true })), 'ERR_IO', join(root, 'test', 'bad', 'c.png'), 'no mask');
  });

  it('rejects broken trees, naming the folder, image or mask', async () => {
    const base = join(tmp, 'broken');
    const fresh = async (name: string) => {
      const root = join(base, name);
      await makeMvtec(root);
      return root;
    };
    await expectRejects(openMvtec(join(base, 'absent')), 'ERR_IO', join(base, 'absent'));

    let root = await fresh('missing-mask');
    rmSync(join(root, 'ground_truth', 'crack', '001.png'));
    await expectRejects(openMvtec(root), 'ERR_IO', join(root, 'test', 'crack', '001.jpg'), 'no mask');

    root = await fresh('missing-mask-folder');
    rmSync(join(root, 'ground_truth', 'hole'), { recursive: true });
    await expectRejects(openMvtec(root), 'ERR_IO', join(root, 'test', 'hole', '000.png'), join(root, 'ground_truth', 'hole'));

    root = await fresh('orphan-mask');
    await writeMask(join(root, 'ground_truth', 'crack', '007_mask.png'), new Uint8Array(20 * 16), 20, 16);
    await expectRejects(openMvtec(root), 'ERR_INVALID_FILE', join(root, 'ground_truth', 'crack', '007_mask.png'), 'has no image');

    root = await fresh('orphan-type');
    await writeMask(join(root, 'ground_truth', 'scratch', '000_mask.png'), new Uint8Array(20 * 16), 20, 16);
    await expectRejects(openMvtec(root), 'ERR_INVALID_FILE', join(root, 'ground_truth', 'scratch', '000_mask.png'), join(root, 'test', 'scratch'));

    root = await fresh('two-masks');
    await writeMask(join(root, 'ground_truth', 'crack', '000.png'), new Uint8Array(20 * 16), 20, 16);
    await expectRejects(openMvtec(root), 'ERR_INVALID_FILE', join(root, 'test', 'crack', '000.png'), 'two masks');

    root = await fresh('empty-train');
    for (const f of ['000.png', '001.png', '002.png', '003.png', '004.jpg']) rmSync(join(root, 'train', 'good', f));
    await expectRejects(openMvtec(root), 'ERR_IO', join(root, 'train', 'good'));

    root = await fresh('empty-type');
    rmSync(join(root, 'test', 'hole', '000.png'));
    await expectRejects(openMvtec(root), 'ERR_IO', join(root, 'test', 'hole'));

    root = await fresh('no-test');
    rmSync(join(root, 'test'), { recursive: true });
    await expectRejects(openMvtec(root), 'ERR_IO', join(root, 'test'));

    root = await fresh('mask-size');
    await writeMask(join(root, 'ground_truth', 'hole', '000_mask.png'), new Uint8Array(10 * 8), 10, 8);
    const ds = await openMvtec(root);  // sizes are checked when the masks are decoded
    await expectRejects(
      collect(batches(ds.test, { batchSize: 2, preprocess: squareResize(8), withMasks: true })),
      'ERR_INVALID_FILE', join(root, 'ground_truth', 'hole', '000_mask.png'), join(root, 'test', 'hole', '000.png'), '10x8', '20x16',
    );
  });
});

describe('masks', () => {
  it('binarise at > 127 (grey, grey+alpha, RGB by luminance)', () => {
    const grey = new Uint8Array([0, 127, 128, 255]);
    expect([...binariseMask({ data: grey, width: 4, height: 1, channels: 1 })]).toEqual([0, 0, 1, 1]);
    expect([...binariseMask({ data: new Uint8Array([127, 255, 128, 0]), width: 2, height: 1, channels: 2 })]).toEqual([0, 1]);
    // L = (299 R + 587 G + 114 B) / 1000: (128, 128, 128) -> 128; (255, 0, 0) -> 76; (0, 255, 0) -> 150
    const rgb = new Uint8Array([128, 128, 128, 255, 0, 0, 0, 255, 0, 127, 127, 127]);
    expect([...binariseMask({ data: rgb, width: 4, height: 1, channels: 3 })]).toEqual([1, 0, 1, 0]);
  });

  it('nearest-neighbour resize samples floor((dst + 0.5) * src / dst)', () => {
    // slow twin: the formula per pixel, written out
    const w = 7, h = 5;
    const src = Uint8Array.from({ length: w * h }, (_, i) => i);
    for (const [oh, ow] of [[5, 7], [10, 14], [2, 3], [13, 4], [1, 1]]) {
      const out = resizeMaskNearest(src, h, w, oh, ow);
      for (let y = 0; y < oh; y++)
        for (let x = 0; x < ow; x++)
          expect(out[y * ow + x]).toBe(Math.floor(((y + 0.5) * h) / oh) * w + Math.floor(((x + 0.5) * w) / ow));
    }
    // doubling repeats every pixel
    expect([...resizeMaskNearest(new Uint8Array([1, 2]), 1, 2, 2, 4)]).toEqual([1, 1, 2, 2, 1, 1, 2, 2]);
  });
});

describe('batches', () => {
  it('streams images equal to loadBatch and masks at the original size', async () => {
    const ds = await openMvtec(mv);
    const pre = squareResize(12);
    const got = await collect(batches(ds.test, { batchSize: 2, preprocess: pre, withMasks: true }));
    expect(got.map((b) => b.samples.length)).toEqual([2, 2, 1]);
    expect(got.flatMap((b) => b.samples)).toEqual(ds.test);
    for (const b of got) {
      const ref = await loadBatch(b.samples.map((s) => s.path), pre);
      expect(b.images.shape).toEqual(ref.shape);
      expect(b.images.data).toEqual(ref.data);
      expect(b.images.sizes).toEqual(ref.sizes);
      for (let i = 0; i < b.samples.length; i++) {
        const s = b.samples[i];
        const m = b.masks![i];
        expect(m.shape).toEqual([16, 20]);
        // slow twin: the mask file's grey values thresholded here, zeros for normal images
        const want = new Uint8Array(20 * 16);
        if (s.maskPath) {
          const { data, info } = await sharp(s.maskPath).raw().toBuffer({ resolveWithObject: true });
          for (let p = 0; p < want.length; p++) want[p] = data[p * info.channels] > 127 ? 1 : 0;
        }
        expect(m.data).toEqual(want);
      }
    }
    // 000_mask: the 7x5 core (255) plus the 128 ring -> a 9x7 region
    const crack0 = got[0].masks![0].data;
    expect(crack0.reduce((a, v) => a + v, 0)).toBe(9 * 7);
    // without masks: no masks field
    const plain = await collect(batches(ds.train, { batchSize: 3, preprocess: pre }));
    expect(plain.map((b) => b.samples.length)).toEqual([3, 2]);
    expect(plain[0].masks).toBeUndefined();
  });

  it('resizes masks to a given size or along with the preprocessing', async () => {
    const ds = await openMvtec(mv);
    const crack = ds.test.filter((s) => s.defectType === 'crack');
    const [orig] = await collect(batches(crack, { batchSize: 2, preprocess: squareResize(8), withMasks: true }));
    const [sized] = await collect(batches(crack, { batchSize: 2, preprocess: squareResize(8), withMasks: true, maskSize: [8, 10] }));
    expect(sized.masks![0].shape).toEqual([8, 10]);
    expect(sized.masks![0].data).toEqual(resizeMaskNearest(orig.masks![0].data, 16, 20, 8, 10));
    const [sq] = await collect(batches(crack, { batchSize: 2, preprocess: squareResize(8), withMasks: true, maskSize: 6 }));
    expect(sq.masks![1].shape).toEqual([6, 6]);
    // 'preprocess' with resize 12 (shorter side: 16x20 -> 12x15) and crop 10: nearest resize then centre crop
    const pre = { resize: 12, crop: 10 };
    const [pp] = await collect(batches(crack, { batchSize: 2, preprocess: pre, withMasks: true, maskSize: 'preprocess' }));
    expect(pp.images.shape).toEqual([2, 3, 10, 10]);
    for (let i = 0; i < 2; i++) {
      const r = resizeMaskNearest(orig.masks![i].data, 16, 20, 12, 15);
      const want = new Uint8Array(100);
      for (let y = 0; y < 10; y++) for (let x = 0; x < 10; x++) want[y * 10 + x] = r[(y + 1) * 15 + (x + 2)];  // offsets round(2/2), round(5/2)
      expect(pp.masks![i].shape).toEqual([10, 10]);
      expect(pp.masks![i].data).toEqual(want);
    }
  });

  it('keeps at most one batch ahead, and none without prefetch', async () => {
    const root = join(tmp, 'prefetch');
    const samples: Sample[] = [];
    for (let i = 0; i < 6; i++) {
      const path = join(root, `${i}.png`);
      await writeImage(path, 8, 8, i);
      samples.push({ path, label: 0, defectType: 'good' });
    }
    // After batch 0 arrives, batch 1 is loading and batch 2 untouched: removing batch 2's files
    // makes it fail when it is reached, so it was not read ahead.
    const hidden = join(root, 'hidden');
    mkdirSync(hidden);
    const it1 = batches(samples, { batchSize: 2, preprocess: squareResize(8) });
    expect((await it1.next()).value?.samples).toEqual(samples.slice(0, 2));
    renameSync(samples[4].path, join(hidden, '4.png'));
    expect((await it1.next()).value?.samples).toEqual(samples.slice(2, 4));
    await expectRejects(it1.next(), 'ERR_IO', samples[4].path);
    renameSync(join(hidden, '4.png'), samples[4].path);

    const it2 = batches(samples, { batchSize: 2, preprocess: squareResize(8), prefetch: false });
    await it2.next();
    renameSync(samples[2].path, join(hidden, '2.png'));
    await expectRejects(it2.next(), 'ERR_IO', samples[2].path);
    renameSync(join(hidden, '2.png'), samples[2].path);

    // Stopping early while the prefetched batch fails leaves no unhandled rejection.
    writeFileSync(samples[3].path, 'not an image');
    for await (const b of batches(samples, { batchSize: 2, preprocess: squareResize(8) })) {
      expect(b.samples.length).toBe(2);
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  });

  it('validates its arguments', async () => {
    const s: Sample[] = [{ path: 'x.png', label: 0, defectType: 'good' }];
    await expect(collect(batches([], { batchSize: 1, preprocess: squareResize(8) }))).rejects.toThrow(TypeError);
    await expect(collect(batches(s, { batchSize: 0, preprocess: squareResize(8) }))).rejects.toThrow(/options.batchSize must be >= 1/);
    await expect(collect(batches(s, { batchSize: 1, preprocess: squareResize(8), maskSize: 4 }))).rejects.toThrow(/needs options.withMasks/);
    await expect(collect(batches(s, { batchSize: 1, preprocess: squareResize(8), withMasks: true, maskSize: 'x' as never }))).rejects.toThrow(TypeError);
    await expect(collect(batches([{ ...s[0], label: 2 as 0 }], { batchSize: 1, preprocess: squareResize(8) }))).rejects.toThrow(/samples\[0\].label/);
  });
});

describe('openFolders', () => {
  const root = join(tmp, 'folders');
  beforeAll(async () => {
    for (let i = 0; i < 10; i++) await writeImage(join(root, 'ok', `n${i}.png`), 10, 10, i);
    for (let i = 0; i < 3; i++) await writeImage(join(root, 'ng', `d${i}.jpg`), 10, 10, 50 + i, 'jpeg');
    await writeMask(join(root, 'masks', 'd0.png'), softMask(10, 10, 2, 2, 5, 5), 10, 10);
    await writeMask(join(root, 'masks', 'd1_mask.png'), softMask(10, 10, 4, 4, 8, 8), 10, 10);
    await writeMask(join(root, 'masks', 'd2.png'), new Uint8Array(100), 10, 10);
    await writeImage(join(root, 'ok-test', 't0.png'), 10, 10, 99);
  });

  it('splits normal images with a seed, puts abnormal ones in test and matches masks by stem', async () => {
    const ds = await openFolders({ normal: join(root, 'ok'), abnormal: join(root, 'ng'), masks: join(root, 'masks') });
    expect(ds.name).toBe('ok');
    expect(ds.hasMasks).toBe(true);
    expect(ds.train.length).toBe(8);
    const normalTest = ds.test.filter((s) => s.label === 0);
    expect(normalTest.length).toBe(2);
    expect(new Set([...ds.train, ...normalTest].map((s) => s.path)).size).toBe(10);
    expect(ds.test.filter((s) => s.label === 1).map((s) => [s.path, s.maskPath, s.defectType])).toEqual([
      [join(root, 'ng', 'd0.jpg'), join(root, 'masks', 'd0.png'), 'abnormal'],
      [join(root, 'ng', 'd1.jpg'), join(root, 'masks', 'd1_mask.png'), 'abnormal'],
      [join(root, 'ng', 'd2.jpg'), join(root, 'masks', 'd2.png'), 'abnormal'],
    ]);
    // the same seed gives the same split, another seed (most likely) another
    const again = await openFolders({ normal: join(root, 'ok'), abnormal: join(root, 'ng'), masks: join(root, 'masks') });
    expect(again.train).toEqual(ds.train);
    const other = await openFolders({ normal: join(root, 'ok'), abnormal: join(root, 'ng'), seed: 7 });
    expect(other.train.map((s) => s.path)).not.toEqual(ds.train.map((s) => s.path));
    expect(other.hasMasks).toBe(false);
  });

  it('uses every normal image for training without abnormal images or with normalTest', async () => {
    const fitOnly = await openFolders({ normal: join(root, 'ok') });
    expect(fitOnly.train.length).toBe(10);
    expect(fitOnly.test).toEqual([]);
    const withTest = await openFolders({ normal: join(root, 'ok'), normalTest: join(root, 'ok-test'), abnormal: join(root, 'ng'), name: 'parts' });
    expect(withTest.name).toBe('parts');
    expect(withTest.train.length).toBe(10);
    expect(withTest.test.map((s) => s.label)).toEqual([1, 1, 1, 0]);
    const half = await openFolders({ normal: join(root, 'ok'), normalTestRatio: 0.5 });
    expect([half.train.length, half.test.length]).toEqual([5, 5]);
  });

  it('rejects bad layouts, naming the folder or file', async () => {
    await expectRejects(openFolders({ normal: join(root, 'nope') }), 'ERR_IO', join(root, 'nope'));
    mkdirSync(join(root, 'empty'), { recursive: true });
    await expectRejects(openFolders({ normal: join(root, 'empty') }), 'ERR_IO', join(root, 'empty'));
    await expectRejects(openFolders({ normal: join(root, 'ok'), abnormal: join(root, 'empty') }), 'ERR_IO', join(root, 'empty'));
    // a mask without an image; an abnormal image without a mask
    await expectRejects(openFolders({ normal: join(root, 'ok'), abnormal: join(root, 'ok-test'), masks: join(root, 'masks') }), 'ERR_INVALID_FILE', join(root, 'masks', 'd0.png'), 'has no image');
    await writeImage(join(root, 'ng2', 'd0.png'), 10, 10, 1);
    await writeImage(join(root, 'ng2', 'zz.png'), 10, 10, 2);
    await writeMask(join(root, 'masks2', 'd0.png'), new Uint8Array(100), 10, 10);
    await expectRejects(openFolders({ normal: join(root, 'ok'), abnormal: join(root, 'ng2'), masks: join(root, 'masks2') }), 'ERR_IO', join(root, 'ng2', 'zz.png'), 'no mask');
    await expect(openFolders({ normal: join(root, 'ok'), masks: join(root, 'masks') })).rejects.toThrow(/needs layout.abnormal/);
    await expect(openFolders({ normal: join(root, 'ok'), normalTestRatio: 1 })).rejects.toThrow(RangeError);
    await expect(openFolders({ normal: join(root, 'ok'), bogus: 1 } as never)).rejects.toThrow(/unknown option 'bogus'/);
    await expect(openFolders({ normal: 3 } as never)).rejects.toThrow(TypeError);
  });
});

describe('magnetic-tile', () => {
  const skip = missing(magneticTile);
  it.skipIf(!!skip)(`opens the real data set ${skip ?? ''}`, async () => {
    const ds = await openMvtec(magneticTile);
    expect(ds.train.length).toBe(635);
    expect(ds.test.filter((s) => s.label === 0).length).toBe(317);
    const bad = ds.test.filter((s) => s.label === 1);
    expect(bad.length).toBe(392);
    expect(bad.every((s) => s.maskPath !== undefined)).toBe(true);
    expect(ds.hasMasks).toBe(true);
    expect(new Set(bad.map((s) => s.defectType))).toEqual(new Set(['blowhole', 'break', 'crack', 'fray', 'uneven']));
    // every mask decodes at its image's size and marks some pixels (a slice per defect type)
    const slice = ['blowhole', 'break', 'crack', 'fray', 'uneven'].flatMap((t) => bad.filter((s) => s.defectType === t).slice(0, 4));
    for await (const b of batches(slice, { batchSize: 8, preprocess: squareResize(64), withMasks: true })) {
      b.masks!.forEach((m, i) => {
        expect(m.shape).toEqual([b.images.sizes[i].height, b.images.sizes[i].width]);
        expect(m.data.some((v) => v === 1)).toBe(true);
      });
    }
    // soft edges: the raw mask holds values strictly between 0 and 255
    const raw = await decodeImageRaw(bad[0].maskPath!);
    expect(raw.data.some((v) => v > 0 && v < 255)).toBe(true);
  });
});
