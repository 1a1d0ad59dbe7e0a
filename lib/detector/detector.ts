/**
 * Detectors: one interface (fit / predict / evaluate / save / load) over DN2, SPADE, PatchCore,
 * PaDiM, PANDA and Reverse Distillation. The Detector owns batching, the backbone, preprocessing and post-processing (maps
 * back to each image's own resolution); each method (lib/methods/) owns its compute.
 *
 * @example
 * const det = await Detector.create({ method: 'patchcore', arch: 'resnet50_v2', weights: 'w.safetensors' });
 * await det.fit(trainPaths);
 * const [p] = await det.predict(['part.png']);   // { predScore, predLabel, anomalyMap, width, height, predMask }
 * await det.save('patchcore.anomalens');
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { ARCHS, Backbone, type Arch, type Tensor4 } from '../nn/backbone.js';
import { AnomalensError } from '../core/errors.js';
import { loadBatch, type Preprocess } from '../image/images.js';
import { resizeBilinear } from '../maps/maps.js';
import { createDn2 } from '../methods/dn2.js';
import type { Method, MethodFactory } from '../methods/method.js';
import { createPadim } from '../methods/padim.js';
import { createPanda } from '../methods/panda.js';
import { createPatchcore } from '../methods/patchcore.js';
import { createReverseDistillation } from '../methods/reverse-distillation.js';
import { createSpade } from '../methods/spade.js';
import { readSafetensors, SafetensorsWriter } from '../io/safetensors.js';
import { applyThresholds, fitThresholds, parseThresholds, type Thresholds, type ThresholdsLike } from './thresholds.js';
import { batches as datasetBatches, type Dataset, type Sample, type SampleMask } from '../data/datasets.js';
import { Evaluator, type Evaluation } from '../metrics/evaluator.js';
import { describe, expectInteger, expectNumber, expectObject, expectOneOf, expectString } from '../core/validate.js';
import { weightsFor } from '../io/weights.js';

export const METHODS = ['dn2', 'spade', 'patchcore', 'padim', 'panda', 'reverse-distillation'] as const;
export type MethodName = (typeof METHODS)[number];
const FACTORIES: Record<MethodName, MethodFactory> = {
  dn2: createDn2, spade: createSpade, patchcore: createPatchcore, padim: createPadim, panda: createPanda, 'reverse-distillation': createReverseDistillation,
};
/** Methods that score whole images only (no anomaly map). */
export const IMAGE_LEVEL_METHODS: readonly MethodName[] = ['dn2', 'panda'];
const FORMAT = 'anomalens-detector';
/**
 * Version 2: a method's state may hold fine-tuned network parameters (PANDA's `c<t>.net.<name>`,
 * Reverse Distillation's student). Version-1 files (no trained parameters) read unchanged.
 */
const VERSION = '2';
const READS = ['1', '2'];

export interface ProgressEvent {
  phase: 'fit' | 'build' | 'predict';
  done: number;
  total: number;
}

/** The backbone when none is given: the one of PatchCore's, PaDiM's and SPADE's original code. */
export const DEFAULT_ARCH: Arch = 'wide_resnet50_2';

export interface DetectorOptions {
  method: MethodName;
  /** Backbone architecture (default DEFAULT_ARCH, wide_resnet50_2). */
  arch?: Arch;
  /**
   * Weights: a safetensors path or an `hf:` spec; default the arch's ImageNet weights from the
   * Hugging Face Hub (DEFAULT_WEIGHTS), downloaded once into the cache.
   */
  weights?: string;
  /** Square input size: images are resized to size x size without crop (default 224). */
  size?: number;
  /** Centre crop after the resize, for paper parity (maps then cover the crop only). */
  crop?: number;
  /** Images per forward pass (default 8). */
  batchSize?: number;
  /**
   * Method options: DN2 { k, reduce }, SPADE { topK, sigma }, PatchCore { coreset, dim, reweight,
   * seed, sigma }, PaDiM { d, seed, reg, sigma }, PANDA (PandaMethodOptions: epochs, ses, ewc, ...),
   * Reverse Distillation (ReverseDistillationOptions: epochs, loss, amapMode, ...).
   */
  methodOptions?: Record<string, unknown>;
  /** Thresholds on the image score and on map values (raw units); set by evaluate() or by hand. */
  thresholds?: ThresholdsLike;
  onProgress?: (event: ProgressEvent) => void;
}


