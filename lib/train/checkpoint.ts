/**
 * Checkpoints of a trainable network (TrainResnet for PANDA, TrainRd for Reverse Distillation):
 * every parameter and BN buffer under its state-dict / initializer name in one safetensors
 * file, written atomically (temporary file + rename), so they load into PyTorch
 * (`model.load_state_dict(safetensors.torch.load_file(path), strict=False)`) and back.
 * Optionally the optimiser's state by torch's names, so that a resumed run continues the same
 * run: SGD's `<param>.momentum_buffer`; Adam's `<param>.exp_avg`, `<param>.exp_avg_sq` and
 * `<param>.step` (a float32 scalar, as torch 1.13 keeps `state['step']`).
 *
 * @example
 * await saveCheckpoint(net, 'panda-epoch3.safetensors', { epoch: '3' }, { optimizer: 'sgd' });
 * await loadCheckpoint(net, 'panda-epoch3.safetensors');  // parameters, buffers, momentum
 */
import { AnomalensError } from '../core/errors.js';
import { readSafetensors, writeSafetensors, type NamedTensor } from '../io/safetensors.js';
import { expectBoolean, expectObject, expectOneOf, expectString } from '../core/validate.js';
import { TrainRd } from './rd.js';
import type { TrainResnet } from './resnet.js';

/** A network with a parameter and a BN-buffer store. */
export type CheckpointNet = TrainResnet | TrainRd;

export type OptimiserKind = 'sgd' | 'adam';

/** The state tensors of each optimiser (torch's names); Adam's step count is `<param>.step`. */
const STATE_KEYS: Record<OptimiserKind, readonly string[]> = { sgd: ['momentum_buffer'], adam: ['exp_avg', 'exp_avg_sq'] };
const STEP = 'step';

export interface SaveCheckpointOptions {
  /** Which optimiser's state to write with the network (default none). */
  optimizer?: OptimiserKind;
  /** true: the SGD momentum buffers (the same as optimizer 'sgd'). */
  momentum?: boolean;
}

export interface ApplyCheckpointOptions {
  /** Tensors the network does not hold: 'ignore' (default; a backbone's weights file has fc.*) or 'refuse'. `num_batches_tracked` is always ignored. */
  unexpected?: 'ignore' | 'refuse';
  /** Restore the optimiser state the file holds (default true); false: the network only. */
  optimizer?: boolean;
}

export interface AppliedCheckpoint {
  /** The optimiser whose state was restored, or null when the file has none (or it was not asked for). */
  optimizer: OptimiserKind | null;
  /** Parameters whose optimiser state was restored. */
  withState: number;
}

function label(net: CheckpointNet): string {
  return net instanceof TrainRd ? `a ${net.teacher} Reverse Distillation student` : `${net.arch} up to ${net.lastTap}`;
}

function netMetadata(net: CheckpointNet): Record<string, string> {
  return net instanceof TrainRd ? { format: 'anomalens-rd-student', teacher: net.teacher } : { arch: net.arch, lastTap: net.lastTap };
}

function optimiserOf(o: SaveCheckpointOptions): OptimiserKind | undefined {
  const opt = expectObject(o, 'options');
  const momentum = opt.momentum === undefined ? false : expectBoolean(opt.momentum, 'options.momentum');
  const optimizer = opt.optimizer === undefined ? undefined : expectOneOf(opt.optimizer, 'options.optimizer', ['sgd', 'adam'] as const);
  if (momentum && optimizer === 'adam') throw new RangeError("options.momentum (SGD's buffers) contradicts options.optimizer 'adam'");
  return optimizer ?? (momentum ? 'sgd' : undefined);
}

/**
 * The network's tensors as a state record under the original names (parameters, then
 * buffers), with the optimiser's state when asked: each parameter that has it (torch keeps no
 * state for a parameter that never had a gradient).
 */
export function checkpointTensors(net: CheckpointNet, options: SaveCheckpointOptions = {}): Record<string, NamedTensor> {
  const optimizer = optimiserOf(options);
  const tensors: Record<string, NamedTensor> = {};
  for (const name of net.params.names()) {
    const info = net.params.info(name);
    tensors[name] = { shape: info.shape, data: net.params.value(name) };
    if (!optimizer) continue;
    const state = STATE_KEYS[optimizer].map((k) => [k, net.params.state(name, k)] as const);
    if (state.some(([, v]) => !v)) continue;
    for (const [k, v] of state) tensors[`${name}.${k}`] = { shape: info.shape, data: v! };
    if (optimizer === 'adam') tensors[`${name}.${STEP}`] = { shape: [], data: new Float32Array([info.step]) };
  }
  for (const name of net.buffers.names()) tensors[name] = { shape: net.buffers.info(name).shape, data: net.buffers.value(name) };
  return tensors;
}

/**
 * Writes `net` (and, with `options.optimizer`, its optimiser state) to `path` atomically. The
 * metadata gets the network's identity (`arch` / `lastTap`, or `format` / `teacher` for a
 * Reverse Distillation student) and `optimizer` when state is written, then `metadata`.
 */
