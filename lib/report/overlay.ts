/**
 * Overlays for `predict --out`: a heatmap of the anomaly map blended over the image with the
 * predicted-mask contour, written as PNG atomically (a temporary file in the same folder,
 * then a rename), so a reader never sees half a file. The score table is report/csv.ts.
 */
import { writeFileAtomic } from '../core/atomic.js';
import { AnomalensError } from '../core/errors.js';
import { describe, expectInteger, expectNumber, expectObject, expectString } from '../core/validate.js';
import { decodeImage, type DecodedImage } from '../image/images.js';
import type { ThresholdsLike } from '../detector/thresholds.js';

// matplotlib's 'jet' (_jet_data): [x, y0, y1] segments per channel.
const JET_SEGMENTS: readonly (readonly (readonly [number, number, number])[])[] = [
  [[0, 0, 0], [0.35, 0, 0], [0.66, 1, 1], [0.89, 1, 1], [1, 0.5, 0.5]],
  [[0, 0, 0], [0.125, 0, 0], [0.375, 1, 1], [0.64, 1, 1], [0.91, 0, 0], [1, 0, 0]],
  [[0, 0.5, 0.5], [0.11, 1, 1], [0.34, 1, 1], [0.65, 0, 0], [1, 0, 0]],
];

/**
 * matplotlib's LinearSegmentedColormap lookup table (N = 256, _create_lookup_table with its
 * float operations in the same order), as bytes the way bytes=True gives them (truncated).
 */
function buildJet(): Uint8Array {
  const n = 256;
  const lut = new Uint8Array(n * 3);
  for (let c = 0; c < 3; c++) {
    const seg = JET_SEGMENTS[c];
    const xs = seg.map((s) => s[0] * (n - 1));
    for (let i = 0; i < n; i++) {
      let v: number;
      if (i === 0) v = seg[0][2];
      else if (i === n - 1) v = seg[seg.length - 1][1];
      else {
        const xind = (n - 1) * (i * (1 / (n - 1)));  // (N - 1) * np.linspace(0, 1, N)
        let j = 1;
        while (xs[j] < xind) j++;  // np.searchsorted, side 'left'
        const d = (xind - xs[j - 1]) / (xs[j] - xs[j - 1]);
        v = d * (seg[j][1] - seg[j - 1][2]) + seg[j - 1][2];
      }
      lut[i * 3 + c] = Math.trunc(Math.min(1, Math.max(0, v)) * 255);
    }
  }
  return lut;
}

/** The 'jet' colour map, 256 RGB entries (bytes), equal to matplotlib's cm.jet(x, bytes=True). */
export const JET_LUT: Uint8Array = buildJet();

export interface OverlayOptions {
  /** Output PNG path (parent folders are created). */
  out: string;
  /** Predicted mask (h x w, non-zero = anomalous): its contour is drawn. */
  mask?: Uint8Array;
  /**
   * Map values shown as the colour map's ends. Default: the map's own min and max, which
   * makes every image look hot somewhere; pass a fixed range to compare images, such as
   * `detectorOverlayRange(detector.thresholds)` (the detector's pixel scale) or [0, 1] for
   * normalised maps.
   */
  range?: [number, number];
  /** Weight of the heatmap in the blend, in [0, 1]. Default 0.5. */
  alpha?: number;
  /** Contour colour, RGB bytes. Default white (red would vanish in jet's hot end). */
  contourColor?: [number, number, number];
  /** Contour width in pixels (inside the mask). Default 1, 2 when the image's shorter side is >= 512. */
  contourWidth?: number;
}

export type RenderOptions = Omit<OverlayOptions, 'out'>;

/**
 * The detector's pixel colour scale: the map range that its pixel normalisation
 * (`minMaxNormalize`: (x - threshold) / (max - min) + 0.5, clipped) sends onto [0, 1]. With it
 * as `range`, the pixel threshold sits at the middle of the colour map (jet's green), pixels
 * below it are blue to cyan and only pixels above it turn yellow to red, alike in every image,
 * so a normal image stays cold. undefined when the thresholds have no pixel threshold or no
 * pixel normalisation (then only per-image scaling is available).
 * @example await writeOverlay(p.path, p.anomalyMap, { out, mask: p.predMask, range: detectorOverlayRange(det.thresholds) })
 */
