// The panda method behind Detector, on a seeded ResNet-18 (64 x 64 images), against slow twins
// built from the engine's pieces that the step-level tests already hold to PyTorch: the whole
// network trained from the image (prefix recomputed every step) with pandaFineTune, then DN2
// by brute force in float64. Then: epochs 0 = DN2, sample-wise early stopping against its
// definition, EWC from a Fisher file, save / load (format version 2; version 1 still reads),
// checkpoints and cancellation, errors.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Detector, TrainResnet, loadCheckpoint, pandaFineTune, pandaFrozenPrefixes, pooledFeatures, readSafetensors, sesSelect, writeSafetensors,
  type PandaEpochEvent, type Tensor4,
} from '../../lib/index.js';
import { seededInput, seededTensor, writeSeededWeights } from '../helpers/seeded.js';
import { tempDir } from '../helpers/tmp.js';
import { relError } from '../helpers/train-reference.js';

const parity = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'backbone', 'parity.json'), 'utf8'));
const { dir, cleanup } = tempDir();
const weights = join(dir, 'r18.safetensors');
beforeAll(() => writeSeededWeights(weights, parity.archs.resnet18.tensors));
afterAll(cleanup);

const S = 64;
const train: Tensor4 = { data: seededInput([7, 3, S, S], 'panda-train'), shape: [7, 3, S, S] };
const test: Tensor4 = { data: seededInput([4, 3, S, S], 'panda-test'), shape: [4, 3, S, S] };

/** The twin: a TrainResnet with the same weights, trained from the images themselves. */
function twinNet(): TrainResnet {
  const net = new TrainResnet('resnet18');
  for (const name of net.tensorNames()) {
    const store = net.params.names().includes(name) ? net.params : net.buffers;
    net.setTensor(name, seededTensor(name, store.info(name).shape));
  }
  return net;
}

/** DN2 by brute force in float64: sum of the k smallest squared distances to the bank rows. */
function bruteDn2(bank: Float32Array, q: Float32Array, d: number, k = 2): number[] {
  const out: number[] = [];
  for (let i = 0; i < q.length / d; i++) {
    const dist: number[] = [];
    for (let j = 0; j < bank.length / d; j++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += (q[i * d + c] - bank[j * d + c]) ** 2;
      dist.push(s);
    }
    dist.sort((a, b) => a - b);
    out.push(dist.slice(0, k).reduce((a, b) => a + b, 0));
  }
  return out;
}

const relVec = (a: ArrayLike<number>, b: ArrayLike<number>) => relError(Array.from(a), Array.from(b));
const create = (methodOptions: Record<string, unknown> = {}) =>
  Detector.create({ method: 'panda', arch: 'resnet18', weights, size: S, batchSize: 4, methodOptions: { batchSize: 3, ...methodOptions } });

