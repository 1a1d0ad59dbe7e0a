/**
 * Images: decoding (sharp; BMP by lib/image/bmp.ts) to the pixels Pillow's
 * `Image.open(p).convert('RGB')` gives, and preprocessing exactly as torchvision's PIL path:
 * Resize (PIL bilinear, antialiased when shrinking; bit-exact, in C++) -> optional CenterCrop
 * -> ToTensor (/255) -> Normalize(mean, std), into one contiguous NCHW Float32Array.
 *
 * Decoding follows Pillow where decoders agree on pixels: grey is replicated to 3 channels,
 * alpha is dropped (not composited), 16-bit colour keeps the high byte and 16-bit grey is
 * clipped to 255 (what convert('RGB') does to Pillow's "I"/"I;16" modes), embedded ICC
 * profiles and EXIF orientation are ignored.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import type { Sharp } from 'sharp';
import { decodeBmp, isBmp } from './bmp.js';
import { AnomalensError, callNative } from '../core/errors.js';
import { sniffPixelFormat } from './header.js';
import type { PixelFormat } from './header.js';
import { native } from '../core/native.js';
import { describe, expectBoolean, expectInteger, expectNumber, expectObject, expectString } from '../core/validate.js';

/** torchvision-style preprocessing. Sizes are [height, width] pairs, as in torchvision. */
export interface Preprocess {
  /** An int resizes the shorter side to it keeping the aspect ratio; [h, w] resizes exactly. */
  resize: number | [number, number];
  /** Centre crop: an int for a square, or [h, w]. Pads with 0 when larger than the image. */
  crop?: number | [number, number];
  /** Per-channel mean and std (RGB) of Normalize; default ImageNet's. */
  mean?: readonly [number, number, number];
  std?: readonly [number, number, number];
}

type Triple = readonly [number, number, number];
export const IMAGENET_MEAN: Triple = Object.freeze([0.485, 0.456, 0.406] as const);
export const IMAGENET_STD: Triple = Object.freeze([0.229, 0.224, 0.225] as const);
/** torchvision's ImageNet evaluation transform: Resize(256) + CenterCrop(224). */
export const IMAGENET_PREPROCESS: Readonly<Preprocess> = Object.freeze({ resize: 256, crop: 224 });

/**
 * A square resize without crop, the detectors' default: the whole image is kept, so maps
 * map back onto it.
 * @example const batch = await loadBatch(paths, squareResize(256))
 */
export function squareResize(size: number): Preprocess {
  expectInteger(size, 'size', { min: 1, max: MAX_SIZE });
  return { resize: [size, size] };
}

/** 8-bit RGB pixels, HWC (row-major, 3 bytes per pixel). */
export interface DecodedImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** 8-bit pixels, HWC: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA channels. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

/** A preprocessed batch: `data` is float32 NCHW with `shape`; `sizes` the original sizes. */
export interface ImageBatch {
  data: Float32Array;
  shape: [number, 3, number, number];
  sizes: { width: number; height: number }[];
}

/** File extensions listImages recognises (lower case). */
export const IMAGE_EXTENSIONS: readonly string[] = Object.freeze(['.bmp', '.jpeg', '.jpg', '.png', '.tif', '.tiff']);

const MAX_SIZE = 65535;

// ---- decoding ----------------------------------------------------------------------------

// sharp (libvips) is loaded on first use: it costs 50-100 ms, which commands and programs
// that never decode an image should not pay.
let sharpModule: Promise<typeof import('sharp')> | undefined;
async function loadSharp(): Promise<typeof import('sharp')> {
  sharpModule ??= import('sharp').then((m) => m.default);
  return sharpModule;
}

async function metadataFormat(image: Sharp): Promise<PixelFormat> {
  const meta = await image.metadata();
  return {
    grey: meta.space === 'b-w' || meta.space === 'grey16',
    depth16: meta.depth === 'ushort',
    alpha: !!meta.hasAlpha,
  };
}

