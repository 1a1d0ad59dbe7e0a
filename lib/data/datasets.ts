/**
 * Datasets: the MVTec AD folder layout and a plain folder layout, listed into samples
 * (path, label, defect type, mask path), and a streaming loader that decodes them in
 * batches with bounded memory (the batch being consumed plus at most one being loaded).
 *
 * MVTec AD layout (also used by magnetic-tile, VisA exports, anomalib's "MVTec-like" sets):
 * ```
 * <root>/train/good/*                     normal training images
 * <root>/test/good/*                      normal test images (label 0)
 * <root>/test/<type>/*                    defective test images (label 1, defectType <type>)
 * <root>/ground_truth/<type>/<name>_mask.png   (or <name>.png) mask of test/<type>/<name>.*
 * ```
 *
 * Masks are decoded to grey (RGB masks by Pillow's 'L' luminance) and binarised at value
 * > 127: masks saved with soft, anti-aliased edges (magnetic-tile's) become the same binary
 * region MVTec AD's evaluation uses. Normal images get an all-zero mask.
 *
 * Errors (AnomalensError): a missing or empty folder, a missing mask for a defective image
 * (naming the image) are ERR_IO; a mask without an image (naming the mask), two masks for
 * one image, and a mask whose size differs from its image's (naming both) are
 * ERR_INVALID_FILE.
 */
import { mulberry32 } from '../core/random.js';
import { readdir, stat } from 'node:fs/promises';
import { basename, extname, join, resolve } from 'node:path';
import { AnomalensError } from '../core/errors.js';
import {
  centerCropOffset, decodeImageRaw, listImages, preprocessImages, resizedSize,
  type ImageBatch, type Preprocess, type RawImage,
} from '../image/images.js';
import { describe, expectBoolean, expectInteger, expectNumber, expectObject, expectString } from '../core/validate.js';

/** One image of a data set. */
export interface Sample {
  path: string;
  /** 1 = anomalous (defective), 0 = normal. */
  label: 0 | 1;
  /** 'good' for normal images; the defect folder's name (MVTec) or 'abnormal' (folders). */
  defectType: string;
  /** The ground-truth mask, when the data set has one for this image. */
  maskPath?: string;
}

/** A data set split into training (normal only) and test samples, each sorted by path. */
export interface Dataset {
  name: string;
  train: Sample[];
  test: Sample[];
  /** Whether every defective test sample has a mask (pixel-level evaluation possible). */
  hasMasks: boolean;
}

/** Options of openFolders. */
export interface FolderLayout {
  /** Folder of normal images. */
  normal: string;
  /** Folder of anomalous images (all go to the test split). */
  abnormal?: string;
  /** Folder of masks of the abnormal images, matched by file stem (`x.png` or `x_mask.png` for `x.jpg`). */
  masks?: string;
  /** Folder of normal test images; when given, every image of `normal` is used for training. */
  normalTest?: string;
  /**
   * Fraction of the normal images moved to the test split when `normalTest` is absent
   * (anomalib's Folder default is 0.2). Default 0.2 when `abnormal` is given, else 0 (a
   * fit-only data set).
   */
  normalTestRatio?: number;
  /** Seed of the split (a seeded shuffle of the sorted paths). Default 0. */
  seed?: number;
  /** Data set name; default the normal folder's name. */
  name?: string;
}

/** Options of batches(). */
export interface BatchOptions {
  /** Images per batch. */
  batchSize: number;
  /** Preprocessing of the images (e.g. squareResize(256)). */
  preprocess: Preprocess;
  /** Decode the masks too (normal samples get all-zero masks). Default false. */
  withMasks?: boolean;
  /**
   * Size of the yielded masks: absent = each image's original size; an int or [h, w] =
   * resized to that (nearest neighbour); 'preprocess' = the same resize and centre crop as
   * the images, so mask pixels line up with the preprocessed batch.
   */
  maskSize?: number | [number, number] | 'preprocess';
  /** Load the next batch while the current one is consumed. Default true. */
  prefetch?: boolean;
}

/** A binary mask: 1 = defect, 0 = normal; `data` is h * w bytes, row-major. */
export interface SampleMask {
  data: Uint8Array;
  shape: [number, number];
}

/** One batch of batches(): `images.sizes` are the original sizes. */
export interface SampleBatch {
  samples: Sample[];
  images: ImageBatch;
  /** One mask per sample (with `withMasks`), usable as the metrics API's `Masks`. */
  masks?: SampleMask[];
}

