/**
 * PANDA (Reiss, Cohen, Bergman, Hoshen: "PANDA: Adapting Pretrained Features for Anomaly
 * Detection and Segmentation", CVPR 2021), the original code's behaviour by default:
 * - the Detector's backbone computes the frozen prefix (stem, layer1, layer2; stage1-2 for v2
 *   archs) once per image: with the prefix frozen and BN in eval mode its output is constant,
 *   so it leaves the epoch loop (the original recomputes it every step). lib/train/panda.ts shows
 *   the cache bit-identical to recomputing the prefix in the training network; the Detector's
 *   inference backbone (BN folded into the convolutions) differs from that by float rounding
 *   only (7.6e-7 normwise on the real ResNet-50 v2 stage2, the method's tests hold the whole
 *   method to the recomputing twin within 1e-4);
 * - the rest of the network up to its deepest tap (layer3 + layer4; stage3 + stage4, or stage3
 *   alone when the weights stop there) is fine-tuned by lib/train/panda.ts: compactness loss to
 *   the fixed centre of the initial features, clip_grad_norm_(1e-3), SGD(lr 1e-2, momentum 0.9,
 *   weight decay 5e-5), 15 epochs of shuffled batches of 32;
 * - score: DN2 over the fine-tuned pooled features (k = 2, sum of squared distances).
 *
 * Variants (options of the one method):
 * - `epochs`: the fixed epoch count, which the original calls early stopping;
 * - `ses: true`, sample-wise early stopping (the paper's, not in the original code): the network
 *   is kept at every `sesEvery` epochs and at the last one. For checkpoint t, s_t is the mean over
 *   the training images of ||psi_t(x) - c||^2 (c the fixed centre). A test image is scored by the
 *   checkpoint t* maximising ||psi_t(x) - c||^2 / s_t: with t*'s network and t*'s training bank
 *   (DN2 kNN, `sesScore: 'knn'`, default), or by that maximal ratio itself (`sesScore: 'ratio'`);
 * - `ewc`: a diagonal Fisher (safetensors keyed by parameter name, e.g. from `anomalens fisher`
 *   or PANDA's published fisher_diagonal.pth converted) adds lambda/2 * sum F (theta - theta*)^2,
 *   lambda = `ewcLambda` (1e4), theta* the pretrained weights. The sum is over every trainable
 *   parameter: the frozen ones never leave theta*, so their terms are zero, as in the original's
 *   sum over every non-classifier parameter.
 * The joint-optimisation baseline of the paper is not offered.
 */
import { describe, expectBoolean, expectInteger, expectNumber, expectObject, expectOneOf, expectString } from '../core/validate.js';
import type { NamedTensor } from '../io/safetensors.js';
import type { Backbone, Tensor4 } from '../nn/backbone.js';
import { loadCheckpoint, saveCheckpoint } from '../train/checkpoint.js';
import { readFisher } from '../train/fisher.js';
import { pandaCacheTap, pandaFineTune, pandaFrozenPrefixes, pooledFeatures } from '../train/panda.js';
import { TRAINABLE_ARCHS, TrainResnet, type ResnetTap, type TrainableArch } from '../train/resnet.js';
import { dn2Scores } from './dn2.js';
import { drainConcat, stateTensor, type Features, type Method, type MethodScores } from './method.js';

/** One epoch of a training method, for progress (loss, speed, time left). */
export interface PandaEpochEvent {
  epoch: number;
  epochs: number;
  /** Mean loss per image over the epoch (the original's run_epoch figure). */
  loss: number;
  imagesPerSecond: number;
  /** Seconds left at the pace so far. */
  etaSeconds: number;
}

export interface PandaMethodOptions {
  /** Epochs (default 15): the original's "early stopping". */
  epochs?: number;
  /** Training batch (default 32); a final batch of one image works. */
  batchSize?: number;
  /** Shuffle seed (default 0). */
  seed?: number;
  /** SGD (defaults: the original's lr 1e-2, momentum 0.9, weight decay 5e-5). */
  lr?: number;
  momentum?: number;
  weightDecay?: number;
  /** clip_grad_norm_ before the step (default 1e-3; 0: none). */
  clip?: number;
  /** DN2 scoring: neighbours (default 2) and how their squared distances combine (default 'sum'). */
  k?: number;
  reduce?: 'sum' | 'mean';
  /** Sample-wise early stopping (default false), its checkpoint interval (default 5 epochs) and score. */
  ses?: boolean;
  sesEvery?: number;
  sesScore?: 'knn' | 'ratio';
  /** EWC: a diagonal Fisher, safetensors keyed by parameter name; lambda (default 1e4). */
  ewc?: string;
  ewcLambda?: number;
  /** Written atomically after every `checkpointEvery` epochs (default 1): the network and the SGD momentum by name. */
  checkpoint?: string;
  checkpointEvery?: number;
  onEpoch?: (e: PandaEpochEvent) => void;
  /** Stops training after the step in flight; fit() rejects with ERR_ABORTED, the last checkpoint intact. */
  signal?: AbortSignal;
}

