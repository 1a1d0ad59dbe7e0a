/**
 * The diagonal Fisher information of PANDA's EWC variant, and its file.
 *
 * computeFisher gives the *empirical* diagonal Fisher of the backbone's trainable parameters:
 *   F_i = mean over samples of (d/d theta_i log p(y_true | x))^2,
 * with p = softmax(head(globally average-pooled last tap)), the network in eval mode (BN
 * running statistics frozen, as PANDA trains it), one backward per sample (a batch of one: the
 * squared gradient of each sample, not the square of the batch's). The parameters are those
 * PANDA trains: every parameter not under pandaFrozenPrefixes(net) (layer3 / layer4, or
 * stage3 / stage4 for v2 archs), or the complement of `frozenPrefixes`. The frozen prefix runs
 * once per image, batched, forward-only (its output is constant under frozen BN); each sample's
 * forward / backward then starts from that tap (`cachePrefix`, default on; exact).
 *
 * The head is given ({ weight [k, d], bias [k]}: torchvision's `fc.weight` / `fc.bias`, say) or,
 * when absent, fitted on the pooled features by fitLinearHead, cross-fitted: with `folds` F
 * (default 2), sample i belongs to fold i % F and its gradient goes through the head fitted on the
 * other folds. A head fitted on the very samples it scores separates them (a thousand features,
 * a few hundred images) with a cross-entropy near 0, where the empirical Fisher vanishes with
 * it; the out-of-fold head sees each sample as a classifier sees data it was not trained on, as
 * an ImageNet classifier sees most images. `folds: 1` fits one head on every sample.
 *
 * writeFisher / readFisher store it as safetensors keyed by parameter name, as PANDA's
 * published `fisher_diagonal.pth` is for torchvision ResNets.
 *
 * @example
 * const { fisher } = await computeFisher(net, images, [n, 3, 112, 112], labels);
 * await writeFisher('fisher.safetensors', net, fisher, { data: 'cifar10-train' });
 * const { fisher: f } = await readFisher('fisher.safetensors', net);
 * for (const [name, v] of Object.entries(f)) net.params.setEwcAnchor(name, net.params.value(name), v);
 */
import { AnomalensError } from '../core/errors.js';
import { readSafetensors, writeSafetensors, type NamedTensor } from '../io/safetensors.js';
import { describe, expectBoolean, expectFloat32Array, expectInteger, expectObject, expectString } from '../core/validate.js';
import { expectLabels, fitLinearHead, softmaxCrossEntropy, type LinearHead, type LinearHeadOptions } from './linear-head.js';
import { globalAvgPoolBackward, globalAvgPoolForward, linearBackward, linearForward } from './ops.js';
import { pandaFrozenPrefixes, pooledFeatures } from './panda.js';
import { TrainResnet, type ResnetTap } from './resnet.js';
import { expectNchw } from './validate.js';

export interface FisherOptions {
  /** The classifier on the pooled last tap; default: fitLinearHead on the samples' pooled features. */
  head?: LinearHead;
  /** Options of the fitted head (when `head` is absent). */
  fit?: LinearHeadOptions;
  /** Cross-fitting folds of the fitted head (default 2; 1: one head fitted on every sample). */
  folds?: number;
  /** Parameters under these name prefixes get no Fisher; default pandaFrozenPrefixes(net). */
  frozenPrefixes?: readonly string[];
  /** Run the frozen prefix once per image, batched (default true; false: every sample from the image). */
  cachePrefix?: boolean;
  /** Images per batched forward (feature and prefix passes); default 32. */
  batchSize?: number;
  /** After every sample of the Fisher pass (phase 'fisher'), and every batch of the feature pass of a fitted head ('features'). */
  onProgress?: (done: number, total: number, phase: 'features' | 'fisher') => void;
  /** Stops between samples; the promise rejects with ERR_ABORTED. */
  signal?: AbortSignal;
}