/**
 * Decodes an image file (PNG, JPEG, BMP, TIFF; and whatever else sharp reads) to 8-bit RGB.
 * A missing or unreadable file rejects with ERR_IO, a corrupt or truncated one with
 * ERR_INVALID_FILE; both name the file.
 * @example const { data, width, height } = await decodeImage('tile.jpg')  // data: h * w * 3
 */
export async function decodeImage(path: string): Promise<DecodedImage> {
  expectString(path, 'path');
  const raw = await decodeImageRaw(path);
  if (raw.channels === 3) return { data: raw.data, width: raw.width, height: raw.height };
  const pixels = raw.width * raw.height;
  const rgb = new Uint8Array(pixels * 3);
  await callNative(() => native().toRgb(raw.data, pixels, raw.channels, rgb));
  return { data: rgb, width: raw.width, height: raw.height };
}

/**
 * Decodes to the fewest channels that carry Pillow's RGB result: grey (with or without
 * alpha) comes as 1 channel, so the resampler works on a third of the data and replicates
 * it; RGBA may come as 4 (alpha ignored downstream).
 * preprocessImages takes these as they are. Errors as decodeImage.
 * @example const img = await decodeImageRaw('tile.jpg')  // { data, width, height, channels: 1 }
 */
export async function decodeImageRaw(path: string): Promise<RawImage> {
  const maxPixels = maxImagePixels();
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new AnomalensError('ERR_IO', `cannot read image ${path}: ${(err as Error).message}`, { cause: err });
  }
  return decodeImageBuffer(bytes, path, maxPixels);
}

/**
 * The decoding behind decodeImageRaw, for bytes already in memory (files, uploads, queue jobs):
 * BMP by our own decoder, everything else by sharp with Pillow's grey / 16-bit choices. An image
 * declaring more than `maxPixels` is refused from its header with ERR_TOO_LARGE; bytes that do
 * not decode reject with ERR_INVALID_FILE. `name` (a path, or a label such as 'upload') names
 * the image in messages.
 */
export async function decodeImageBuffer(bytes: Buffer, name: string, maxPixels: number): Promise<RawImage> {
  if (isBmp(bytes)) return decodeBmp(bytes, name, maxPixels);
  try {
    // failOn 'error': truncated and corrupt data fail, libjpeg's benign warnings do not
    // (Pillow accepts those too).
    const sharp = await loadSharp();
    // The pixel limit is checked from the header, before libvips allocates anything.
    const image = sharp(bytes, { failOn: 'error', ignoreIcc: true, limitInputPixels: maxPixels });
    const format = sniffPixelFormat(bytes) ?? (await metadataFormat(image));
    let pipeline: Sharp;
    if (format.grey && format.depth16 && !format.alpha) {
      // Pillow's 16-bit grey ("I;16"/"I") becomes RGB by clipping to 255; libvips' cast clips too.
      pipeline = image.toColourspace('grey16').raw({ depth: 'uchar' });
    } else if (format.grey && !format.depth16) {
      pipeline = image.toColourspace('b-w').raw();
    } else {
      // Colour (and 16-bit grey with alpha): sRGB 8-bit, 16-bit samples keep their high byte.
      pipeline = image.raw();
    }
    const { data, info } = await pipeline.toBuffer({ resolveWithObject: true });
    if (info.channels < 1 || info.channels > 4)
      throw new Error(`unexpected ${info.channels}-channel output`);
    return { data, width: info.width, height: info.height, channels: info.channels as RawImage['channels'] };
  } catch (err) {
    if (/exceeds pixel limit/.test((err as Error).message)) throw tooManyPixels(name, maxPixels, await headerSize(bytes));
    throw new AnomalensError('ERR_INVALID_FILE', `cannot decode image ${name}: ${(err as Error).message}`, { cause: err });
  }
}