export function detectorOverlayRange(thresholds: ThresholdsLike | undefined): [number, number] | undefined {
  const t = thresholds?.pixel;
  const range = thresholds?.normalization?.pixel;
  if (t === undefined || !range) return undefined;
  const span = range.max - range.min || 1;
  return [t - span / 2, t + span / 2];
}

/**
 * The pixels of the mask's inner boundary band: mask pixels within `width` steps (8-connected)
 * of a non-mask pixel or of the image border.
 */
export function maskContour(mask: Uint8Array, width: number, height: number, thickness = 1): Uint8Array {
  let inner = new Uint8Array(width * height);
  for (let i = 0; i < inner.length; i++) inner[i] = mask[i] ? 1 : 0;
  const original = inner;
  for (let t = 0; t < thickness; t++) {
    const eroded = new Uint8Array(width * height);
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) {
        if (!inner[y * width + x]) continue;
        let keep = 1;
        for (let dy = -1; dy <= 1 && keep; dy++)
          for (let dx = -1; dx <= 1; dx++) {
            const yy = y + dy, xx = x + dx;
            if (yy < 0 || yy >= height || xx < 0 || xx >= width || !inner[yy * width + xx]) {
              keep = 0;
              break;
            }
          }
        eroded[y * width + x] = keep;
      }
    inner = eroded;
  }
  const contour = new Uint8Array(width * height);
  for (let i = 0; i < contour.length; i++) contour[i] = original[i] && !inner[i] ? 1 : 0;
  return contour;
}

function readRenderOptions(options: unknown, width: number, height: number, what: string) {
  const o = expectObject(options, 'options');
  const known = ['out', 'mask', 'range', 'alpha', 'contourColor', 'contourWidth'];
  for (const key of Object.keys(o))
    if (!known.includes(key)) throw new RangeError(`options has an unknown option '${key}'; expected ${known.join(', ')}`);
  const alpha = o.alpha === undefined ? 0.5 : expectNumber(o.alpha, 'options.alpha', { min: 0, max: 1 });
  let range: [number, number] | undefined;
  if (o.range !== undefined) {
    if (!Array.isArray(o.range) || o.range.length !== 2) throw new TypeError(`options.range must be a [min, max] pair, received ${describe(o.range)}`);
    range = [expectNumber(o.range[0], 'options.range[0]'), expectNumber(o.range[1], 'options.range[1]')];
    if (!(range[1] > range[0])) throw new RangeError(`options.range must have max > min, received [${range[0]}, ${range[1]}]`);
  }
  let mask: Uint8Array | undefined;
  if (o.mask !== undefined) {
    if (!(o.mask instanceof Uint8Array)) throw new TypeError(`options.mask must be a Uint8Array, received ${describe(o.mask)}`);
    if (o.mask.length !== width * height)
      throw new RangeError(`options.mask must have ${width}x${height} = ${width * height} elements (${what}), received ${o.mask.length}`);
    mask = o.mask;
  }
  let color: [number, number, number] = [255, 255, 255];
  if (o.contourColor !== undefined) {
    if (!Array.isArray(o.contourColor) || o.contourColor.length !== 3)
      throw new TypeError(`options.contourColor must be an [r, g, b] array, received ${describe(o.contourColor)}`);
    const c = o.contourColor as unknown[];
    color = [0, 1, 2].map((i) => expectInteger(c[i], `options.contourColor[${i}]`, { min: 0, max: 255 })) as [number, number, number];
  }
  const contourWidth =
    o.contourWidth === undefined
      ? Math.min(width, height) >= 512 ? 2 : 1
      : expectInteger(o.contourWidth, 'options.contourWidth', { min: 1, max: 64 });
  return { alpha, range, mask, color, contourWidth };
}

