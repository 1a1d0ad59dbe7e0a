/**
 * Scores decoded images with a fitted Detector, one forward pass per call, and returns the
 * records `Detector.predict([file])` would give for the same files: maps back at each
 * image's own size (at the network size with a crop), thresholds applied at that size.
 */
import type { Detector, Prediction } from '../detector/detector.js';
import { preprocessImages, type RawImage } from '../image/images.js';
import { resizeBilinear } from '../maps/maps.js';
import { applyThresholds } from '../detector/thresholds.js';

/**
 * One forward pass over `images` (any sizes: the detector's square resize brings them to one).
 * @example const [p] = await scoreImages(det, [await decodeImageBytes(bytes, 'upload')])
 */
export async function scoreImages(det: Detector, images: RawImage[], names?: string[]): Promise<Prediction[]> {
  const batch = await preprocessImages(images, det.preprocess, names);
  const [, , H, W] = batch.shape;
  const preds = await det.predict({ data: batch.data, shape: batch.shape });
  const out: Prediction[] = [];
  for (let i = 0; i < preds.length; i++) {
    const p = preds[i];
    const size = det.preprocess.crop ? { width: W, height: H } : batch.sizes[i];
    let map = p.anomalyMap;
    if (map && (size.width !== W || size.height !== H)) map = await resizeBilinear(map, [1, 1, H, W], [size.height, size.width]);
    const r: Prediction = { predScore: p.predScore, width: size.width, height: size.height };
    if (map) r.anomalyMap = map;
    if (det.thresholds) {
      const t = applyThresholds(det.thresholds, p.predScore, map);
      if (t.predLabel !== undefined) r.predLabel = t.predLabel;
      if (t.predMask !== undefined) r.predMask = t.predMask;
      if (t.normalizedScore !== undefined) r.normalizedScore = t.normalizedScore;
    }
    out.push(r);
  }
  return out;
}