/** One prediction, anomalib's record shape. */
export interface Prediction {
  /** The image file, when the input was files. */
  path?: string;
  predScore: number;
  /** 1 when predScore >= thresholds.image; undefined without a threshold. */
  predLabel?: 0 | 1;
  /** Anomaly map at the image's own resolution (height x width); undefined for DN2 and PANDA. */
  anomalyMap?: Float32Array;
  width: number;
  height: number;
  /** 1 where anomalyMap >= thresholds.pixel; undefined without a threshold or map. */
  predMask?: Uint8Array;
  /** Min-max normalised score (threshold at 0.5), when the thresholds carry a normalisation. */
  normalizedScore?: number;
}

/** What evaluate() measures. */
export interface EvaluationReport {
  method: MethodName;
  arch: string;
  images: number;
  anomalous: number;
  imageAuroc: number;
  /** null when the data set has no masks or the method makes no maps. */
  pixelAuroc: number | null;
  aupro: number | null;
  /** Image F1 at the F1-adaptive threshold (the test set serves as validation, as anomalib's default). */
  f1: number;
  pixelF1: number | null;
  thresholds: Thresholds;
  fitSeconds: number;
  predictImagesPerSecond: number;
  /** The full metric set. */
  evaluation: Evaluation;
}

/** Options of evaluate(). */
export interface EvaluateOptions {
  /** AUPRO integration limit, in (0, 1]. Default 0.3. */
  fprLimit?: number;
  /**
   * Called with every test sample as it is scored (before thresholds are fitted, so without
   * predLabel), with its ground-truth mask when pixel metrics are computed. The prediction's
   * map is the one the metrics use: keep it, do not modify it.
   */
  onPrediction?: (sample: Sample, prediction: Prediction, mask?: SampleMask) => void;
}

/** Files, or an already-normalised batch (maps then come at the batch's resolution). */
export type ImageInput = string[] | Tensor4;

export class Detector {
  readonly method: MethodName;
  readonly backbone: Backbone;
  readonly preprocess: Preprocess;
  readonly batchSize: number;
  thresholds: ThresholdsLike | undefined;
  onProgress?: (event: ProgressEvent) => void;
  readonly #impl: Method;
  readonly #options: Record<string, unknown>;
  #weightsSha256: string;
  #fitted = false;
  #fitSeconds = 0;

  private constructor(method: MethodName, backbone: Backbone, impl: Method, o: DetectorOptions, sha: string) {
    this.method = method;
    this.backbone = backbone;
    this.#impl = impl;
    this.preprocess = o.crop ? { resize: [o.size ?? 224, o.size ?? 224], crop: o.crop } : { resize: [o.size ?? 224, o.size ?? 224] };
    this.batchSize = o.batchSize ?? 8;
    this.thresholds = o.thresholds === undefined ? undefined : parseThresholds(o.thresholds, 'options.thresholds');
    this.onProgress = o.onProgress;
    this.#options = o.methodOptions ?? {};
    this.#weightsSha256 = sha;
  }

  /** Validates options, loads the backbone and sets the method up (not fitted yet). */
  static async create(options: DetectorOptions): Promise<Detector> {
    const o = expectObject(options, 'options') as unknown as DetectorOptions;
    const method = expectOneOf(o.method, 'options.method', METHODS);
    const arch = expectOneOf(o.arch ?? DEFAULT_ARCH, 'options.arch', ARCHS);
    if (o.size !== undefined) expectInteger(o.size, 'options.size', { min: 32, max: 4096 });
    if (o.crop !== undefined) expectInteger(o.crop, 'options.crop', { min: 32, max: o.size ?? 224 });
    if (o.batchSize !== undefined) expectInteger(o.batchSize, 'options.batchSize', { min: 1, max: 1024 });
    if (o.methodOptions !== undefined) expectObject(o.methodOptions, 'options.methodOptions');
    const weights = await weightsFor(arch, o.weights);
    const [backbone, sha] = await Promise.all([Backbone.load({ arch, weights }), sha256File(weights)]);
    const impl = FACTORIES[method](backbone, o.methodOptions ?? {});
    return new Detector(method, backbone, impl, o, sha);
  }

  /** Messages about choices the method made (e.g. a substituted tap). */
  get notes(): readonly string[] {
    return this.#impl.notes;
  }

  get fitted(): boolean {
    return this.#fitted;
  }