export interface FisherResult {
  /** Per trainable parameter (by name), the diagonal Fisher, as many values as the parameter. */
  fisher: Record<string, Float32Array>;
  /** Their shapes. */
  shapes: Record<string, number[]>;
  /**
   * The heads used: the given one, or the fitted one per fold (sample i went through heads[i % folds]),
   * with `fitAccuracy` the mean over folds of each head's accuracy on its own training samples.
   */
  head: { classes: number; fitted: boolean; folds: number; heads: LinearHead[]; fitAccuracy?: number };
  /** The heads' accuracy and mean cross-entropy on the samples (out of fold when cross-fitted), through the network. */
  accuracy: number;
  meanLoss: number;
  samples: number;
  /** Trainable values the Fisher covers. */
  parameters: number;
  /** Where each sample's forward started ('input' or the cached tap). */
  startTap: 'input' | ResnetTap;
  seconds: number;
}

/** Prefix outputs a fitted head's two passes share (1 GiB of floats), beyond which they are recomputed. */
const PREFIX_KEEP_FLOATS = 2 ** 28;

/** The stage a parameter belongs to: 0 for the stem, s for layer s / stage s. */
function stageOf(net: TrainResnet, name: string): number {
  const m = net.arch.endsWith('_v2') ? /^stage(\d)_/.exec(name.slice(net.v2Prefix.length)) : /^layer(\d)\./.exec(name);
  return m ? Number(m[1]) : 0;
}

function tapName(net: TrainResnet, stage: number): ResnetTap {
  return `${net.arch.endsWith('_v2') ? 'stage' : 'layer'}${stage}` as ResnetTap;
}

/** The deepest tap before the last whose every parameter up to it is frozen ('input' when none). */
function cacheTap(net: TrainResnet, trainable: ReadonlySet<string>): 'input' | ResnetTap {
  const last = Number(net.lastTap.slice(-1));
  let first = last;
  for (const name of trainable) first = Math.min(first, stageOf(net, name));
  return first >= 2 ? tapName(net, first - 1) : 'input';
}

function abortIfAsked(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AnomalensError('ERR_ABORTED', 'computing the Fisher was aborted');
}

function expectPrefixes(value: unknown, name: string): string[] {
  if (!Array.isArray(value)) throw new TypeError(`${name} must be an array of name prefixes, received ${describe(value)}`);
  return value.map((p, i) => {
    if (typeof p !== 'string') throw new TypeError(`${name}[${i}] must be a string, received ${describe(p)}`);
    return p;
  });
}

/** The parameter names not under `frozen` (in the network's order). */
function trainableNames(net: TrainResnet, frozen: readonly string[]): string[] {
  return net.params.names().filter((n) => !frozen.some((p) => n.startsWith(p)));
}

/**
 * The empirical diagonal Fisher of `net`'s trainable parameters over the labelled images
 * [n, c, h, w] (normalised, as the Detector's preprocessing gives them). See the file comment.
 * The network's freezing is restored afterwards and its gradients are left at zero.
 */
