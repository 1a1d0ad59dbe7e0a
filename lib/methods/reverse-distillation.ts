/**
 * Reverse Distillation (Deng & Li, "Anomaly Detection via Reverse Distillation from One-Class
 * Embedding", CVPR 2022), as the original code (hq-deng/RD4AD) does it by default:
 * - compute: the frozen teacher's taps layer1-3 (stage1-3 for the v2 archs) feed the trainable
 *   one-class bottleneck and student decoder (lib/train/rd.ts, the original's names);
 * - training glue: the teacher runs in eval mode and sees no augmentation, so each training
 *   image's taps are computed once and kept (exact, and the teacher's forward leaves the
 *   epoch loop); epochs of shuffled batches of 16, BN in training mode, loss_function, Adam(lr
 *   0.005, betas (0.5, 0.999)); progress per epoch, cancellation, atomic checkpoints under the
 *   original names (`bn.*`, `decoder.*`) with Adam's state by torch's names and the epoch, so
 *   that `resume` continues the same run; a student loadable from a PyTorch checkpoint
 *   (scripts/rd_pth_to_safetensors.py);
 * - anomaly map (cal_anomaly_map + evaluation): per scale 1 - cosine similarity over channels,
 *   bilinear with align_corners = true to the input size, summed ('mul': multiplied), Gaussian
 *   sigma 4 (scipy's); image score = the map's max.
 */
import type { Backbone, Tensor4 } from '../nn/backbone.js';
import { AnomalensError } from '../core/errors.js';
import { cosineDistanceMap, gaussianBlur, resizeBilinear } from '../maps/maps.js';
import { readSafetensors } from '../io/safetensors.js';
import { applyCheckpoint, checkpointTensors, saveCheckpoint } from '../train/checkpoint.js';
import { RD_TEACHERS, TrainRd, type RdTeacher } from '../train/rd.js';
import { describe, expectInteger, expectNumber, expectObject, expectOneOf, expectString } from '../core/validate.js';
import type { Features, Method, MethodScores } from './method.js';
import { hash32 } from './seeded.js';

export interface RdEpochEvent {
  epoch: number;
  epochs: number;
  /** Mean of the step losses of the epoch (the original's printed figure). */
  loss: number;
  imagesPerSecond: number;
  /** Seconds left at this epoch's pace. */
  etaSeconds: number;
}

export interface ReverseDistillationOptions {
  /** Epochs (default 200, the original's). */
  epochs?: number;
  /** Training batch (default 16, the original's); a final smaller batch is kept. */
  batchSize?: number;
  /** Adam learning rate (default 0.005) and betas (default [0.5, 0.999]). */
  lr?: number;
  betas?: [number, number];
  /** Seed of the initialisation and the shuffling (default 0). */
  seed?: number;
  /** 'map' (default: the original code's loss over each sample's flattened map) or 'pixel' (the paper's per-pixel cosine). */
  loss?: 'map' | 'pixel';
  /** How the scales combine (default 'add', the mode the original's evaluation passes). */
  amapMode?: 'add' | 'mul';
  /** Gaussian sigma of the map (default 4). */
  sigma?: number;
  /**
   * A safetensors file of `bn.*` / `decoder.*` tensors to start from (e.g. converted from the
   * original's .pth, or one of our checkpoints): the student only, Adam starts afresh, training
   * runs `epochs` epochs from epoch 1.
   */
  student?: string;
  /**
   * One of our checkpoints to continue: the student, Adam's state and the epoch it was written
   * after; training runs the epochs after it up to `epochs` (with the same seed, batch size and
   * loss as the first run, the continuation is exactly that run's). A checkpoint at `epochs`
   * already trains nothing; one beyond `epochs`, or without Adam's state (a converted .pth:
   * use `student`), is refused. Not together with `student`.
   */
  resume?: string;
  /**
   * Written atomically after every `checkpointEvery` epochs (default 1) and after the last: the
   * student under the original names, Adam's state (`<param>.exp_avg`, `.exp_avg_sq`, `.step`)
   * and the epoch in the metadata. May be the `resume` file.
   */
  checkpoint?: string;
  checkpointEvery?: number;
  onEpoch?: (e: RdEpochEvent) => void;
  /** Stops training after the step in flight; fit() then rejects with the signal's reason, the last checkpoint intact. */
  signal?: AbortSignal;
}