export async function saveCheckpoint(net: CheckpointNet, path: string, metadata: Record<string, string> = {}, options: SaveCheckpointOptions = {}): Promise<void> {
  expectString(path, 'path');
  expectObject(metadata, 'metadata');
  const optimizer = optimiserOf(options);
  const tensors = checkpointTensors(net, { optimizer });
  await writeSafetensors(path, tensors, { ...netMetadata(net), ...(optimizer ? { optimizer } : {}), ...metadata });
}

/**
 * Sets `net` from a state record (a checkpoint's or a saved detector's tensors). Every
 * parameter and buffer must be present as float32 with its shape, else ERR_WEIGHTS_MISMATCH
 * naming the tensors and nothing is set. Optimiser state (see the file's comment) is restored
 * when present and `options.optimizer` is not false; a parameter's Adam state must be whole
 * (exp_avg, exp_avg_sq and step). State the record lacks is left as it is.
 */
export function applyCheckpoint(
  net: CheckpointNet,
  tensors: Record<string, { shape: number[]; data?: Float32Array | null }>,
  source: string,
  options: ApplyCheckpointOptions = {},
): AppliedCheckpoint {
  const o = expectObject(options, 'options');
  const unexpected = o.unexpected === undefined ? 'ignore' : expectOneOf(o.unexpected, 'options.unexpected', ['ignore', 'refuse'] as const);
  const withOptimizer = o.optimizer === undefined ? true : expectBoolean(o.optimizer, 'options.optimizer');
  const params = net.params.names();
  const paramSet = new Set(params);
  const names = [...params, ...net.buffers.names()];
  const known = new Set(names);
  const missing: string[] = [];
  const misShaped: string[] = [];
  const shapeOf = (name: string) => (paramSet.has(name) ? net.params : net.buffers).info(name).shape;
  const check = (name: string, shape: number[]) => {
    const t = tensors[name];
    if (!t || !t.data) missing.push(name);
    else if (t.shape.join(',') !== shape.join(',')) misShaped.push(`${name} (expected [${shape.join(', ')}], received [${t.shape.join(', ')}])`);
  };
  for (const name of names) check(name, shapeOf(name));

  // Optimiser state: which parameters have which, each whole and well-shaped.
  const stateKeys = [...STATE_KEYS.sgd, ...STATE_KEYS.adam, STEP];
  const restore: { name: string; kind: OptimiserKind }[] = [];
  for (const name of params) {
    for (const kind of ['sgd', 'adam'] as const) {
      const keys = kind === 'adam' ? [...STATE_KEYS.adam, STEP] : STATE_KEYS.sgd;
      const present = keys.filter((k) => tensors[`${name}.${k}`] !== undefined);
      if (!present.length) continue;
      for (const k of keys) {
        known.add(`${name}.${k}`);
        if (withOptimizer) check(`${name}.${k}`, k === STEP ? [] : shapeOf(name));
      }
      if (withOptimizer) restore.push({ name, kind });
    }
  }
  for (const { name, kind } of restore) {
    const step = kind === 'adam' ? tensors[`${name}.${STEP}`]?.data?.[0] : 0;
    if (step !== undefined && !(Number.isInteger(step) && step >= 0 && step <= 2 ** 24)) misShaped.push(`${name}.${STEP} (expected a whole step count, received ${step})`);
  }
  const extra =
    unexpected === 'refuse'
      ? Object.keys(tensors).filter((n) => !known.has(n) && !n.endsWith('num_batches_tracked') && !stateKeys.some((k) => n.endsWith(`.${k}`) && paramSet.has(n.slice(0, -k.length - 1))))
      : [];
  const list = (xs: string[]) => `${xs.slice(0, 5).join(', ')}${xs.length > 5 ? ` and ${xs.length - 5} more` : ''}`;
  if (missing.length || misShaped.length || extra.length)
    throw new AnomalensError(
      'ERR_WEIGHTS_MISMATCH',
      `${source} does not fit ${label(net)}:` +
        (missing.length ? ` missing ${list(missing)};` : '') +
        (misShaped.length ? ` mis-shaped ${list(misShaped)};` : '') +
        (extra.length ? ` unexpected ${list(extra)}` : ''),
    );
  for (const name of names) (paramSet.has(name) ? net.params : net.buffers).setValue(name, tensors[name].data!);
  const kinds = new Set<OptimiserKind>();
  for (const { name, kind } of restore) {
    for (const k of STATE_KEYS[kind]) net.params.setState(name, k, tensors[`${name}.${k}`].data!);
    if (kind === 'adam') net.params.setStep(name, tensors[`${name}.${STEP}`].data![0]);
    kinds.add(kind);
  }
  return { optimizer: kinds.has('adam') ? 'adam' : kinds.has('sgd') ? 'sgd' : null, withState: new Set(restore.map((r) => r.name)).size };
}

/**
 * Loads a checkpoint (or a weights file with the same names) into `net`, with the optimiser
 * state it holds: see applyCheckpoint (other tensors are ignored unless
 * `options.unexpected` is 'refuse').
 * @returns the file's metadata.
 */
export async function loadCheckpoint(net: CheckpointNet, path: string, options: ApplyCheckpointOptions = {}): Promise<Record<string, string>> {
  expectString(path, 'path');
  const file = await readSafetensors(path);
  applyCheckpoint(net, file.tensors, path, options);
  return file.metadata;
}