export async function computeFisher(
  net: TrainResnet,
  images: Float32Array,
  shape: readonly [number, number, number, number],
  labels: Int32Array | readonly number[],
  options: FisherOptions = {},
): Promise<FisherResult> {
  const t0 = performance.now();
  if (!(net instanceof TrainResnet)) throw new TypeError(`net must be a TrainResnet, received ${describe(net)}`);
  const s = expectNchw(shape, 'shape');
  const [n, c, h, w] = s;
  if (c !== 3) throw new RangeError(`shape[1] must be 3 (RGB images), received ${c}`);
  const x = expectFloat32Array(images, 'images', n * c * h * w);
  const o = expectObject(options, 'options');
  const frozen = o.frozenPrefixes === undefined ? pandaFrozenPrefixes(net) : expectPrefixes(o.frozenPrefixes, 'options.frozenPrefixes');
  const cache = o.cachePrefix === undefined ? true : expectBoolean(o.cachePrefix, 'options.cachePrefix');
  const batchSize = o.batchSize === undefined ? 32 : expectInteger(o.batchSize, 'options.batchSize', { min: 1 });
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new TypeError(`options.onProgress must be a function, received ${describe(o.onProgress)}`);
  const onProgress = o.onProgress as FisherOptions['onProgress'];
  const signal = o.signal as AbortSignal | undefined;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError(`options.signal must be an AbortSignal, received ${describe(signal)}`);
  const d = net.tapShape(net.lastTap, 1, 1, 1)[1];

  let given: LinearHead | undefined;
  let k: number | undefined;
  if (o.head !== undefined) {
    const head = expectObject(o.head, 'options.head');
    const bias = expectFloat32Array(head.bias, 'options.head.bias');
    k = bias.length;
    if (k < 2) throw new RangeError(`options.head must have at least 2 classes, received a bias of ${k}`);
    const weight = expectFloat32Array(head.weight, 'options.head.weight');
    if (weight.length !== k * d)
      throw new RangeError(`options.head.weight must be [${k}, ${d}] (${k * d} values: ${k} classes from the bias, ${d} channels at '${net.lastTap}'), received ${weight.length} values`);
    given = { weight, bias };
  }
  const y = expectLabels(labels, n, k);
  const folds = o.folds === undefined ? (given ? 1 : 2) : expectInteger(o.folds, 'options.folds', { min: 1, max: n });
  if (given && folds !== 1) throw new RangeError(`options.folds applies to a fitted head; with options.head it must be 1, received ${folds}`);
  for (let i = 0; i < x.length; i++)
    if (!Number.isFinite(x[i])) throw new RangeError(`images[${i}] is ${x[i]} (image ${Math.floor(i / (c * h * w))}); all values must be finite`);

  const names = trainableNames(net, frozen);
  if (names.length === 0)
    throw new RangeError(`options.frozenPrefixes [${frozen.map((p) => `'${p}'`).join(', ')}] leave no parameter of ${net.arch} up to ${net.lastTap} to compute a Fisher for`);
  const wasFrozen = net.params.names().filter((p) => net.params.info(p).frozen);
  net.params.unfreeze('');
  for (const p of frozen) net.params.freeze(p);
  try {
    abortIfAsked(signal);
    const startTap = cache ? cacheTap(net, new Set(names)) : 'input';
    let prefix: TrainResnet | null = null;
    if (startTap !== 'input') {
      prefix = new TrainResnet(net.arch, { lastTap: startTap });
      for (const name of prefix.tensorNames()) prefix.setTensor(name, net.tensor(name));
      prefix.params.freeze('');
    }
    const inShape = prefix ? prefix.tapShape(startTap as ResnetTap, 1, h, w) : ([1, c, h, w] as [number, number, number, number]);
    const per = inShape[1] * inShape[2] * inShape[3];
    // The frozen prefix's output of each batch of images; a fitted head's feature pass keeps them
    // for the Fisher pass when they fit in PREFIX_KEEP_FLOATS, else they are computed again.
    const kept: Float32Array[] = [];
    const keep = !given && prefix !== null && n * per <= PREFIX_KEEP_FLOATS;
    const prefixOutput = async (b: number, m: number): Promise<Float32Array> => {
      const chunk = x.subarray(b * c * h * w, (b + m) * c * h * w);
      if (!prefix) return chunk;
      return kept[b / batchSize] ?? (await prefix.forward(chunk, [m, c, h, w]));
    };
    let head: FisherResult['head'];
    if (given) {
      head = { classes: k!, fitted: false, folds: 1, heads: [given] };
    } else {
      const features = new Float32Array(n * d);
      for (let b = 0; b < n; b += batchSize) {
        abortIfAsked(signal);
        const m = Math.min(batchSize, n - b);
        const inputs = await prefixOutput(b, m);
        if (keep) kept.push(inputs);
        features.set(await pooledFeatures(net, inputs, [m, inShape[1], inShape[2], inShape[3]], m, startTap), b * d);
        onProgress?.(b + m, n, 'features');
      }
      abortIfAsked(signal);
      const fit = o.fit === undefined ? {} : (expectObject(o.fit, 'options.fit') as LinearHeadOptions);
      const classes = fit.classes ?? Math.max(...y) + 1;
      const heads: LinearHead[] = [];
      let fitAccuracy = 0;
      for (let f = 0; f < folds; f++) {
        const train = [...y.keys()].filter((i) => folds === 1 || i % folds !== f);
        const xf = new Float32Array(train.length * d);
        train.forEach((i, j) => xf.set(features.subarray(i * d, (i + 1) * d), j * d));
        const yf = Int32Array.from(train, (i) => y[i]);
        if (new Set(yf).size < 2)
          throw new RangeError(`labels: the samples outside fold ${f} of ${folds} (sample i is in fold i % ${folds}) hold fewer than 2 classes; interleave the classes or lower options.folds`);
        const h = await fitLinearHead(xf, yf, { ...fit, classes });
        heads.push({ weight: h.weight, bias: h.bias });
        fitAccuracy += h.trainAccuracy / folds;
      }
      head = { classes, fitted: true, folds, heads, fitAccuracy };
    }
    const kk = head.classes;


    const acc = names.map((name) => new Float64Array(net.params.info(name).shape.reduce((a, b) => a * b, 1)));
    let loss = 0;
    let correct = 0;
    for (let b = 0; b < n; b += batchSize) {
      abortIfAsked(signal);
      const m = Math.min(batchSize, n - b);
      const inputs = await prefixOutput(b, m);
      delete kept[b / batchSize];
      for (let i = 0; i < m; i++) {
        abortIfAsked(signal);
        const label = y.subarray(b + i, b + i + 1);
        const out = await net.forward(inputs.subarray(i * per, (i + 1) * per), inShape, { startTap });
        const fShape: [number, number, number, number] = [1, d, out.length / d, 1];
        const f = await globalAvgPoolForward(out, fShape);
        const { weight, bias } = head.heads[(b + i) % folds];
        const logits = await linearForward(f, weight, bias, 1, d, kk);
        const ce = softmaxCrossEntropy(logits, label, 1, kk);
        loss += ce.loss;
        correct += ce.correct;
        // d(-log p_y)/d logits = p - onehot(y)
        const dLogits = Float32Array.from(ce.p, (p, j) => p - (j === label[0] ? 1 : 0));
        const { dx } = await linearBackward(f, weight, dLogits, 1, d, kk, { dx: true, dw: false, db: false });
        await net.backward(await globalAvgPoolBackward(dx!, fShape));
        names.forEach((name, j) => {
          const g = net.params.grad(name)!;
          const a = acc[j];
          for (let e = 0; e < g.length; e++) a[e] += g[e] * g[e];
        });
        onProgress?.(b + i + 1, n, 'fisher');
      }
    }
    const fisher: Record<string, Float32Array> = {};
    const shapes: Record<string, number[]> = {};
    let parameters = 0;
    names.forEach((name, j) => {
      fisher[name] = Float32Array.from(acc[j], (v) => v / n);
      shapes[name] = net.params.info(name).shape;
      parameters += acc[j].length;
    });
    return { fisher, shapes, head, accuracy: correct / n, meanLoss: loss / n, samples: n, parameters, startTap, seconds: (performance.now() - t0) / 1000 };
  } finally {
    net.release();
    net.params.zeroGrad();
    net.params.unfreeze('');
    for (const p of wasFrozen) net.params.freeze(p);
  }
}