/** Sharp's own default: 16383 x 16383 pixels (0.8 GB as 8-bit RGB). */
export const DEFAULT_MAX_IMAGE_PIXELS = 0x3fff * 0x3fff;

/**
 * The most pixels (width x height) an image file may declare: ANOMALENS_MAX_IMAGE_PIXELS, else
 * DEFAULT_MAX_IMAGE_PIXELS. A decompression bomb (a few KB of PNG declaring 30000 x 30000)
 * is refused from its header with ERR_TOO_LARGE.
 */
export function maxImagePixels(): number {
  const env = process.env.ANOMALENS_MAX_IMAGE_PIXELS;
  if (env === undefined || env === '') return DEFAULT_MAX_IMAGE_PIXELS;
  const n = Number(env);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new RangeError(`ANOMALENS_MAX_IMAGE_PIXELS must be a positive integer, received '${env}'`);
  return n;
}

async function headerSize(bytes: Buffer): Promise<string> {
  try {
    const meta = await (await loadSharp())(bytes, { limitInputPixels: false }).metadata();
    return `${meta.width}x${meta.height}`;
  } catch {
    return 'more';
  }
}

function tooManyPixels(path: string, maxPixels: number, size: string): AnomalensError {
  return new AnomalensError(
    'ERR_TOO_LARGE',
    `image ${path} declares ${size} pixels, more than the limit of ${maxPixels} (ANOMALENS_MAX_IMAGE_PIXELS raises it)`,
  );
}

/**
 * The image files in a folder (extensions in IMAGE_EXTENSIONS, any case), sorted by path.
 * A missing folder rejects with ERR_IO; so does a folder without images, naming it.
 * @example const paths = await listImages('data/train/good')
 */
export async function listImages(dir: string, options: { recursive?: boolean } = {}): Promise<string[]> {
  expectString(dir, 'dir');
  expectObject(options, 'options');
  const recursive = options.recursive === undefined ? false : expectBoolean(options.recursive, 'options.recursive');
  const out: string[] = [];
  const walk = async (folder: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(folder, { withFileTypes: true });
    } catch (err) {
      throw new AnomalensError('ERR_IO', `cannot list images in folder ${folder}: ${(err as Error).message}`, { cause: err });
    }
    for (const e of entries) {
      const path = join(folder, e.name);
      let isDir = e.isDirectory(), isFile = e.isFile();
      if (e.isSymbolicLink()) {
        const s = await stat(path).catch(() => undefined);
        isDir = !!s?.isDirectory();
        isFile = !!s?.isFile();
      }
      if (isFile && IMAGE_EXTENSIONS.includes(extname(e.name).toLowerCase())) out.push(path);
      else if (isDir && recursive) await walk(path);
    }
  };
  await walk(dir);
  if (out.length === 0)
    throw new AnomalensError('ERR_IO', `no images (${IMAGE_EXTENSIONS.join(', ')}) in folder ${dir}${recursive ? ' or below' : ''}`);
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

// ---- geometry (torchvision's rules) ------------------------------------------------------

/**
 * The size torchvision's Resize gives: an int sets the shorter side and the longer becomes
 * int(size * long / short); a [h, w] pair is taken as is.
 * @example resizedSize(500, 333, 256)  // { width: 384, height: 256 }
 */
export function resizedSize(width: number, height: number, resize: number | [number, number]): { width: number; height: number } {
  if (Array.isArray(resize)) return { width: resize[1], height: resize[0] };
  if (width <= height) return { width: resize, height: Math.trunc((resize * height) / width) };
  return { width: Math.trunc((resize * width) / height), height: resize };
}

/**
 * The size of the preprocessed image (the crop when there is one, else the resized size).
 * @example outputSize(500, 333, IMAGENET_PREPROCESS)  // { width: 224, height: 224 }
 */
