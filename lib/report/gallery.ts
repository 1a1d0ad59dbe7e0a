/**
 * Gallery thumbnails of the evaluation report: per test image an overlay (anomaly map on the
 * detector's pixel scale, predicted-mask contour) and a ground-truth view (the image with the
 * true defect outlined), small WebP files written next to the page.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SampleMask } from '../data/datasets.js';
import { resizeMaskNearest } from '../data/datasets.js';
import { decodeImage, resizeImage } from '../image/images.js';
import { resizeBilinear } from '../maps/maps.js';
import { renderOverlay } from './overlay.js';

/** One scored test image, as the report collects it from evaluate(). */
export interface ReportRecord {
  path: string;
  defectType: string;
  label: 0 | 1;
  score: number;
  /** Anomaly map at the image's resolution (absent for methods without maps). */
  map?: Float32Array;
  width: number;
  height: number;
  /** Ground-truth mask at the image's resolution, when the data set has masks. */
  mask?: SampleMask;
}

/** One gallery entry of the page (what the page's script reads). */
export interface GalleryEntry {
  /** File name shown on the card. */
  name: string;
  /** Path relative to the data set root (or the file path), for the tooltip. */
  path: string;
  type: string;
  label: 0 | 1;
  score: number;
  /** 1 when score >= the image threshold. */
  pred: 0 | 1;
  /** 'TP' | 'TN' | 'FP' | 'FN' at the image threshold. */
  outcome: 'TP' | 'TN' | 'FP' | 'FN';
  /** Thumbnail paths relative to the page. */
  overlay?: string;
  truth: string;
  w: number;
  h: number;
}

export interface ThumbnailOptions {
  /** Longest side of a thumbnail in pixels. Default 224. */
  size: number;
  /** Colour range of the overlays (the detector's pixel scale), or undefined for per-image. */
  range?: [number, number];
  /** Pixel threshold (predicted-mask contour), when known. */
  pixelThreshold?: number;
}

const TRUTH_COLOR: [number, number, number] = [255, 32, 32];

/** Thumbnail size for an image of w x h: longest side `size` at most, never enlarged. */
export function thumbnailSize(w: number, h: number, size: number): { tw: number; th: number } {
  const s = Math.min(1, size / Math.max(w, h));
  return { tw: Math.max(1, Math.round(w * s)), th: Math.max(1, Math.round(h * s)) };
}

/**
 * Writes `<dir>/<stem>-o.webp` (overlay; when the record has a map) and `<dir>/<stem>-t.webp`
 * (ground truth), rendered at thumbnail resolution: the image is resized with Pillow's
 * bilinear filter, the map bilinearly, the masks by nearest neighbour.
 */
export async function writeThumbnails(r: ReportRecord, dir: string, stem: string, o: ThumbnailOptions): Promise<{ overlay?: string; truth: string; w: number; h: number }> {
  const sharp = (await import('sharp')).default;
  const image = await decodeImage(r.path);
  const { tw, th } = thumbnailSize(image.width, image.height, o.size);
  const small = tw === image.width && th === image.height ? image : await resizeImage({ ...image, channels: 3 }, tw, th);
  const img = { data: small.data, width: tw, height: th };
  const encode = (rgb: Uint8Array, file: string) =>
    sharp(rgb, { raw: { width: tw, height: th, channels: 3 } }).webp({ quality: 82 }).toBuffer().then((b) => writeFile(join(dir, file), b));
  const contourWidth = Math.max(tw, th) >= 384 ? 2 : 1;
  const out: { overlay?: string; truth: string; w: number; h: number } = { truth: `${stem}-t.webp`, w: tw, h: th };
  const jobs: Promise<void>[] = [];
  if (r.map && r.map.length === image.width * image.height) {
    const map = tw === image.width && th === image.height ? r.map : await resizeBilinear(r.map, [1, 1, image.height, image.width], [th, tw]);
    let mask: Uint8Array | undefined;
    if (o.pixelThreshold !== undefined) {
      mask = new Uint8Array(map.length);
      for (let i = 0; i < map.length; i++) mask[i] = map[i] >= o.pixelThreshold ? 1 : 0;
    }
    const rgb = renderOverlay(img, map, { range: o.range, mask, contourWidth });
    out.overlay = `${stem}-o.webp`;
    jobs.push(encode(rgb, out.overlay));
  }
  const zero = new Float32Array(tw * th);
  let truth: Uint8Array | undefined;
  if (r.mask && r.mask.shape[0] === image.height && r.mask.shape[1] === image.width)
    truth = resizeMaskNearest(r.mask.data, image.height, image.width, th, tw);
  jobs.push(encode(renderOverlay(img, zero, { alpha: 0, mask: truth, contourColor: TRUTH_COLOR, contourWidth: contourWidth + 1 }), out.truth));
  await Promise.all(jobs);
  return out;
}

/** Runs `fn` over `items` with at most `limit` in flight, results in order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