describe('panda detector', () => {
  it('fine-tunes layer3 + layer4 and scores by DN2, as the twin trained from the images (final batch of one image)', async () => {
    const events: PandaEpochEvent[] = [];
    const det = await create({ epochs: 2, seed: 5, onEpoch: (e: PandaEpochEvent) => events.push(e) });
    await det.fit(train);
    const p = await det.predict(test);

    const net = twinNet();
    const r = await pandaFineTune(net, train.data, train.shape, { epochs: 2, batchSize: 3, seed: 5, cachePrefix: false });
    const q = await pooledFeatures(net, test.data, test.shape);
    const want = bruteDn2(r.trainFeatures, q, 512);
    expect(relVec(p.map((x) => x.predScore), want)).toBeLessThan(1e-4);
    expect(p.every((x) => x.anomalyMap === undefined)).toBe(true);

    expect(events.map((e) => e.epoch)).toEqual([1, 2]);
    expect(relVec(events.map((e) => e.loss), r.losses)).toBeLessThan(1e-4);
    expect(events.every((e) => e.epochs === 2 && e.imagesPerSecond > 0)).toBe(true);
    expect(events[1].etaSeconds).toBe(0);
    expect(det.config).toMatchObject({ lastTap: 'layer4', startTap: 'layer2', epochs: 2, lr: 1e-2, momentum: 0.9, weightDecay: 5e-5, clip: 1e-3, k: 2 });
  }, 120_000);

  it('with 0 epochs it is DN2 on the pooled last tap', async () => {
    const panda = await create({ epochs: 0 });
    await panda.fit(train);
    const dn2 = await Detector.create({ method: 'dn2', arch: 'resnet18', weights, size: S, batchSize: 4 });
    await dn2.fit(train);
    const a = (await panda.predict(test)).map((x) => x.predScore);
    const b = (await dn2.predict(test)).map((x) => x.predScore);
    expect(relVec(a, b)).toBeLessThan(1e-5);
  }, 60_000);

  it('sample-wise early stopping: the checkpoint maximising ||psi_t(x) - c||^2 / s_t scores each image', async () => {
    const epochs = 5;
    const det = await create({ epochs, seed: 2, ses: true, sesEvery: 2, lr: 0.1, clip: 1 });
    await det.fit(train);
    expect(det.config.checkpointEpochs).toEqual([2, 4, 5]);
    const ratioDet = await create({ epochs, seed: 2, ses: true, sesEvery: 2, lr: 0.1, clip: 1, sesScore: 'ratio' });
    await ratioDet.fit(train);

    // The twin: snapshots of train and test features at the same epochs. At this learning rate
    // training amplifies float differences, so the twin starts from the same layer2 outputs as
    // the detector (its backbone's; the first test covers the prefix from the image).
    const net = twinNet();
    const l2 = async (t: Tensor4) => (await det.backbone.extract(t, ['layer2'])).layer2;
    const [trainL2, testL2] = [await l2(train), await l2(test)];
    const snaps: { bank: Float32Array; q: Float32Array; s: number }[] = [];
    let centre: Float32Array | undefined;
    await pandaFineTune(net, trainL2.data, trainL2.shape, {
      epochs, batchSize: 3, seed: 2, startTap: 'layer2', clip: 1, sgd: { lr: 0.1, momentum: 0.9, weightDecay: 5e-5 },
      onEpochEnd: async (epoch, st) => {
        centre = st.centre;
        if (epoch % 2 && epoch !== epochs) return;
        const bank = await pooledFeatures(net, trainL2.data, trainL2.shape, 3, 'layer2');
        const q = await pooledFeatures(net, testL2.data, testL2.shape, 3, 'layer2');
        let s = 0;
        for (let i = 0; i < 7; i++) for (let c = 0; c < 512; c++) s += (bank[i * 512 + c] - st.centre[c]) ** 2;
        snaps.push({ bank, q, s: s / 7 });
      },
    });
    const ratios = snaps.map(({ q, s }) => {
      const r = new Float64Array(4);
      for (let i = 0; i < 4; i++) for (let c = 0; c < 512; c++) r[i] += (q[i * 512 + c] - centre![c]) ** 2 / s;
      return r;
    });
    const { best, ratio } = sesSelect(ratios);
    const want = [...best].map((t, i) => bruteDn2(snaps[t].bank, snaps[t].q.subarray(i * 512, (i + 1) * 512), 512)[0]);
    expect(relVec((await det.predict(test)).map((x) => x.predScore), want)).toBeLessThan(1e-4);
    expect(relVec((await ratioDet.predict(test)).map((x) => x.predScore), ratio)).toBeLessThan(1e-4);
    // The checkpoints differ (the learning rate is large enough to move the features).
    expect(relVec(snaps[0].q, snaps[2].q)).toBeGreaterThan(1e-3);
  }, 180_000);

  it('sesSelect picks the first maximum per image', () => {
    const r = sesSelect([Float64Array.of(1, 5, 2), Float64Array.of(3, 5, 1)]);
    expect([...r.best]).toEqual([1, 0, 0]);
    expect([...r.ratio]).toEqual([3, 5, 2]);
  });

  it('EWC: a zero Fisher changes nothing; a large one holds the parameters near the pretrained ones', async () => {
    const net = twinNet();
    for (const p of pandaFrozenPrefixes(net)) net.params.freeze(p);
    const trainable = net.params.names().filter((n) => !net.params.info(n).frozen);
    const fisher = (v: number) => Object.fromEntries(trainable.map((n) => [n, { shape: net.params.info(n).shape, data: new Float32Array(net.params.value(n).length).fill(v) }]));
    await writeSafetensors(join(dir, 'f0.safetensors'), fisher(0));
    // lr * lambda * F = 0.5: each step halves the drift the penalty sees.
    await writeSafetensors(join(dir, 'f1.safetensors'), fisher(5e-4));
    const opts = { epochs: 2, lr: 0.1, clip: 1, checkpoint: join(dir, 'e.safetensors') };
    const plain = await create(opts);
    await plain.fit(train);
    const p0 = (await plain.predict(test)).map((x) => x.predScore);
    const zero = await create({ ...opts, ewc: join(dir, 'f0.safetensors') });
    await zero.fit(train);
    expect((await zero.predict(test)).map((x) => x.predScore)).toEqual(p0);
    const heavy = await create({ ...opts, ewc: join(dir, 'f1.safetensors'), ewcLambda: 1e4, checkpoint: join(dir, 'h.safetensors') });
    await heavy.fit(train);
    const ph = (await heavy.predict(test)).map((x) => x.predScore);
    // The twin: anchors at the pretrained values with the same Fisher, from the same layer2 outputs.
    const twin = twinNet();
    for (const p of pandaFrozenPrefixes(twin)) twin.params.freeze(p);
    for (const n of trainable) twin.params.setEwcAnchor(n, twin.params.value(n), new Float32Array(twin.params.value(n).length).fill(5e-4));
    const l2 = async (t: Tensor4) => (await heavy.backbone.extract(t, ['layer2'])).layer2;
    const [trainL2, testL2] = [await l2(train), await l2(test)];
    const r = await pandaFineTune(twin, trainL2.data, trainL2.shape, { epochs: 2, batchSize: 3, startTap: 'layer2', clip: 1, sgd: { lr: 0.1, momentum: 0.9, weightDecay: 5e-5 }, ewcLambda: 1e4 });
    const want = bruteDn2(await pooledFeatures(twin, trainL2.data, trainL2.shape, 3, 'layer2'), await pooledFeatures(twin, testL2.data, testL2.shape, 3, 'layer2'), 512);
    expect(relVec(ph, want)).toBeLessThan(1e-4);
    expect(relVec(ph, p0)).toBeGreaterThan(1e-3);
    expect(r.losses[1]).toBeGreaterThan(0);
    // The penalty holds the parameters nearer the pretrained ones.
    const drift = async (file: string) => {
      const n = twinNet();
      await loadCheckpoint(n, file);
      let s = 0;
      for (const name of trainable) {
        const [a, b] = [n.params.value(name), seededTensor(name, n.params.info(name).shape)];
        for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
      }
      return Math.sqrt(s);
    };
    expect(await drift(join(dir, 'h.safetensors'))).toBeLessThan(await drift(join(dir, 'e.safetensors')));

    const partial = Object.fromEntries(Object.entries(fisher(1)).slice(1));
    await writeSafetensors(join(dir, 'fp.safetensors'), partial);
    await expect((await create({ ewc: join(dir, 'fp.safetensors'), epochs: 1 })).fit(train)).rejects.toMatchObject({ code: 'ERR_WEIGHTS_MISMATCH', message: expect.stringContaining(trainable[0]) });
    const neg = fisher(1);
    neg[trainable[3]].data[7] = -1;
    await writeSafetensors(join(dir, 'fn.safetensors'), neg);
    await expect((await create({ ewc: join(dir, 'fn.safetensors'), epochs: 1 })).fit(train)).rejects.toMatchObject({ code: 'ERR_INVALID_FILE', message: expect.stringContaining(`${trainable[3]}'[7]`) });
  }, 180_000);

  it('save / load carries the fine-tuned network and the checkpoints (format version 2); a version-1 file still loads', async () => {
    const det = await create({ epochs: 2, ses: true, sesEvery: 1 });
    await det.fit(train);
    const p = (await det.predict(test)).map((x) => x.predScore);
    const file = join(dir, 'panda.anomalens');
    await det.save(file);
    const saved = await readSafetensors(file);
    expect(saved.metadata.version).toBe('2');
    expect(Object.keys(saved.tensors)).toContain('state.c1.net.layer4.1.conv2.weight');
    expect(Object.keys(saved.tensors).some((n) => n.includes('layer2.'))).toBe(false);
    const back = await Detector.load(file);
    expect((await back.predict(test)).map((x) => x.predScore)).toEqual(p);

    // A DN2 detector's layout did not change between versions 1 and 2.
    const dn2 = await Detector.create({ method: 'dn2', arch: 'resnet18', weights, size: S });
    await dn2.fit(train);
    const v2 = join(dir, 'dn2.anomalens');
    await dn2.save(v2);
    const f = await readSafetensors(v2);
    const v1 = join(dir, 'dn2-v1.anomalens');
    await writeSafetensors(v1, Object.fromEntries(Object.entries(f.tensors).map(([n, t]) => [n, { shape: t.shape, data: t.data! }])), { ...f.metadata, version: '1' });
    const old = await Detector.load(v1);
    expect((await old.predict(test)).map((x) => x.predScore)).toEqual((await dn2.predict(test)).map((x) => x.predScore));
    await writeSafetensors(v1, { 'state.bank': { shape: [1, 1], data: new Float32Array(1) } }, { ...f.metadata, version: '3' });
    await expect(Detector.load(v1)).rejects.toThrow(/version 3; this anomalens reads versions 1 and 2/);
  }, 120_000);

  it('cancellation stops after the step in flight and leaves the last complete checkpoint', async () => {
    const ac = new AbortController();
    const checkpoint = join(dir, 'abort.safetensors');
    const det = await create({ epochs: 50, checkpoint, signal: ac.signal, onEpoch: (e: PandaEpochEvent) => e.epoch === 2 && ac.abort() });
    await expect(det.fit(train)).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    expect(det.fitted).toBe(false);
    const ck = await readSafetensors(checkpoint);
    expect(ck.metadata).toMatchObject({ epoch: '2', arch: 'resnet18' });
    expect(Object.keys(ck.tensors)).toContain('layer3.0.conv1.weight.momentum_buffer');
    expect(existsSync(`${checkpoint}.tmp`)).toBe(false);
  }, 120_000);

  it('refuses bad options with clear errors', async () => {
    await expect(create({ epochs: -1 })).rejects.toThrow(/options.methodOptions.epochs/);
    await expect(create({ sesScore: 'max' })).rejects.toThrow(/options.methodOptions.sesScore/);
    await expect(create({ onEpoch: 3 })).rejects.toThrow(/onEpoch must be a function/);
    await expect(create({ signal: {} })).rejects.toThrow(/AbortSignal/);
    const one = await create({ epochs: 1 });
    await expect(one.fit({ data: train.data.subarray(0, 3 * S * S), shape: [1, 3, S, S] })).rejects.toThrow(/at least 2 training images/);
    await expect((await create({ ewc: join(dir, 'absent.safetensors') })).fit(train)).rejects.toThrow(/absent.safetensors/);
  }, 60_000);
});