export function outputSize(width: number, height: number, pre: Preprocess): { width: number; height: number } {
  const p = normalisePreprocess(pre);
  return p.crop ? { width: p.crop[1], height: p.crop[0] } : resizedSize(width, height, p.resize);
}

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d !== 0.5) return Math.round(x);
  return f % 2 === 0 ? f : f + 1;
}

/**
 * torchvision's CenterCrop offset on one axis of `size` pixels: int(round((size - crop) / 2))
 * when cropping; when the crop is larger, the image is first padded by (crop - size) // 2
 * before it (the offset is then negative).
 */
export function centerCropOffset(size: number, crop: number): number {
  if (crop > size) return -Math.floor((crop - size) / 2);
  return roundHalfEven((size - crop) / 2);
}

interface NormalisedPreprocess {
  resize: number | [number, number];
  crop: [number, number] | undefined;
  mean: Triple;
  std: Triple;
}

function expectSize(value: unknown, name: string): number | [number, number] {
  if (typeof value === 'number') return expectInteger(value, name, { min: 1, max: MAX_SIZE });
  if (Array.isArray(value)) {
    if (value.length !== 2) throw new RangeError(`${name} must be an integer or an [height, width] pair, received ${describe(value)}`);
    return [expectInteger(value[0], `${name}[0]`, { min: 1, max: MAX_SIZE }), expectInteger(value[1], `${name}[1]`, { min: 1, max: MAX_SIZE })];
  }
  throw new TypeError(`${name} must be an integer or an [height, width] pair, received ${describe(value)}`);
}

function expectTriple(value: unknown, name: string, nonZero: boolean): Triple {
  if (!Array.isArray(value) || value.length !== 3) throw new TypeError(`${name} must be an array of 3 numbers, received ${describe(value)}`);
  const [a, b, c] = value.map((v, i) => {
    const x = expectNumber(v, `${name}[${i}]`);
    if (nonZero && x === 0) throw new RangeError(`${name}[${i}] must be non-zero, received 0`);
    return x;
  });
  return [a, b, c];
}

function normalisePreprocess(pre: unknown, name = 'pre'): NormalisedPreprocess {
  const p = expectObject(pre, name);
  for (const key of Object.keys(p))
    if (!['resize', 'crop', 'mean', 'std'].includes(key))
      throw new RangeError(`${name} has an unknown option '${key}'; expected resize, crop, mean, std`);
  const resize = expectSize(p.resize, `${name}.resize`);
  let crop: [number, number] | undefined;
  if (p.crop !== undefined) {
    const c = expectSize(p.crop, `${name}.crop`);
    crop = typeof c === 'number' ? [c, c] : c;
  }
  const mean = p.mean === undefined ? IMAGENET_MEAN : expectTriple(p.mean, `${name}.mean`, false);
  const std = p.std === undefined ? IMAGENET_STD : expectTriple(p.std, `${name}.std`, true);
  return { resize, crop, mean, std };
}

// ---- preprocessing -----------------------------------------------------------------------

/**
 * Preprocesses decoded images into one NCHW float32 batch (see the module comment). Images
 * may have different sizes; their preprocessed sizes must agree (use a crop or a [h, w]
 * resize), else a RangeError names two images and their sizes. `names` label the images in
 * that message (default "image i").
 * @example const b = await preprocessImages([await decodeImageRaw('a.png')], squareResize(256))
 */
