/**
 * Checkpoints of a trainable network: every parameter and BN buffer under its state-dict /
 * initializer name in one safetensors file, written atomically (temporary file + rename), so
 * they load into PyTorch (`model.load_state_dict(safetensors.torch.load_file(path), strict=False)`)
 * and back. Optionally the SGD momentum buffers as `<name>.momentum_buffer`.
 *
 * @example
 * await saveCheckpoint(net, 'panda-epoch3.safetensors', { epoch: '3' });
 * await loadCheckpoint(net, 'panda-epoch3.safetensors');
 */
import { AnomalensError } from '../core/errors.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { expectBoolean, expectObject, expectString } from '../core/validate.js';
import type { TrainResnet } from './resnet.js';

const MOMENTUM = '.momentum_buffer';

export async function saveCheckpoint(net: TrainResnet, path: string, metadata: Record<string, string> = {}, options: { momentum?: boolean } = {}): Promise<void> {
  expectString(path, 'path');
  expectObject(metadata, 'metadata');
  const o = expectObject(options, 'options');
  const momentum = o.momentum === undefined ? false : expectBoolean(o.momentum, 'options.momentum');
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const name of net.params.names()) {
    const shape = net.params.info(name).shape;
    tensors[name] = { shape, data: net.params.value(name) };
    const buf = momentum ? net.params.state(name, 'momentum_buffer') : null;
    if (buf) tensors[name + MOMENTUM] = { shape, data: buf };
  }
  for (const name of net.buffers.names()) tensors[name] = { shape: net.buffers.info(name).shape, data: net.buffers.value(name) };
  await writeSafetensors(path, tensors, { arch: net.arch, lastTap: net.lastTap, ...metadata });
}

/**
 * Loads a checkpoint (or a weights file with the same names) into `net`. Every parameter and
 * buffer of the network must be present with its shape; other tensors are ignored.
 * @returns the file's metadata.
 */
export async function loadCheckpoint(net: TrainResnet, path: string): Promise<Record<string, string>> {
  expectString(path, 'path');
  const file = await readSafetensors(path);
  const missingNames: string[] = [];
  const misShaped: string[] = [];
  for (const name of net.tensorNames()) {
    const t = file.tensors[name];
    const store = net.params.names().includes(name) ? net.params : net.buffers;
    const shape = store.info(name).shape;
    if (!t || !t.data) missingNames.push(name);
    else if (t.shape.join(',') !== shape.join(',')) misShaped.push(`${name} (expected [${shape.join(', ')}], received [${t.shape.join(', ')}])`);
  }
  if (missingNames.length || misShaped.length)
    throw new AnomalensError(
      'ERR_WEIGHTS_MISMATCH',
      `${path} does not fit ${net.arch} up to ${net.lastTap}:` +
        (missingNames.length ? ` missing ${missingNames.slice(0, 5).join(', ')}${missingNames.length > 5 ? ` and ${missingNames.length - 5} more` : ''};` : '') +
        (misShaped.length ? ` mis-shaped ${misShaped.slice(0, 5).join(', ')}` : ''),
    );
  for (const name of net.tensorNames()) net.setTensor(name, file.tensors[name].data!);
  for (const name of net.params.names()) {
    const m = file.tensors[name + MOMENTUM];
    if (m?.data) net.params.setState(name, 'momentum_buffer', m.data);
  }
  return file.metadata;
}