const ARCH_TEACHER: Record<string, RdTeacher> = { resnet18: 'resnet18', resnet34: 'resnet34', resnet50: 'resnet50', wide_resnet50_2: 'wide_resnet50_2', resnet50_v2: 'resnet50_v2' };

/** The teacher taps of an arch: layer1-3, or stage1-3 for v2. */
export function rdTaps(arch: string): [string, string, string] {
  return arch.endsWith('_v2') ? ['stage1', 'stage2', 'stage3'] : ['layer1', 'layer2', 'layer3'];
}

/**
 * cal_anomaly_map + the evaluation's smoothing for a batch: per scale 1 - cos over channels,
 * resized with align_corners = true to `size`, summed (or multiplied), Gaussian sigma
 * (skipped when sigma is 0). teacher[i] / student[i]: [n, c, h, w]. Returns [n, H, W] maps and
 * the per-image max.
 */
export async function rdAnomalyMap(
  teacher: readonly Tensor4[],
  student: readonly Tensor4[],
  size: [number, number],
  options: { mode?: 'add' | 'mul'; sigma?: number } = {},
): Promise<{ maps: Float32Array; scores: Float32Array }> {
  const mode = options.mode ?? 'add';
  const sigma = options.sigma ?? 4;
  const n = teacher[0].shape[0];
  const [H, W] = size;
  const acc = new Float32Array(n * H * W).fill(mode === 'mul' ? 1 : 0);
  for (let i = 0; i < teacher.length; i++) {
    const [, , h, w] = teacher[i].shape;
    const d = await cosineDistanceMap(teacher[i].data, student[i].data, teacher[i].shape);
    const up = await resizeBilinear(d, [n, h, w], [H, W], { alignCorners: true });
    if (mode === 'mul') for (let j = 0; j < acc.length; j++) acc[j] *= up[j];
    else for (let j = 0; j < acc.length; j++) acc[j] += up[j];
  }
  const maps = sigma > 0 ? await gaussianBlur(acc, [n, H, W], sigma, { out: acc }) : acc;
  const scores = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let j = i * H * W; j < (i + 1) * H * W; j++) if (maps[j] > m) m = maps[j];
    scores[i] = m;
  }
  return { maps, scores };
}

/**
 * Loads `bn.*` / `decoder.*` tensors by name (lib/train/checkpoint.ts): every student tensor
 * must be present with its shape; `num_batches_tracked` entries are ignored (present or not),
 * and so is the optimiser state of one of our checkpoints; other names are refused.
 */
export function loadStudent(rd: TrainRd, tensors: Record<string, { shape: number[]; data?: Float32Array | null }>, source: string): void {
  applyCheckpoint(rd, tensors, source, { unexpected: 'refuse', optimizer: false });
}

/**
 * Restores a run from one of our checkpoints: student and Adam's state; returns the epoch
 * it was written after. Refuses another teacher's file, one without Adam's state, one without
 * an epoch, and one beyond `epochs`.
 */