export async function preprocessImages(images: RawImage[], pre: Preprocess, names?: string[]): Promise<ImageBatch> {
  if (!Array.isArray(images) || images.length === 0)
    throw new TypeError(`images must be a non-empty array of images, received ${describe(images)}`);
  const p = normalisePreprocess(pre);
  const label = (i: number) => names?.[i] ?? `image ${i}`;
  const geometry: number[] = [];
  let out: { width: number; height: number } | undefined;
  images.forEach((img, i) => {
    expectObject(img, `images[${i}]`);
    const width = expectInteger(img.width, `images[${i}].width`, { min: 1 });
    const height = expectInteger(img.height, `images[${i}].height`, { min: 1 });
    const channels = expectInteger(img.channels, `images[${i}].channels`, { min: 1, max: 4 });
    if (!(img.data instanceof Uint8Array)) throw new TypeError(`images[${i}].data must be a Uint8Array, received ${describe(img.data)}`);
    if (img.data.length !== width * height * channels)
      throw new RangeError(`images[${i}].data must have ${width}x${height}x${channels} = ${width * height * channels} bytes, received ${img.data.length}`);
    const r = resizedSize(width, height, p.resize);
    const o = p.crop ? { width: p.crop[1], height: p.crop[0] } : r;
    const top = p.crop ? centerCropOffset(r.height, p.crop[0]) : 0;
    const left = p.crop ? centerCropOffset(r.width, p.crop[1]) : 0;
    if (!out) out = o;
    else if (o.width !== out.width || o.height !== out.height)
      throw new RangeError(
        `images of one batch must preprocess to one size: ${label(0)} (${images[0].width}x${images[0].height}) gives ` +
          `${out.width}x${out.height} but ${label(i)} (${width}x${height}) gives ${o.width}x${o.height}; ` +
          `use a crop or a [height, width] resize`,
      );
    geometry.push(height, width, channels, r.height, r.width, top, left);
  });
  const { width: ow, height: oh } = out!;
  const n = images.length;
  const data = new Float32Array(n * 3 * oh * ow);
  await callNative(
    () => native().preprocessBatch(images.map((i) => i.data), geometry, oh, ow, p.mean, p.std, data),
  );
  return { data, shape: [n, 3, oh, ow], sizes: images.map((i) => ({ width: i.width, height: i.height })) };
}

/**
 * Decodes and preprocesses image files into one NCHW float32 batch, as torchvision's
 * `Compose([Resize, CenterCrop, ToTensor, Normalize])` on `Image.open(p).convert('RGB')`.
 * `sizes` are the original sizes. Errors name the file.
 * @example const { data, shape } = await loadBatch(paths, IMAGENET_PREPROCESS)  // shape [n, 3, 224, 224]
 */
export async function loadBatch(paths: string[], pre: Preprocess): Promise<ImageBatch> {
  if (!Array.isArray(paths) || paths.length === 0)
    throw new TypeError(`paths must be a non-empty array of file paths, received ${describe(paths)}`);
  paths.forEach((p, i) => expectString(p, `paths[${i}]`));
  normalisePreprocess(pre);  // fail on bad options before decoding anything
  const images = await Promise.all(paths.map((p) => decodeImageRaw(p)));
  return preprocessImages(images, pre, paths);
}

/**
 * Resizes 8-bit grey or RGB pixels with Pillow's bilinear filter, bit-exact with
 * `Image.resize((width, height), Image.BILINEAR)`.
 * @example const small = await resizeImage({ data, width: 97, height: 131, channels: 3 }, 64, 80)
 */
export async function resizeImage(image: RawImage, width: number, height: number): Promise<RawImage> {
  expectObject(image, 'image');
  const w = expectInteger(image.width, 'image.width', { min: 1 });
  const h = expectInteger(image.height, 'image.height', { min: 1 });
  const c = expectInteger(image.channels, 'image.channels', { min: 1, max: 4 });
  if (c !== 1 && c !== 3) throw new RangeError(`image.channels must be 1 or 3, received ${c}`);
  if (!(image.data instanceof Uint8Array) || image.data.length !== w * h * c)
    throw new TypeError(`image.data must be a Uint8Array of ${w * h * c} bytes, received ${describe(image.data)}`);
  expectInteger(width, 'width', { min: 1, max: MAX_SIZE });
  expectInteger(height, 'height', { min: 1, max: MAX_SIZE });
  const data = new Uint8Array(width * height * c);
  await callNative(() => native().resizeBilinear(image.data, h, w, c, height, width, data));
  return { data, width, height, channels: c as 1 | 3 };
}