/** A kept network: its fine-tuned trainable parameters, its training bank and s_t. */
interface Snapshot {
  epoch: number;
  params: Map<string, Float32Array>;
  bank: Float32Array;
  meanDistance: number;
}

/** The deepest trainable tap the backbone's weights provide (layer4 / stage4, else layer3 / stage3). */
function lastTrainableTap(backbone: Backbone): ResnetTap {
  const v2 = backbone.arch.endsWith('_v2');
  const wanted = (v2 ? ['stage4', 'stage3'] : ['layer4', 'layer3']) as ResnetTap[];
  const tap = wanted.find((t) => backbone.availableTaps.includes(t));
  if (!tap)
    throw new RangeError(`panda fine-tunes ${wanted[1]} and deeper, but '${backbone.weights}' stops at '${backbone.deepestTap}'`);
  return tap;
}

/** Squared distances of rows [n, d] to c [d]. */
function centreDistances(f: Float32Array, c: Float32Array): Float64Array {
  const d = c.length;
  const out = new Float64Array(f.length / d);
  for (let i = 0; i < out.length; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) {
      const v = f[i * d + j] - c[j];
      s += v * v;
    }
    out[i] = s;
  }
  return out;
}

/**
 * Sample-wise early stopping's choice per image: ratios[t][i] = ||psi_t(x_i) - c||^2 / s_t.
 * Returns t* per image (the first maximum) and the maximal ratio.
 */
export function sesSelect(ratios: readonly Float64Array[]): { best: Int32Array; ratio: Float64Array } {
  const n = ratios[0].length;
  const best = new Int32Array(n);
  const ratio = new Float64Array(n).fill(-Infinity);
  ratios.forEach((r, t) => {
    for (let i = 0; i < n; i++) if (r[i] > ratio[i]) (ratio[i] = r[i]), (best[i] = t);
  });
  return { best, ratio };
}