async function resumeFrom(rd: TrainRd, path: string, epochs: number): Promise<number> {
  const name = `options.methodOptions.resume ('${path}')`;
  const file = await readSafetensors(path);
  const m = file.metadata;
  if (m.teacher !== undefined && m.teacher !== rd.teacher)
    throw new AnomalensError('ERR_WEIGHTS_MISMATCH', `${name} holds a ${m.teacher} Reverse Distillation student; this detector's teacher is ${rd.teacher}`);
  // Parameters without a gradient have no state (bn.conv4 / bn.bn4, never used), as in torch.
  const applied = applyCheckpoint(rd, file.tensors, name, { unexpected: 'refuse' });
  if (applied.optimizer !== 'adam')
    throw new AnomalensError(
      'ERR_WEIGHTS_MISMATCH',
      `${name} has no Adam state (<param>.exp_avg, .exp_avg_sq, .step), so it cannot continue a run; pass it as options.methodOptions.student to start from its student`,
    );
  const epoch = Number(m.epoch);
  if (m.epoch === undefined || !Number.isInteger(epoch) || epoch < 0)
    throw new AnomalensError('ERR_WEIGHTS_MISMATCH', `${name} has no epoch in its metadata (received ${m.epoch === undefined ? 'none' : `'${m.epoch}'`})`);
  if (epoch > epochs)
    throw new RangeError(`${name} was written after epoch ${epoch}, beyond options.methodOptions.epochs ${epochs}; raise epochs to continue, or pass it as options.methodOptions.student to score with it`);
  return epoch;
}

