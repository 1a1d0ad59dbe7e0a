// PANDA's fine-tuning on a tiny seeded ResNet-18 (5 images of 32 x 32, batches of 2: the last
// batch holds one image): the constant-prefix cache gives bit-identical losses, parameters and
// features to recomputing the prefix every step; frozen prefixes do not move; the loss goes
// down; cancellation through an AbortSignal; the v2 freezing names.
import { describe, expect, it } from 'vitest';
import { TrainResnet, pandaFineTune, pandaFrozenPrefixes, type TrainableArch } from '../../lib/index.js';
import { seededInput, seededTensor } from '../helpers/seeded.js';

function seededNet(arch: TrainableArch = 'resnet18'): TrainResnet {
  const net = new TrainResnet(arch);
  for (const name of net.tensorNames()) {
    const store = net.params.names().includes(name) ? net.params : net.buffers;
    net.setTensor(name, seededTensor(name, store.info(name).shape));
  }
  return net;
}

const shape: [number, number, number, number] = [5, 3, 32, 32];
const images = seededInput(shape);

function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

describe('pandaFineTune', () => {
  it('the constant-prefix cache is exact; a final batch of one image works; frozen prefixes stay', async () => {
    const a = seededNet();
    const b = seededNet();
    const before = seededNet();
    const epochs: number[] = [];
    const ra = await pandaFineTune(a, images, shape, { epochs: 2, batchSize: 2, seed: 3, onEpoch: (e) => epochs.push(e) });
    const rb = await pandaFineTune(b, images, shape, { epochs: 2, batchSize: 2, seed: 3, cachePrefix: false });
    expect(epochs).toEqual([0, 1]);
    expect(ra.losses).toEqual(rb.losses);
    expect(ra.losses.every(Number.isFinite)).toBe(true);
    expect(firstDifference(ra.centre, rb.centre)).toBe(-1);
    expect(firstDifference(ra.trainFeatures, rb.trainFeatures)).toBe(-1);
    expect(ra.trainFeatures.length).toBe(5 * 512);
    for (const p of a.params.names()) {
      expect(firstDifference(a.params.value(p), b.params.value(p)), p).toBe(-1);
      const moved = firstDifference(a.params.value(p), before.params.value(p)) !== -1;
      expect(moved, p).toBe(!/^(conv1|bn1|layer1|layer2)\./.test(p));
    }
    // BN running statistics stay frozen (eval mode)
    for (const name of a.buffers.names()) expect(firstDifference(a.buffers.value(name), before.buffers.value(name)), name).toBe(-1);
  });

  it('reduces the compactness loss', async () => {
    const net = seededNet();
    const r = await pandaFineTune(net, images, shape, { epochs: 3, batchSize: 5, sgd: { lr: 1e-2, momentum: 0.9 } });
    expect(r.losses[2]).toBeLessThan(r.losses[0]);
  });

  it('stops when its AbortSignal fires', async () => {
    const net = seededNet();
    const ctl = new AbortController();
    await expect(
      pandaFineTune(net, images, shape, { epochs: 5, batchSize: 2, signal: ctl.signal, onEpoch: () => ctl.abort() }),
    ).rejects.toMatchObject({ code: 'ERR_ABORTED' });
  });

  it('freezes the stem, stage1 and stage2 for v2 archs by their initializer names', () => {
    const net = new TrainResnet('resnet50_v2', { lastTap: 'stage3' });
    expect(pandaFrozenPrefixes(net)).toEqual(['resnetv24_conv0', 'resnetv24_batchnorm', 'resnetv24_stage1_', 'resnetv24_stage2_']);
    for (const p of pandaFrozenPrefixes(net)) net.params.freeze(p);
    const trainable = net.params.names().filter((n) => !net.params.info(n).frozen);
    expect(trainable.length).toBeGreaterThan(0);
    expect(trainable.every((n) => n.startsWith('resnetv24_stage3_'))).toBe(true);
  });

  it('errors', async () => {
    const net = seededNet();
    await expect(pandaFineTune(net, new Float32Array(3), shape)).rejects.toThrow(/images must have 15360 elements/);
    await expect(pandaFineTune(net, images, shape, { batchSize: 0 })).rejects.toThrow(/options.batchSize must be >= 1/);
  });
});

describe('checkpoints', () => {
  it('round-trip parameters, buffers and momentum by name, with metadata; a mismatched network is refused', async () => {
    const { tempDir } = await import('../helpers/tmp.js');
    const { saveCheckpoint, loadCheckpoint, readSafetensors } = await import('../../lib/index.js');
    const { dir, cleanup } = tempDir();
    try {
      const first = seededNet();
      await pandaFineTune(first, images, shape, { batchSize: 5, seed: 1, epochs: 1 });
      const path = `${dir}/ckpt.safetensors`;
      await saveCheckpoint(first, path, { epoch: '1' }, { momentum: true });
      const file = await readSafetensors(path);
      expect(file.metadata).toMatchObject({ arch: 'resnet18', lastTap: 'layer4', epoch: '1' });
      expect(Object.keys(file.tensors)).toContain('layer3.0.conv1.weight.momentum_buffer');
      const resumed = seededNet();
      expect((await loadCheckpoint(resumed, path)).epoch).toBe('1');
      for (const p of resumed.params.names()) expect(firstDifference(resumed.params.value(p), first.params.value(p)), p).toBe(-1);
      const mb = resumed.params.state('layer4.1.conv2.weight', 'momentum_buffer');
      expect(mb && firstDifference(mb, first.params.state('layer4.1.conv2.weight', 'momentum_buffer')!)).toBe(-1);
      const bad = new TrainResnet('resnet34');
      await expect(loadCheckpoint(bad, path)).rejects.toMatchObject({ code: 'ERR_WEIGHTS_MISMATCH' });
    } finally {
      cleanup();
    }
  });
});