export function createPanda(backbone: Backbone, options: Record<string, unknown>): Method {
  const o = expectObject(options, 'options.methodOptions');
  const name = (k: string) => `options.methodOptions.${k}`;
  if (!(TRAINABLE_ARCHS as readonly string[]).includes(backbone.arch))
    throw new RangeError(`panda trains ResNets (${TRAINABLE_ARCHS.join(', ')}), received arch '${backbone.arch}'`);
  const epochs = expectInteger(o.epochs ?? 15, name('epochs'), { min: 0, max: 1e6 });
  const batchSize = expectInteger(o.batchSize ?? 32, name('batchSize'), { min: 1, max: 4096 });
  const seed = expectInteger(o.seed ?? 0, name('seed'), { min: 0, max: 0xffffffff });
  const lr = expectNumber(o.lr ?? 1e-2, name('lr'), { min: 0 });
  const momentum = expectNumber(o.momentum ?? 0.9, name('momentum'), { min: 0, max: 1 });
  const weightDecay = expectNumber(o.weightDecay ?? 5e-5, name('weightDecay'), { min: 0 });
  const clip = expectNumber(o.clip ?? 1e-3, name('clip'), { min: 0 });
  const k = expectInteger(o.k ?? 2, name('k'), { min: 1, max: 1024 });
  const reduce = expectOneOf(o.reduce ?? 'sum', name('reduce'), ['sum', 'mean'] as const);
  const ses = expectBoolean(o.ses ?? false, name('ses'));
  const sesEvery = expectInteger(o.sesEvery ?? 5, name('sesEvery'), { min: 1 });
  const sesScore = expectOneOf(o.sesScore ?? 'knn', name('sesScore'), ['knn', 'ratio'] as const);
  const ewc = o.ewc === undefined ? undefined : expectString(o.ewc, name('ewc'));
  const ewcLambda = expectNumber(o.ewcLambda ?? 1e4, name('ewcLambda'), { min: 0 });
  const checkpoint = o.checkpoint === undefined ? undefined : expectString(o.checkpoint, name('checkpoint'));
  const checkpointEvery = expectInteger(o.checkpointEvery ?? 1, name('checkpointEvery'), { min: 1 });
  if (o.onEpoch !== undefined && typeof o.onEpoch !== 'function') throw new TypeError(`${name('onEpoch')} must be a function, received ${describe(o.onEpoch)}`);
  const onEpoch = o.onEpoch as ((e: PandaEpochEvent) => void) | undefined;
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new TypeError(`${name('signal')} must be an AbortSignal, received ${describe(o.signal)}`);
  const signal = o.signal as AbortSignal | undefined;

  const lastTap = lastTrainableTap(backbone);
  const net = new TrainResnet(backbone.arch as TrainableArch, { lastTap });
  const cacheTap = pandaCacheTap(net);
  for (const p of pandaFrozenPrefixes(net)) net.params.freeze(p);
  const trainable = net.params.names().filter((p) => !net.params.info(p).frozen);
  const dim = net.tapShape(lastTap, 1, 1, 1)[1];
  const notes = lastTap === 'stage3' || lastTap === 'layer3'
    ? [`'${backbone.weights}' stops at '${lastTap}': PANDA fine-tunes ${lastTap} alone and pools its output`]
    : [];

  let loaded: Promise<void> | undefined;
  /** The pretrained weights into the trainable network (once, on first use). */
  const loadWeights = () => (loaded ??= loadCheckpoint(net, backbone.weights).then(() => undefined));

  const parts: Tensor4[] = [];
  let centre: Float32Array | undefined;
  let snapshots: Snapshot[] = [];
  let current = -1; // the snapshot whose parameters the network holds
  let losses: number[] = [];
  let queue: Promise<unknown> = Promise.resolve();

  const keepParams = () => new Map(trainable.map((p) => [p, net.params.value(p)]));
  function use(t: number) {
    if (current === t) return;
    for (const [p, v] of snapshots[t].params) net.params.setValue(p, v);
    current = t;
  }

  async function anchorEwc() {
    const { fisher } = await readFisher(ewc!, net);
    for (const p of trainable) net.params.setEwcAnchor(p, net.params.value(p), fisher[p]);
  }

  async function scoreBatch(x: Tensor4): Promise<MethodScores> {
    await loadWeights();
    const n = x.shape[0];
    const feats: Float32Array[] = [];
    for (let t = 0; t < snapshots.length; t++) {
      use(t);
      feats.push(await pooledFeatures(net, x.data, x.shape, batchSize, cacheTap));
    }
    if (!ses) return { scores: await dn2Scores(snapshots[0].bank, feats[0], dim, k, reduce) };
    const ratios = feats.map((f, t) => centreDistances(f, centre!).map((v) => v / snapshots[t].meanDistance));
    const { best, ratio } = sesSelect(ratios);
    if (sesScore === 'ratio') return { scores: Float32Array.from(ratio) };
    const scores = new Float32Array(n);
    for (let t = 0; t < snapshots.length; t++) {
      const rows = [...best.keys()].filter((i) => best[i] === t);
      if (!rows.length) continue;
      const q = new Float32Array(rows.length * dim);
      rows.forEach((i, r) => q.set(feats[t].subarray(i * dim, (i + 1) * dim), r * dim));
      const s = await dn2Scores(snapshots[t].bank, q, dim, k, reduce);
      rows.forEach((i, r) => (scores[i] = s[r]));
    }
    return { scores };
  }

  return {
    name: 'panda',
    taps: [cacheTap],
    notes,
    async fitBatch(f: Features) {
      parts.push(f[cacheTap]);
    },
    async finishFit(onProgress) {
      await loadWeights();
      const shape = parts[0].shape;
      const n = parts.reduce((a, p) => a + p.shape[0], 0);
      if (n < k) throw new RangeError(`panda with k = ${k} needs at least ${k} training images, received ${n}`);
      const x = drainConcat(parts.map((p) => p.data));
      parts.length = 0;
      if (ewc) await anchorEwc();
      const kept: Snapshot[] = [];
      const start = performance.now();
      let epochStart = start;
      let epochLoss = NaN;
      const meanDistance = (bank: Float32Array, c: Float32Array) => centreDistances(bank, c).reduce((a, b) => a + b, 0) / n;
      const keep = async (epoch: number, c: Float32Array) => {
        const bank = await pooledFeatures(net, x, [n, shape[1], shape[2], shape[3]], batchSize, cacheTap);
        kept.push({ epoch, params: keepParams(), bank, meanDistance: meanDistance(bank, c) });
      };
      const result = await pandaFineTune(net, x, [n, shape[1], shape[2], shape[3]], {
        epochs, batchSize, seed, clip: clip > 0 ? clip : null, startTap: cacheTap,
        sgd: { lr, momentum, weightDecay },
        ewcLambda: ewc ? ewcLambda : undefined,
        signal,
        onStep: (done, total) => onProgress?.(done / total),
        onEpochEnd: async (epoch, s) => {
          const now = performance.now();
          if (checkpoint && (epoch % checkpointEvery === 0 || epoch === epochs))
            await saveCheckpoint(net, checkpoint, { format: 'anomalens-panda-checkpoint', epoch: String(epoch), epochs: String(epochs) }, { momentum: true });
          // The last epoch's network is kept below, with the bank pandaFineTune computes anyway.
          if (ses && epoch % sesEvery === 0 && epoch !== epochs) await keep(epoch, s.centre);
          onEpoch?.({
            epoch, epochs, loss: epochLoss, imagesPerSecond: n / ((now - epochStart) / 1000),
            etaSeconds: ((now - start) / 1000 / epoch) * (epochs - epoch),
          });
          epochStart = performance.now();
        },
        onEpoch: (_, loss) => (epochLoss = loss),
      });
      centre = result.centre;
      losses = result.losses;
      const last = { epoch: epochs, params: keepParams(), bank: result.trainFeatures, meanDistance: ses ? meanDistance(result.trainFeatures, centre) : 1 };
      snapshots = ses ? [...kept, last] : [last];
      current = snapshots.length - 1;
    },
    async score(f: Features): Promise<MethodScores> {
      // The network's parameters are swapped per checkpoint: one batch at a time.
      const run = queue.then(() => scoreBatch(f[cacheTap]));
      queue = run.catch(() => {});
      return run;
    },
    config: () => ({
      arch: backbone.arch, lastTap, startTap: cacheTap, epochs, batchSize, seed, lr, momentum, weightDecay, clip, k, reduce,
      ses, sesEvery, sesScore, ewc: ewc ?? null, ewcLambda, checkpointEpochs: snapshots.map((s) => s.epoch), losses,
    }),
    state(): Record<string, NamedTensor> {
      const out: Record<string, NamedTensor> = {
        centre: { shape: [dim], data: centre! },
        checkpointEpochs: { shape: [snapshots.length], data: Float32Array.from(snapshots.map((s) => s.epoch)) },
      };
      snapshots.forEach((s, t) => {
        out[`c${t}.bank`] = { shape: [s.bank.length / dim, dim], data: s.bank };
        out[`c${t}.meanDistance`] = { shape: [1], data: Float32Array.of(s.meanDistance) };
        for (const [p, v] of s.params) out[`c${t}.net.${p}`] = { shape: net.params.info(p).shape, data: v };
      });
      return out;
    },
    restore(state) {
      centre = stateTensor(state, 'centre', 'panda').data;
      if (centre.length !== dim) throw new RangeError(`saved panda detector's centre has ${centre.length} values; ${backbone.arch} up to ${lastTap} gives ${dim}`);
      const epochsKept = stateTensor(state, 'checkpointEpochs', 'panda').data;
      snapshots = [...epochsKept].map((epoch, t) => {
        const bank = stateTensor(state, `c${t}.bank`, 'panda');
        if (bank.shape[1] !== dim) throw new RangeError(`saved panda detector's bank ${t} has rows of ${bank.shape[1]}; expected ${dim}`);
        const params = new Map<string, Float32Array>();
        for (const p of trainable) {
          const v = stateTensor(state, `c${t}.net.${p}`, 'panda');
          const shape = net.params.info(p).shape;
          if (v.shape.join(',') !== shape.join(',')) throw new RangeError(`saved panda detector's '${p}' is [${v.shape.join(', ')}]; expected [${shape.join(', ')}]`);
          params.set(p, v.data);
        }
        return { epoch, params, bank: bank.data, meanDistance: stateTensor(state, `c${t}.meanDistance`, 'panda').data[0] };
      });
      if (!snapshots.length) throw new RangeError('saved panda detector holds no network');
      current = -1;
    },
  };
}
