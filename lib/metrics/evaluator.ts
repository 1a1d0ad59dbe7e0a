/**
 * Evaluator: accumulates a test set batch by batch and computes image-level and pixel-level
 * metrics together (anomalib's update / compute pattern).
 */
import { expectBoolean, expectObject } from '../core/validate.js';
import {
  Flag,
  mapBlocks,
  readFprLimit,
  readLabelOptions,
  runMetrics,
  scoreBlocks,
  type Block,
  type F1Max,
  type Labels,
  type Maps,
  type Masks,
  type Scores,
} from './input.js';

export interface EvaluatorOptions {
  /** AUPRO integration limit, in (0, 1]. Default 0.3. */
  fprLimit?: number;
  /** Binarise labels and masks at value > maskThreshold; default: they must be 0/1/255. */
  maskThreshold?: number;
  /**
   * Copy each batch's arrays (default true), so that callers may reuse their buffers. With
   * false the evaluator keeps references: do not modify the arrays until compute() settles.
   */
  copy?: boolean;
}

/** One batch: image scores with labels, maps with masks (with shapes), or both. */
export interface EvaluatorBatch {
  scores?: Scores;
  labels?: Labels;
  maps?: Maps;
  masks?: Masks;
}

export interface ImageMetrics {
  auroc: number;
  averagePrecision: number;
  f1Max: F1Max;
  /** images evaluated, and how many of them are anomalous */
  count: number;
  anomalous: number;
}

export interface PixelMetrics {
  auroc: number;
  /** MVTec AD AUPRO up to fprLimit (see `aupro`) */
  aupro: number;
  averagePrecision: number;
  f1Max: F1Max;
  /** pixels evaluated, defect pixels among them, and defect regions (8-connected) */
  count: number;
  defectPixels: number;
  regions: number;
}

/** Metrics of the data seen so far; a level is null when no batch carried it. */
export interface Evaluation {
  image: ImageMetrics | null;
  pixel: PixelMetrics | null;
}

/**
 * Accumulates batches and computes every metric in one native pass per level.
 * @example
 * const ev = new Evaluator({ fprLimit: 0.3 });
 * for (const b of batches) ev.update({ scores: b.scores, labels: b.labels, maps: b.maps, masks: b.masks });
 * const { image, pixel } = await ev.compute(); // image.auroc, pixel.aupro, ...
 */
export class Evaluator {
  readonly fprLimit: number;
  readonly maskThreshold: number | undefined;
  private readonly copy: boolean;
  private imageBlocks: Block[] = [];
  private pixelBlocks: Block[] = [];
  private updates = 0;

  constructor(options: EvaluatorOptions = {}) {
    const o = readLabelOptions(options);
    this.fprLimit = readFprLimit(o.fprLimit, 'options.fprLimit');
    this.maskThreshold = o.maskThreshold;
    this.copy = o.copy === undefined ? true : expectBoolean(o.copy, 'options.copy');
  }

  /** Images accumulated so far. */
  get imageCount(): number {
    return this.imageBlocks.reduce((a, b) => a + b.w, 0);
  }

  /** Pixels accumulated so far. */
  get pixelCount(): number {
    return this.pixelBlocks.reduce((a, b) => a + b.n * b.h * b.w, 0);
  }

  /**
   * Adds a batch. Validates types, lengths and shapes now (TypeError / RangeError); values
   * (NaN, non-binary masks) are checked by compute(), whose messages name the batch.
   * Maps need shapes (`{ data, shape }` for the map or the mask) because AUPRO does.
   */
  update(batch: EvaluatorBatch): this {
    const b = expectObject(batch, 'batch') as EvaluatorBatch;
    const hasImage = b.scores !== undefined || b.labels !== undefined;
    const hasPixel = b.maps !== undefined || b.masks !== undefined;
    if (!hasImage && !hasPixel) throw new TypeError('batch must carry scores and labels, maps and masks, or both');
    const prefix = `batch ${this.updates} `;
    const image = hasImage ? scoreBlocks(b.scores, b.labels, { scores: `${prefix}scores`, labels: `${prefix}labels` }) : [];
    const pixel = hasPixel ? mapBlocks(b.maps, b.masks, true, prefix) : [];
    const own = (x: Block): Block => (this.copy ? { ...x, scores: x.scores.slice(), labels: x.labels.slice() } : x);
    this.imageBlocks.push(...image.map(own));
    this.pixelBlocks.push(...pixel.map(own));
    this.updates++;
    return this;
  }

  /** Forgets every batch. */
  reset(): void {
    this.imageBlocks = [];
    this.pixelBlocks = [];
    this.updates = 0;
  }

  /**
   * Image level: AUROC, average precision, F1-max; pixel level: AUROC, AUPRO, average
   * precision, F1-max, each level in one native pass. Rejects (ERR_INVALID_ARGUMENT) when a
   * level's metrics are undefined, e.g. pixel data whose masks hold no defect.
   */
  async compute(): Promise<Evaluation> {
    const options = { maskThreshold: this.maskThreshold, fprLimit: this.fprLimit };
    let image: ImageMetrics | null = null;
    let pixel: PixelMetrics | null = null;
    if (this.imageBlocks.length) {
      const r = await runMetrics(this.imageBlocks, Flag.Auroc | Flag.AveragePrecision | Flag.F1Max, options);
      image = {
        auroc: r.auroc as number,
        averagePrecision: r.averagePrecision as number,
        f1Max: { f1: r.f1 as number, threshold: r.f1Threshold as number },
        count: r.positives + r.negatives,
        anomalous: r.positives,
      };
    }
    if (this.pixelBlocks.length) {
      const r = await runMetrics(
        this.pixelBlocks,
        Flag.Auroc | Flag.Aupro | Flag.AveragePrecision | Flag.F1Max,
        options,
      );
      pixel = {
        auroc: r.auroc as number,
        aupro: r.aupro as number,
        averagePrecision: r.averagePrecision as number,
        f1Max: { f1: r.f1 as number, threshold: r.f1Threshold as number },
        count: r.positives + r.negatives,
        defectPixels: r.positives,
        regions: r.regions,
      };
    }
    return { image, pixel };
  }
}