  /** The method's resolved configuration (options with their defaults filled in). */
  get config(): Record<string, unknown> {
    return { ...this.#impl.config() };
  }

  /** Seconds the last fit() took. */
  get fitSeconds(): number {
    return this.#fitSeconds;
  }

  /** Fits on images of normal parts (files or a normalised batch). */
  async fit(images: ImageInput): Promise<this> {
    const start = performance.now();
    const total = inputCount(images, 'images');
    let done = 0;
    for await (const b of this.#batches(images)) {
      await this.#impl.fitBatch(await this.backbone.extract(b.batch, this.#impl.taps));
      done += b.batch.shape[0];
      this.onProgress?.({ phase: 'fit', done, total });
    }
    await this.#impl.finishFit((fraction) => this.onProgress?.({ phase: 'build', done: Math.round(fraction * 1000), total: 1000 }));
    this.#fitted = true;
    this.#fitSeconds = (performance.now() - start) / 1000;
    return this;
  }

  /** Scores images; maps come back at each image's own resolution. */
  async predict(images: ImageInput): Promise<Prediction[]> {
    if (!this.#fitted) throw new AnomalensError('ERR_INVALID_ARGUMENT', `the ${this.method} detector is not fitted: call fit() or load() first`);
    const total = inputCount(images, 'images');
    const out: Prediction[] = [];
    for await (const b of this.#batches(images)) {
      out.push(...(await this.#scoreBatch(b.batch, b.sizes, b.paths)));
      this.onProgress?.({ phase: 'predict', done: out.length, total });
    }
    return out;
  }

  #record(score: number, map: Float32Array | undefined, width: number, height: number, path?: string): Prediction {
    const p: Prediction = { predScore: score, width, height };
    if (path !== undefined) p.path = path;
    if (map) p.anomalyMap = map;
    if (this.thresholds) {
      const t = applyThresholds(this.thresholds, score, map);
      if (t.predLabel !== undefined) p.predLabel = t.predLabel;
      if (t.predMask !== undefined) p.predMask = t.predMask;
      if (t.normalizedScore !== undefined) p.normalizedScore = t.normalizedScore;
    }
    return p;
  }

  /** Scores one preprocessed batch; maps resized to `sizes` (the originals) when given. */
  async #scoreBatch(batch: Tensor4, sizes?: { width: number; height: number }[], paths?: string[]): Promise<Prediction[]> {
    const [n, , H, W] = batch.shape;
    const r = await this.#impl.score(await this.backbone.extract(batch, this.#impl.taps), [H, W]);
    const out: Prediction[] = [];
    for (let i = 0; i < n; i++) {
      const size = sizes?.[i] ?? { width: W, height: H };
      let map: Float32Array | undefined;
      if (r.maps) {
        map = r.maps.slice(i * H * W, (i + 1) * H * W);
        if (size.width !== W || size.height !== H) map = await resizeBilinear(map, [1, 1, H, W], [size.height, size.width]);
      }
      out.push(this.#record(r.scores[i], map, size.width, size.height, paths?.[i]));
    }
    return out;
  }

  /**
   * Fits on `dataset.train` unless already fitted, scores `dataset.test`, computes image AUROC,
   * pixel AUROC and AUPRO (at each image's resolution, against masks binarised at > 127),
   * and sets F1-adaptive thresholds on the test set (anomalib's default validation).
   */
  async evaluate(dataset: Dataset, options: EvaluateOptions = {}): Promise<EvaluationReport> {
    expectObject(dataset, 'dataset');
    if (!this.#fitted) await this.fit(dataset.train.map((s) => s.path));
    const withMasks = dataset.hasMasks && !IMAGE_LEVEL_METHODS.includes(this.method);
    const ev = new Evaluator({ fprLimit: options.fprLimit ?? 0.3, copy: false });
    const scores: number[] = [];
    const labels: number[] = [];
    const maps: Float32Array[] = [];
    const masks: { data: Uint8Array; shape: [number, number] }[] = [];
    const keep = this.thresholds;
    this.thresholds = undefined;
    const start = performance.now();
    let done = 0;
    try {
      for await (const b of datasetBatches(dataset.test, { batchSize: this.batchSize, preprocess: this.preprocess, withMasks })) {
        const preds = await this.#scoreBatch(b.images, this.preprocess.crop ? undefined : b.images.sizes, b.samples.map((s) => s.path));
        preds.forEach((p, i) => {
          options.onPrediction?.(b.samples[i], p, withMasks ? b.masks![i] : undefined);
          scores.push(p.predScore);
          labels.push(b.samples[i].label);
          if (withMasks) {
            maps.push(p.anomalyMap!);
            masks.push(b.masks![i]);
          }
        });
        done += preds.length;
        this.onProgress?.({ phase: 'predict', done, total: dataset.test.length });
      }
    } catch (err) {
      this.thresholds = keep;
      throw err;
    }
    const seconds = (performance.now() - start) / 1000;
    const mapList = maps.map((m, i) => ({ data: m, shape: masks[i].shape }));
    ev.update(withMasks ? { scores: Float32Array.from(scores), labels: Uint8Array.from(labels), maps: mapList, masks } : { scores: Float32Array.from(scores), labels: Uint8Array.from(labels) });
    const evaluation = await ev.compute();
    this.thresholds = await fitThresholds(
      withMasks
        ? { scores: Float32Array.from(scores), labels: Uint8Array.from(labels), maps: mapList, masks }
        : { scores: Float32Array.from(scores), labels: Uint8Array.from(labels) },
    );
    const image = evaluation.image!;
    return {
      method: this.method,
      arch: this.backbone.arch,
      images: image.count,
      anomalous: image.anomalous,
      imageAuroc: image.auroc,
      pixelAuroc: evaluation.pixel?.auroc ?? null,
      aupro: evaluation.pixel?.aupro ?? null,
      f1: image.f1Max.f1,
      pixelF1: evaluation.pixel?.f1Max.f1 ?? null,
      thresholds: this.thresholds as Thresholds,
      fitSeconds: this.#fitSeconds,
      predictImagesPerSecond: done / seconds,
      evaluation,
    };
  }

  async *#batches(images: ImageInput): AsyncGenerator<{ batch: Tensor4; sizes?: { width: number; height: number }[]; paths?: string[] }> {
    if (Array.isArray(images)) {
      const paths = images as string[];
      paths.forEach((p, i) => expectString(p, `images[${i}]`));
      let next = loadBatch(paths.slice(0, this.batchSize), this.preprocess);
      for (let i = 0; i < paths.length; i += this.batchSize) {
        const b = await next;
        if (i + this.batchSize < paths.length) {
          next = loadBatch(paths.slice(i + this.batchSize, i + 2 * this.batchSize), this.preprocess);
          next.catch(() => {});  // awaited on the next turn
        }
        // With a crop the map covers the crop, so it stays at the network resolution.
        yield { batch: b, sizes: this.preprocess.crop ? undefined : b.sizes, paths: paths.slice(i, i + this.batchSize) };
      }
      return;
    }
    const t = images as Tensor4;
    const [n, c, h, w] = t.shape;
    const per = c * h * w;
    for (let i = 0; i < n; i += this.batchSize) {
      const m = Math.min(this.batchSize, n - i);
      yield { batch: { data: t.data.subarray(i * per, (i + m) * per), shape: [m, c, h, w] } };
    }
  }

  /**
   * Writes the fitted detector (method, configuration, backbone arch, weights checksum,
   * thresholds and the learned state) to one file, atomically.
   */
  async save(path: string): Promise<void> {
    expectString(path, 'path');
    if (!this.#fitted) throw new AnomalensError('ERR_INVALID_ARGUMENT', `the ${this.method} detector is not fitted: nothing to save`);
    const state = this.#impl.state();
    const meta: Record<string, string> = {
      format: FORMAT,
      version: VERSION,
      method: this.method,
      arch: this.backbone.arch,
      weights: this.backbone.weights,
      weightsSha256: this.#weightsSha256,
      preprocess: JSON.stringify(this.preprocess),
      // Callbacks and signals are not configuration.
      methodOptions: JSON.stringify(this.#options, (k, v) => (k !== '' && (typeof v === 'function' || v instanceof AbortSignal) ? undefined : v)),
      methodConfig: JSON.stringify(this.#impl.config()),
      thresholds: JSON.stringify(this.thresholds ?? null),
      batchSize: String(this.batchSize),
      fitSeconds: String(this.#fitSeconds),
    };
    const w = await SafetensorsWriter.create(path, Object.entries(state).map(([name, t]) => ({ name: `state.${name}`, shape: t.shape })), meta);
    try {
      for (const [name, t] of Object.entries(state)) await w.write(`state.${name}`, 0, t.data);
    } catch (err) {
      await w.abort();
      throw err;
    }
    await w.commit();
  }

  /**
   * Reads a detector written by save(). The backbone weights are read from the recorded path
   * unless `weights` is given; weights whose SHA-256 differs from the recorded one are refused
   * with ERR_WEIGHTS_MISMATCH.
   */
  static async load(path: string, options: { weights?: string; onProgress?: (e: ProgressEvent) => void } = {}): Promise<Detector> {
    expectString(path, 'path');
    if (options.weights !== undefined) expectString(options.weights, 'options.weights');
    try {
      return await Detector.#read(path, options);
    } catch (err) {
      // Whatever a damaged file trips over (a missing key, a value the options reject) is a
      // fault of the file: named, and ERR_INVALID_FILE unless it already has a file's code.
      const e = err as Error;
      const typed = err instanceof AnomalensError || err instanceof TypeError || err instanceof RangeError;
      if (typed && e.message.includes(path)) throw err;
      const code = err instanceof AnomalensError && err.code !== 'ERR_INVALID_ARGUMENT' ? err.code : 'ERR_INVALID_FILE';
      throw new AnomalensError(code, `'${path}': ${e.message}`, { cause: err });
    }
  }

  static async #read(path: string, options: { weights?: string; onProgress?: (e: ProgressEvent) => void }): Promise<Detector> {
    const file = await readSafetensors(path);
    const m = file.metadata;
    for (const key of ['format', 'version', 'method', 'arch', 'weights', 'weightsSha256', 'preprocess', 'methodOptions', 'thresholds'])
      if (typeof m[key] !== 'string') throw new AnomalensError('ERR_INVALID_FILE', `'${path}' has no '${key}' in its metadata: not a complete anomalens detector file`);
    if (m.format !== FORMAT) throw new AnomalensError('ERR_INVALID_FILE', `'${path}' is not an anomalens detector file (format '${m.format ?? 'none'}')`);
    if (!READS.includes(m.version)) throw new AnomalensError('ERR_INVALID_FILE', `'${path}' is detector format version ${m.version}; this anomalens reads versions ${READS.join(' and ')}`);
    const weights = options.weights ?? m.weights;
    const sha = await sha256File(weights);
    if (sha !== m.weightsSha256)
      throw new AnomalensError(
        'ERR_WEIGHTS_MISMATCH',
        `'${path}' was fitted with weights of SHA-256 ${m.weightsSha256.slice(0, 16)}... but '${weights}' has ${sha.slice(0, 16)}...: load it with the weights it was fitted with`,
      );
    let preprocess: Preprocess;
    let methodOptions: Record<string, unknown>;
    let thresholds: ThresholdsLike | undefined;
    try {
      preprocess = JSON.parse(m.preprocess);
      methodOptions = JSON.parse(m.methodOptions);
      thresholds = JSON.parse(m.thresholds) ?? undefined;
    } catch (err) {
      throw new AnomalensError('ERR_INVALID_FILE', `'${path}' has malformed detector metadata: ${(err as Error).message}`);
    }
    const resize = preprocess.resize as [number, number];
    const det = await Detector.create({
      method: m.method as MethodName, arch: m.arch as Arch, weights, size: resize[0],
      crop: typeof preprocess.crop === 'number' ? preprocess.crop : undefined,
      batchSize: Number(m.batchSize) || 8, methodOptions, thresholds, onProgress: options.onProgress,
    });
    const state: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [name, t] of Object.entries(file.tensors)) {
      if (!name.startsWith('state.')) continue;
      if (!t.data) throw new AnomalensError('ERR_INVALID_FILE', `'${path}': tensor '${name}' is not float`);
      state[name.slice(6)] = { shape: t.shape, data: t.data };
    }
    try {
      det.#impl.restore(state);
    } catch (err) {
      throw new AnomalensError('ERR_INVALID_FILE', `'${path}': ${(err as Error).message}`);
    }
    det.#fitted = true;
    det.#fitSeconds = Number(m.fitSeconds) || 0;
    return det;
  }

  /** Releases the backbone. */
  dispose(): void {
    this.backbone.dispose();
  }
}

function inputCount(images: ImageInput, name: string): number {
  if (Array.isArray(images)) {
    if (images.length === 0) throw new RangeError(`${name} must not be empty`);
    return images.length;
  }
  const t = expectObject(images, name) as unknown as Tensor4;
  if (!(t.data instanceof Float32Array) || !Array.isArray(t.shape) || t.shape.length !== 4)
    throw new TypeError(`${name} must be an array of image paths or a { data: Float32Array, shape: [n, 3, h, w] } batch, received ${describe(images)}`);
  expectNumber(t.shape[0], `${name}.shape[0]`, { min: 1 });
  return t.shape[0];
}

/** SHA-256 of a file, hex. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  } catch (err) {
    throw new AnomalensError('ERR_IO', `cannot read weights '${path}': ${(err as Error).message}`);
  }
  return hash.digest('hex');
}
