/**
 * The wire form of one prediction, the same from the HTTP service and from a queue worker:
 * plain JSON, maps as base64 (little-endian float32, row-major h x w) or as a PNG overlay.
 */
import type { Prediction } from '../detector/detector.js';
import { AnomalensError } from '../core/errors.js';
import { resizeImage, type RawImage } from '../image/images.js';
import { renderOverlay } from '../report/overlay.js';
import { toRgb } from './decode.js';

/** What to return besides the scores: nothing, the raw map, or a PNG overlay of it. */
export type MapFormat = 'none' | 'float32' | 'png';
export const MAP_FORMATS: readonly MapFormat[] = Object.freeze(['none', 'float32', 'png'] as const);

export interface PredictResult {
  predScore: number;
  /** 1 anomalous, 0 normal, null when the model has no threshold. */
  predLabel: 0 | 1 | null;
  /** Min-max normalised score (threshold at 0.5), null without a normalisation. */
  normalizedScore: number | null;
  width: number;
  height: number;
  /** With map 'float32': the anomaly map, height x width float32 little-endian, base64. */
  anomalyMap?: { dtype: 'float32'; width: number; height: number; data: string };
  /** With map 'png': the map as a jet overlay on the image (with the mask contour), PNG, base64. */
  overlay?: { format: 'png'; width: number; height: number; data: string };
}

/** Reads a 'float32' anomalyMap of a PredictResult back into a Float32Array. */
export function decodeMap(result: PredictResult): Float32Array | undefined {
  if (!result.anomalyMap) return undefined;
  const b = Buffer.from(result.anomalyMap.data, 'base64');
  const out = new Float32Array(b.length / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}

/**
 * Builds the wire record of `p`, rendering the overlay on `image` when asked for. A map asked
 * of a method without maps (DN2) is an ERR_UNSUPPORTED rather than a silently absent field.
 */
export async function encodeResult(p: Prediction, image: RawImage, map: MapFormat): Promise<PredictResult> {
  const r: PredictResult = {
    predScore: p.predScore,
    predLabel: p.predLabel ?? null,
    normalizedScore: p.normalizedScore ?? null,
    width: p.width,
    height: p.height,
  };
  if (map === 'none') return r;
  if (!p.anomalyMap) {
    throw new AnomalensError('ERR_UNSUPPORTED', `map '${map}' was asked for but this detector's method makes no anomaly maps`);
  }
  if (map === 'float32') {
    const bytes = Buffer.from(p.anomalyMap.buffer, p.anomalyMap.byteOffset, p.anomalyMap.byteLength);
    r.anomalyMap = { dtype: 'float32', width: p.width, height: p.height, data: bytes.toString('base64') };
    return r;
  }
  // The overlay is drawn at the map's size: the image's own; with a crop, the network's
  // (drawn then on the whole image resized to it, not on the crop).
  let rgb = toRgb(image);
  if (image.width !== p.width || image.height !== p.height) {
    rgb = (await resizeImage({ data: rgb, width: image.width, height: image.height, channels: 3 }, p.width, p.height)).data;
  }
  const px = renderOverlay({ data: rgb, width: p.width, height: p.height }, p.anomalyMap, { mask: p.predMask });
  const sharp = (await import('sharp')).default;
  const png = await sharp(px, { raw: { width: p.width, height: p.height, channels: 3 } }).png().toBuffer();
  r.overlay = { format: 'png', width: p.width, height: p.height, data: png.toString('base64') };
  return r;
}