const GOOD = 'good';
const MASK_SUFFIX = '_mask';

const stemOf = (path: string) => basename(path, extname(path));

async function isDir(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

async function requireDir(path: string, what: string): Promise<void> {
  if (!(await isDir(path))) throw new AnomalensError('ERR_IO', `${what} folder ${path} does not exist or is not a folder`);
}

/** Sub-folders of a folder, sorted. */
async function subfolders(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw new AnomalensError('ERR_IO', `cannot list folder ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const out: string[] = [];
  for (const e of entries) if (e.isDirectory() || (e.isSymbolicLink() && (await isDir(join(dir, e.name))))) out.push(e.name);
  return out.sort();
}

/** Image files of a folder, [] when it holds none (listImages throws for that). */
async function imagesOrNone(dir: string): Promise<string[]> {
  try {
    return await listImages(dir);
  } catch (err) {
    if (err instanceof AnomalensError && /^no images/.test(err.message)) return [];
    throw err;
  }
}

/**
 * Attaches masks to images by stem: mask `x_mask.*` or `x.*` belongs to image `x.*`. Every
 * mask must find an image, no image may get two masks; with `required`, every image needs one.
 */
function matchMasks(images: Sample[], masks: string[], required: boolean, where: string): void {
  const byStem = new Map<string, Sample>();
  for (const s of images) {
    const stem = stemOf(s.path);
    const other = byStem.get(stem);
    if (other && masks.length > 0)
      throw new AnomalensError('ERR_INVALID_FILE', `images ${other.path} and ${s.path} have the same file stem '${stem}', so masks cannot be matched to them`);
    byStem.set(stem, s);
  }
  for (const m of masks) {
    const stem = stemOf(m);
    const owner =
      (stem.endsWith(MASK_SUFFIX) ? byStem.get(stem.slice(0, -MASK_SUFFIX.length)) : undefined) ?? byStem.get(stem);
    if (!owner)
      throw new AnomalensError(
        'ERR_INVALID_FILE',
        `mask ${m} has no image: expected an image named '${stem.endsWith(MASK_SUFFIX) ? stem.slice(0, -MASK_SUFFIX.length) : stem}.*' in ${where}`,
      );
    if (owner.maskPath)
      throw new AnomalensError('ERR_INVALID_FILE', `image ${owner.path} has two masks: ${owner.maskPath} and ${m}`);
    owner.maskPath = m;
  }
  if (required)
    for (const s of images)
      if (!s.maskPath)
        throw new AnomalensError('ERR_IO', `defective image ${s.path} has no mask: expected ${stemOf(s.path)}${MASK_SUFFIX}.png or ${stemOf(s.path)}.png in the mask folder`);
}

/**
 * Lists an MVTec AD style data set (see the module comment). The ground_truth folder is
 * optional; when present, every defective test image needs a mask in
 * ground_truth/<type>/, and every mask there an image. A ground_truth/good folder, if any,
 * is matched the same way but not required. Rejects with ERR_IO naming a missing or empty
 * folder (root, train/good, test, test/<type>).
 * @example const ds = await openMvtec('data/magnetic-tile')  // ds.train.length === 635
 */
export async function openMvtec(root: string): Promise<Dataset> {
  expectString(root, 'root');
  await requireDir(root, 'data set');
  const trainDir = join(root, 'train', GOOD);
  await requireDir(trainDir, 'training');
  const train: Sample[] = (await listImages(trainDir)).map((path) => ({ path, label: 0, defectType: GOOD }));

  const testDir = join(root, 'test');
  await requireDir(testDir, 'test');
  const types = await subfolders(testDir);
  if (types.length === 0) throw new AnomalensError('ERR_IO', `test folder ${testDir} has no sub-folders (expected good/ and one per defect type)`);
  const gtDir = join(root, 'ground_truth');
  const hasGt = await isDir(gtDir);
  const test: Sample[] = [];
  for (const type of types) {
    const dir = join(testDir, type);
    const label = type === GOOD ? 0 : 1;
    const samples: Sample[] = (await listImages(dir)).map((path) => ({ path, label, defectType: type }));
    const maskDir = join(gtDir, type);
    if (hasGt && (await isDir(maskDir))) matchMasks(samples, await imagesOrNone(maskDir), label === 1, dir);
    else if (hasGt && label === 1)
      throw new AnomalensError('ERR_IO', `defective image ${samples[0].path} has no mask: folder ${maskDir} does not exist`);
    test.push(...samples);
  }
  if (hasGt)
    for (const type of await subfolders(gtDir))
      if (!types.includes(type)) {
        const masks = await imagesOrNone(join(gtDir, type));
        if (masks.length > 0)
          throw new AnomalensError('ERR_INVALID_FILE', `mask ${masks[0]} has no image: folder ${join(testDir, type)} does not exist`);
      }
  return { name: basename(resolve(root)), train, test, hasMasks: hasGt && test.every((s) => s.label === 0 || s.maskPath) };
}

/**
 * Lists a data set from plain folders: normal images (split into train and test, see
 * FolderLayout), optional abnormal images (test, label 1, defectType 'abnormal') and an
 * optional mask folder for the abnormal images (matched by stem; every abnormal image needs
 * a mask and every mask an abnormal image). Rejects with ERR_IO naming a missing or empty
 * folder, and when the split leaves the training set empty.
 * @example const ds = await openFolders({ normal: 'ok', abnormal: 'ng', masks: 'ng_masks' })
 */
export async function openFolders(layout: FolderLayout): Promise<Dataset> {
  const o = expectObject(layout, 'layout');
  for (const key of Object.keys(o))
    if (!['normal', 'abnormal', 'masks', 'normalTest', 'normalTestRatio', 'seed', 'name'].includes(key))
      throw new RangeError(`layout has an unknown option '${key}'; expected normal, abnormal, masks, normalTest, normalTestRatio, seed, name`);
  const normalDir = expectString(o.normal, 'layout.normal');
  const abnormalDir = o.abnormal === undefined ? undefined : expectString(o.abnormal, 'layout.abnormal');
  const maskDir = o.masks === undefined ? undefined : expectString(o.masks, 'layout.masks');
  const normalTestDir = o.normalTest === undefined ? undefined : expectString(o.normalTest, 'layout.normalTest');
  if (maskDir !== undefined && abnormalDir === undefined) throw new RangeError('layout.masks needs layout.abnormal (masks belong to abnormal images)');
  if (o.normalTestRatio !== undefined && normalTestDir !== undefined)
    throw new RangeError('layout.normalTestRatio and layout.normalTest exclude each other');
  const ratio =
    o.normalTestRatio === undefined
      ? abnormalDir && !normalTestDir ? 0.2 : 0
      : expectNumber(o.normalTestRatio, 'layout.normalTestRatio', { min: 0, max: 1 });
  if (ratio >= 1) throw new RangeError(`layout.normalTestRatio must be < 1 (the training split would be empty), received ${ratio}`);
  const seed = o.seed === undefined ? 0 : expectInteger(o.seed, 'layout.seed', { min: 0, max: 2 ** 32 - 1 });
  const name = o.name === undefined ? basename(resolve(normalDir)) : expectString(o.name, 'layout.name');

  await requireDir(normalDir, 'normal');
  const normal = await listImages(normalDir);
  let train = normal;
  let normalTest: string[] = [];
  if (normalTestDir !== undefined) {
    await requireDir(normalTestDir, 'normal test');
    normalTest = await listImages(normalTestDir);
  } else if (ratio > 0) {
    const order = normal.map((_, i) => i);
    const rand = mulberry32(seed);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    const nTest = Math.round(normal.length * ratio);
    const testSet = new Set(order.slice(0, nTest));
    train = normal.filter((_, i) => !testSet.has(i));
    normalTest = normal.filter((_, i) => testSet.has(i));
    if (train.length === 0)
      throw new AnomalensError('ERR_IO', `normal folder ${normalDir} has ${normal.length} image(s): too few to keep any for training with normalTestRatio ${ratio}`);
  }
  const test: Sample[] = normalTest.map((path) => ({ path, label: 0, defectType: GOOD }));
  if (abnormalDir !== undefined) {
    await requireDir(abnormalDir, 'abnormal');
    const abnormal: Sample[] = (await listImages(abnormalDir)).map((path) => ({ path, label: 1, defectType: 'abnormal' }));
    if (maskDir !== undefined) {
      await requireDir(maskDir, 'mask');
      matchMasks(abnormal, await listImages(maskDir), true, abnormalDir);
    }
    test.push(...abnormal);
  }
  test.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return {
    name,
    train: train.map((path) => ({ path, label: 0, defectType: GOOD })),
    test,
    hasMasks: maskDir !== undefined,
  };
}

// ---- masks -------------------------------------------------------------------------------

/** Binarises decoded mask pixels at grey value > 127 (RGB by Pillow's 'L' luminance). */
export function binariseMask(raw: RawImage): Uint8Array {
  const n = raw.width * raw.height;
  const c = raw.channels;
  const out = new Uint8Array(n);
  if (c <= 2) {
    for (let i = 0; i < n; i++) out[i] = raw.data[i * c] > 127 ? 1 : 0;
  } else {
    const d = raw.data;
    // Pillow: L = (R * 299 + G * 587 + B * 114) / 1000, rounded half up (ImagingConvert's L24 macro)
    for (let i = 0; i < n; i++) {
      const l = Math.floor((d[i * c] * 19595 + d[i * c + 1] * 38470 + d[i * c + 2] * 7471 + 0x8000) / 65536);
      out[i] = l > 127 ? 1 : 0;
    }
  }
  return out;
}

/**
 * Nearest-neighbour resize of a h x w byte mask to oh x ow, sampling source pixel
 * floor((dst + 0.5) * src / dst) on each axis (Pillow's and torchvision's NEAREST).
 */
export function resizeMaskNearest(mask: Uint8Array, h: number, w: number, oh: number, ow: number): Uint8Array {
  if (oh === h && ow === w) return mask;
  const out = new Uint8Array(oh * ow);
  const xs = new Int32Array(ow);
  for (let x = 0; x < ow; x++) xs[x] = Math.min(w - 1, Math.floor(((x + 0.5) * w) / ow));
  for (let y = 0; y < oh; y++) {
    const sy = Math.min(h - 1, Math.floor(((y + 0.5) * h) / oh));
    const row = sy * w;
    for (let x = 0; x < ow; x++) out[y * ow + x] = mask[row + xs[x]];
  }
  return out;
}

/** Crops (or zero-pads, torchvision-style) a h x w mask to ch x cw around its centre. */
function centerCropMask(mask: Uint8Array, h: number, w: number, ch: number, cw: number): Uint8Array {
  const top = centerCropOffset(h, ch);
  const left = centerCropOffset(w, cw);
  const out = new Uint8Array(ch * cw);
  for (let y = 0; y < ch; y++) {
    const sy = y + top;
    if (sy < 0 || sy >= h) continue;
    for (let x = 0; x < cw; x++) {
      const sx = x + left;
      if (sx >= 0 && sx < w) out[y * cw + x] = mask[sy * w + sx];
    }
  }
  return out;
}

type MaskGeometry = (w: number, h: number) => { resize: [number, number]; crop?: [number, number] };

function maskGeometry(maskSize: BatchOptions['maskSize'], pre: Preprocess): MaskGeometry {
  if (maskSize === undefined) return (w, h) => ({ resize: [h, w] });
  if (maskSize === 'preprocess') {
    const crop = pre.crop === undefined ? undefined : typeof pre.crop === 'number' ? ([pre.crop, pre.crop] as [number, number]) : pre.crop;
    return (w, h) => {
      const r = resizedSize(w, h, pre.resize);
      return { resize: [r.height, r.width], crop };
    };
  }
  const [mh, mw] = typeof maskSize === 'number' ? [maskSize, maskSize] : maskSize;
  return () => ({ resize: [mh, mw] });
}

/**
 * Decodes and binarises one sample's mask and brings it to the requested geometry; a normal
 * sample without a mask gets zeros. `size` is the image's original size.
 */
async function loadMask(sample: Sample, size: { width: number; height: number }, geometry: MaskGeometry): Promise<SampleMask> {
  const { width: w, height: h } = size;
  let mask: Uint8Array;
  if (sample.maskPath) {
    const raw = await decodeImageRaw(sample.maskPath);
    if (raw.width !== w || raw.height !== h)
      throw new AnomalensError(
        'ERR_INVALID_FILE',
        `mask ${sample.maskPath} is ${raw.width}x${raw.height} but its image ${sample.path} is ${w}x${h}`,
      );
    mask = binariseMask(raw);
  } else if (sample.label === 1) {
    throw new AnomalensError('ERR_IO', `defective image ${sample.path} has no mask (the data set has no ground truth for it)`);
  } else {
    mask = new Uint8Array(w * h);
  }
  const g = geometry(w, h);
  const [rh, rw] = g.resize;
  mask = resizeMaskNearest(mask, h, w, rh, rw);
  if (!g.crop) return { data: mask, shape: [rh, rw] };
  return { data: centerCropMask(mask, rh, rw, g.crop[0], g.crop[1]), shape: [g.crop[0], g.crop[1]] };
}

function readBatchOptions(options: unknown): Required<Omit<BatchOptions, 'maskSize'>> & Pick<BatchOptions, 'maskSize'> {
  const o = expectObject(options, 'options');
  for (const key of Object.keys(o))
    if (!['batchSize', 'preprocess', 'withMasks', 'maskSize', 'prefetch'].includes(key))
      throw new RangeError(`options has an unknown option '${key}'; expected batchSize, preprocess, withMasks, maskSize, prefetch`);
  const batchSize = expectInteger(o.batchSize, 'options.batchSize', { min: 1 });
  const preprocess = expectObject(o.preprocess, 'options.preprocess') as unknown as Preprocess;
  const withMasks = o.withMasks === undefined ? false : expectBoolean(o.withMasks, 'options.withMasks');
  const prefetch = o.prefetch === undefined ? true : expectBoolean(o.prefetch, 'options.prefetch');
  let maskSize: BatchOptions['maskSize'];
  if (o.maskSize !== undefined) {
    if (!withMasks) throw new RangeError('options.maskSize needs options.withMasks: true');
    if (o.maskSize === 'preprocess') maskSize = 'preprocess';
    else if (typeof o.maskSize === 'number') maskSize = expectInteger(o.maskSize, 'options.maskSize', { min: 1, max: 65535 });
    else if (Array.isArray(o.maskSize) && o.maskSize.length === 2)
      maskSize = [
        expectInteger(o.maskSize[0], 'options.maskSize[0]', { min: 1, max: 65535 }),
        expectInteger(o.maskSize[1], 'options.maskSize[1]', { min: 1, max: 65535 }),
      ];
    else throw new TypeError(`options.maskSize must be an integer, an [height, width] pair or 'preprocess', received ${describe(o.maskSize)}`);
  }
  return { batchSize, preprocess, withMasks, prefetch, maskSize };
}

/**
 * Streams samples as preprocessed batches (in order; the last batch may be smaller). Memory
 * is bounded: the batch handed out plus, with `prefetch` (default), the next one being
 * decoded. Images of one batch must preprocess to one size (use a [h, w] resize such as
 * squareResize). Errors name the file; a defective sample without a mask, or a mask of
 * another size than its image, rejects when its batch loads (see the module comment).
 * Breaking out of the loop early is safe.
 * @example
 * for await (const { samples, images, masks } of batches(ds.test, { batchSize: 8, preprocess: squareResize(224), withMasks: true })) {
 *   // images.data: Float32Array [n, 3, 224, 224]; masks[i].data: Uint8Array at sample i's original size
 * }
 */
export async function* batches(samples: readonly Sample[], options: BatchOptions): AsyncGenerator<SampleBatch, void, undefined> {
  if (!Array.isArray(samples) || samples.length === 0)
    throw new TypeError(`samples must be a non-empty array of samples, received ${describe(samples)}`);
  samples.forEach((s, i) => {
    expectObject(s, `samples[${i}]`);
    expectString(s.path, `samples[${i}].path`);
    if (s.label !== 0 && s.label !== 1) throw new RangeError(`samples[${i}].label must be 0 or 1, received ${describe(s.label)}`);
    if (s.maskPath !== undefined) expectString(s.maskPath, `samples[${i}].maskPath`);
  });
  const o = readBatchOptions(options);
  const geometry = maskGeometry(o.maskSize, o.preprocess);

  const load = async (start: number): Promise<SampleBatch> => {
    const chunk = samples.slice(start, start + o.batchSize);
    const raws = await Promise.all(chunk.map((s) => decodeImageRaw(s.path)));
    const images = await preprocessImages(raws, o.preprocess, chunk.map((s) => s.path));
    if (!o.withMasks) return { samples: chunk, images };
    // The raw pixels can go before the masks are decoded: only the sizes are needed.
    raws.length = 0;
    const masks = await Promise.all(chunk.map((s, i) => loadMask(s, images.sizes[i], geometry)));
    return { samples: chunk, images, masks };
  };

  let next: Promise<SampleBatch> | undefined = load(0);
  for (let start = 0; start < samples.length; start += o.batchSize) {
    const current: Promise<SampleBatch> = next ?? load(start);
    next = undefined;
    const batch = await current;
    if (o.prefetch && start + o.batchSize < samples.length) {
      next = load(start + o.batchSize);
      // A consumer that stops early never awaits it; do not let its failure go unhandled.
      next.catch(() => undefined);
    }
    yield batch;
  }
}