/** A seeded permutation of [0, n) (Fisher-Yates on hash32). */
function permutation(n: number, seed: number): Int32Array {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = hash32(i, seed) % (i + 1);
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

export function createReverseDistillation(backbone: Backbone, options: Record<string, unknown>): Method {
  const o = expectObject(options, 'options.methodOptions');
  const teacher = ARCH_TEACHER[backbone.arch];
  if (!teacher)
    throw new RangeError(`reverse-distillation needs a ${RD_TEACHERS.join(', ')} teacher, received arch '${backbone.arch}'`);
  const epochs = expectInteger(o.epochs ?? 200, 'options.methodOptions.epochs', { min: 0, max: 1e6 });
  const batchSize = expectInteger(o.batchSize ?? 16, 'options.methodOptions.batchSize', { min: 1, max: 4096 });
  const lr = expectNumber(o.lr ?? 0.005, 'options.methodOptions.lr', { min: 0 });
  let betas: [number, number] = [0.5, 0.999];
  if (o.betas !== undefined) {
    if (!Array.isArray(o.betas) || o.betas.length !== 2) throw new TypeError(`options.methodOptions.betas must be a [beta1, beta2] pair, received ${describe(o.betas)}`);
    betas = [expectNumber(o.betas[0], 'options.methodOptions.betas[0]', { min: 0, max: 0.999999 }), expectNumber(o.betas[1], 'options.methodOptions.betas[1]', { min: 0, max: 0.999999 })];
  }
  const seed = expectInteger(o.seed ?? 0, 'options.methodOptions.seed', { min: 0, max: 0xffffffff });
  const lossMode = expectOneOf(o.loss ?? 'map', 'options.methodOptions.loss', ['map', 'pixel'] as const);
  const amapMode = expectOneOf(o.amapMode ?? 'add', 'options.methodOptions.amapMode', ['add', 'mul'] as const);
  const sigma = expectNumber(o.sigma ?? 4, 'options.methodOptions.sigma', { min: 0 });
  const student = o.student === undefined ? undefined : expectString(o.student, 'options.methodOptions.student');
  const resume = o.resume === undefined ? undefined : expectString(o.resume, 'options.methodOptions.resume');
  if (student !== undefined && resume !== undefined)
    throw new TypeError('options.methodOptions.student and options.methodOptions.resume exclude each other: resume already restores the student');
  const checkpoint = o.checkpoint === undefined ? undefined : expectString(o.checkpoint, 'options.methodOptions.checkpoint');
  const checkpointEvery = expectInteger(o.checkpointEvery ?? 1, 'options.methodOptions.checkpointEvery', { min: 1 });
  if (o.onEpoch !== undefined && typeof o.onEpoch !== 'function') throw new TypeError(`options.methodOptions.onEpoch must be a function, received ${describe(o.onEpoch)}`);
  const onEpoch = o.onEpoch as ((e: RdEpochEvent) => void) | undefined;
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new TypeError(`options.methodOptions.signal must be an AbortSignal, received ${describe(o.signal)}`);
  const signal = o.signal as AbortSignal | undefined;
  for (const t of rdTaps(backbone.arch))
    if (!backbone.availableTaps.includes(t)) throw new RangeError(`reverse-distillation needs tap '${t}', which '${backbone.weights}' does not have`);

  const taps = rdTaps(backbone.arch);
  const rd = new TrainRd(teacher);
  rd.initialize(seed);
  const cache: Features[] = [];
  // The epoch training starts after (the resumed checkpoint's); set by prepare().
  let startEpoch = 0;
  let prepared: Promise<void> | undefined;
  // Reads `student` or `resume` once, before the first batch is cached.
  const prepare = () =>
    (prepared ??= (async () => {
      if (student !== undefined) loadStudent(rd, (await readSafetensors(student)).tensors, `options.methodOptions.student ('${student}')`);
      if (resume !== undefined) startEpoch = await resumeFrom(rd, resume, epochs);
    })());
  const runMetadata = (epoch: number) => ({
    epoch: String(epoch), epochs: String(epochs), seed: String(seed), batchSize: String(batchSize),
    lr: String(lr), betas: betas.join(','), loss: lossMode,
  });

  return {
    name: 'reverse-distillation',
    taps,
    notes: [],
    async fitBatch(f: Features) {
      await prepare();
      if (epochs > startEpoch) cache.push(Object.fromEntries(taps.map((t) => [t, f[t]])));
    },
    async finishFit(onProgress) {
      await prepare();
      if (epochs <= startEpoch) return;
      // One index over the cached batches: image k is sample j of batch b.
      const where: [number, number][] = [];
      cache.forEach((f, b) => {
        for (let j = 0; j < f[taps[0]].shape[0]; j++) where.push([b, j]);
      });
      const total = where.length;
      const per = taps.map((t) => cache[0][t].shape.slice(1).reduce((a, b) => a * b, 1));
      const shapes = taps.map((t) => cache[0][t].shape.slice(1) as [number, number, number]);
      const steps = Math.ceil(total / batchSize);
      const start = performance.now();
      for (let epoch = startEpoch + 1; epoch <= epochs; epoch++) {
        const order = permutation(total, (seed + Math.imul(epoch, 0x9e3779b9)) >>> 0);
        const t0 = performance.now();
        let sum = 0;
        for (let s = 0; s < steps; s++) {
          signal?.throwIfAborted();
          const idx = order.subarray(s * batchSize, Math.min(total, (s + 1) * batchSize));
          const m = idx.length;
          const batch: Tensor4[] = taps.map((t, i) => {
            const data = new Float32Array(m * per[i]);
            idx.forEach((k, r) => {
              const [b, j] = where[k];
              data.set(cache[b][t].data.subarray(j * per[i], (j + 1) * per[i]), r * per[i]);
            });
            return { data, shape: [m, ...shapes[i]] };
          });
          const { loss } = await rd.trainStep(batch, { lr, betas, eps: 1e-8, weightDecay: 0 }, lossMode);
          sum += loss;
          onProgress?.(((epoch - 1) * steps + s + 1) / (epochs * steps));
        }
        const seconds = (performance.now() - t0) / 1000;
        if (checkpoint && (epoch % checkpointEvery === 0 || epoch === epochs)) await saveCheckpoint(rd, checkpoint, runMetadata(epoch), { optimizer: 'adam' });
        const elapsed = (performance.now() - start) / 1000;
        onEpoch?.({ epoch, epochs, loss: sum / steps, imagesPerSecond: total / seconds, etaSeconds: (elapsed / (epoch - startEpoch)) * (epochs - epoch) });
      }
      cache.length = 0;
    },
    async score(f: Features, inputSize: [number, number]): Promise<MethodScores> {
      const t = taps.map((k) => f[k]);
      const s = await rd.forward(t);
      return rdAnomalyMap(t, s, inputSize, { mode: amapMode, sigma });
    },
    config: () => ({ teacher, taps, epochs, batchSize, lr, betas, seed, loss: lossMode, amapMode, sigma }),
    state: () => checkpointTensors(rd),
    restore(state) {
      loadStudent(rd, state, 'saved reverse-distillation detector');
    },
  };
}