/** The network's parameter shape, or an error naming the tensor that is not one of its parameters. */
function paramShape(net: TrainResnet, name: string, what: string): number[] {
  if (!net.params.names().includes(name))
    throw new AnomalensError('ERR_WEIGHTS_MISMATCH', `${what}: '${name}' is not a parameter of ${net.arch} up to ${net.lastTap}`);
  return net.params.info(name).shape;
}

/** The first negative or non-finite value of a Fisher tensor, as a message fragment, or null. */
function badValue(data: Float32Array): string | null {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isFinite(v) || v < 0) return `[${i}] is ${v}`;
  }
  return null;
}

/**
 * Writes a diagonal Fisher as safetensors keyed by parameter name (shapes from `net`),
 * atomically (nothing is left at `path` on failure). Every name must be a parameter of `net`;
 * values must be finite and >= 0. The metadata gains `format: 'anomalens-fisher'` and `arch`.
 */
export async function writeFisher(path: string, net: TrainResnet, fisher: Record<string, Float32Array>, metadata: Record<string, string> = {}): Promise<void> {
  expectString(path, 'path');
  if (!(net instanceof TrainResnet)) throw new TypeError(`net must be a TrainResnet, received ${describe(net)}`);
  const f = expectObject(fisher, 'fisher');
  const meta = expectObject(metadata, 'metadata');
  for (const [key, v] of Object.entries(meta)) if (typeof v !== 'string') throw new TypeError(`metadata.${key} must be a string, received ${describe(v)}`);
  const names = Object.keys(f);
  if (names.length === 0) throw new RangeError('fisher must hold at least one tensor, received none');
  const tensors: Record<string, NamedTensor> = {};
  for (const name of names) {
    const shape = paramShape(net, name, 'fisher');
    const data = expectFloat32Array(f[name], `fisher['${name}']`, shape.reduce((a, b) => a * b, 1));
    const bad = badValue(data);
    if (bad) throw new RangeError(`fisher['${name}']${bad}; a diagonal Fisher is finite and >= 0`);
    tensors[name] = { shape, data };
  }
  await writeSafetensors(path, tensors, { ...(meta as Record<string, string>), format: 'anomalens-fisher', arch: net.arch });
}