/**
 * Renders the overlay in memory: each pixel is round(alpha * jet(v) + (1 - alpha) * image),
 * v = (map - min) / (max - min) clipped to [0, 1] and looked up as matplotlib does
 * (index floor(v * 256), 255 at most); then the mask's contour is painted over.
 * Returns RGB bytes, h x w x 3.
 * @example const rgb = renderOverlay(await decodeImage('a.png'), map, { mask, range: [0, 1] })
 */
export function renderOverlay(image: DecodedImage, anomalyMap: Float32Array, options: RenderOptions = {}): Uint8Array {
  expectObject(image, 'image');
  const width = expectInteger(image.width, 'image.width', { min: 1 });
  const height = expectInteger(image.height, 'image.height', { min: 1 });
  const n = width * height;
  if (!(image.data instanceof Uint8Array) || image.data.length !== n * 3)
    throw new TypeError(`image.data must be a Uint8Array of ${n * 3} bytes (RGB), received ${describe(image.data)}`);
  if (!(anomalyMap instanceof Float32Array)) throw new TypeError(`anomalyMap must be a Float32Array, received ${describe(anomalyMap)}`);
  if (anomalyMap.length !== n)
    throw new RangeError(`anomalyMap must have ${width}x${height} = ${n} elements (the image's size), received ${anomalyMap.length}`);
  const o = readRenderOptions(options, width, height, "the image's size");
  let lo: number, hi: number;
  if (o.range) [lo, hi] = o.range;
  else {
    lo = Infinity;
    hi = -Infinity;
    for (let i = 0; i < n; i++) {
      const v = anomalyMap[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (!Number.isFinite(lo) || !Number.isFinite(hi))
      throw new AnomalensError('ERR_INVALID_ARGUMENT', 'anomalyMap holds non-finite values; pass options.range');
  }
  const scale = hi > lo ? 256 / (hi - lo) : 0;
  const a = o.alpha, b = 1 - o.alpha;
  const out = new Uint8Array(n * 3);
  const src = image.data;
  for (let i = 0; i < n; i++) {
    const v = anomalyMap[i];
    // NaN goes to the low end
    let idx = v > lo ? Math.floor((v - lo) * scale) : 0;
    if (idx > 255) idx = 255;
    for (let c = 0; c < 3; c++) out[i * 3 + c] = Math.round(a * JET_LUT[idx * 3 + c] + b * src[i * 3 + c]);
  }
  if (o.mask) {
    const contour = maskContour(o.mask, width, height, o.contourWidth);
    for (let i = 0; i < n; i++)
      if (contour[i]) {
        out[i * 3] = o.color[0];
        out[i * 3 + 1] = o.color[1];
        out[i * 3 + 2] = o.color[2];
      }
  }
  return out;
}

/**
 * Writes a PNG overlay of `anomalyMap` (Float32Array, h x w at the image's own resolution)
 * over the image file (see renderOverlay for the colours and options).
 * @example await writeOverlay('part.png', p.anomalyMap, { out: 'out/part.png', mask: p.predMask, range: [0, 1] })
 */
export async function writeOverlay(imagePath: string, anomalyMap: Float32Array, options: OverlayOptions): Promise<void> {
  expectString(imagePath, 'imagePath');
  const o = expectObject(options, 'options');
  const out = expectString(o.out, 'options.out');
  if (!(anomalyMap instanceof Float32Array)) throw new TypeError(`anomalyMap must be a Float32Array, received ${describe(anomalyMap)}`);
  const image = await decodeImage(imagePath);
  const n = image.width * image.height;
  if (anomalyMap.length !== n)
    throw new RangeError(`anomalyMap must have ${image.width}x${image.height} = ${n} elements (the size of ${imagePath}), received ${anomalyMap.length}`);
  const { out: _, ...render } = options;
  readRenderOptions(render, image.width, image.height, `the size of ${imagePath}`);
  const rgb = renderOverlay(image, anomalyMap, render);
  const sharp = (await import('sharp')).default;
  const png = await sharp(rgb, { raw: { width: image.width, height: image.height, channels: 3 } }).png().toBuffer();
  await writeFileAtomic(out, png);
}