export interface ReadFisherOptions {
  /** The parameters that need no Fisher; default pandaFrozenPrefixes(net): every other one must be in the file. */
  frozenPrefixes?: readonly string[];
}

export interface FisherFile {
  /** Every parameter of the network the file holds (at least the trainable ones), by name. */
  fisher: Record<string, Float32Array>;
  metadata: Record<string, string>;
  /** Tensors of the file that name no parameter of the network (a classifier's, BN buffers), ignored. */
  ignored: string[];
}

/**
 * Reads a diagonal Fisher (written by writeFisher, or any safetensors keyed by parameter name,
 * such as a converted `fisher_diagonal.pth`) for `net`: every parameter not under
 * `frozenPrefixes` must be present, and every tensor naming a parameter must have its shape
 * (ERR_WEIGHTS_MISMATCH naming the tensors otherwise); negative or non-finite values are
 * refused with ERR_INVALID_FILE naming the tensor and the element.
 */
export async function readFisher(path: string, net: TrainResnet, options: ReadFisherOptions = {}): Promise<FisherFile> {
  expectString(path, 'path');
  if (!(net instanceof TrainResnet)) throw new TypeError(`net must be a TrainResnet, received ${describe(net)}`);
  const o = expectObject(options, 'options');
  const frozen = o.frozenPrefixes === undefined ? pandaFrozenPrefixes(net) : expectPrefixes(o.frozenPrefixes, 'options.frozenPrefixes');
  const file = await readSafetensors(path);
  const params = new Set(net.params.names());
  const missing = trainableNames(net, frozen).filter((name) => !(name in file.tensors));
  const misShaped: string[] = [];
  const fisher: Record<string, Float32Array> = {};
  const ignored: string[] = [];
  for (const [name, t] of Object.entries(file.tensors)) {
    if (!params.has(name)) {
      ignored.push(name);
      continue;
    }
    const shape = net.params.info(name).shape;
    if (t.shape.join(',') !== shape.join(',')) {
      misShaped.push(`${name} (expected [${shape.join(', ')}], received [${t.shape.join(', ')}])`);
      continue;
    }
    if (!t.data) throw new AnomalensError('ERR_INVALID_FILE', `${path}: tensor '${name}' is ${t.dtype}; a Fisher must be a float tensor`);
    const bad = badValue(t.data);
    if (bad) throw new AnomalensError('ERR_INVALID_FILE', `${path}: tensor '${name}'${bad}; a diagonal Fisher is finite and >= 0`);
    fisher[name] = t.data;
  }
  if (missing.length || misShaped.length) {
    const list = (a: string[]) => `${a.slice(0, 5).join(', ')}${a.length > 5 ? ` and ${a.length - 5} more` : ''}`;
    throw new AnomalensError(
      'ERR_WEIGHTS_MISMATCH',
      `${path} does not fit ${net.arch} up to ${net.lastTap}:` +
        (missing.length ? ` missing the Fisher of ${list(missing)};` : '') +
        (misShaped.length ? ` mis-shaped ${list(misShaped)}` : ''),
    );
  }
  return { fisher, metadata: file.metadata, ignored };
}
