// The empirical diagonal Fisher against torch autograd (fixtures: test/fixtures/train/make_fisher.py,
// float64, one backward per sample): ResNet-18 (layer3 / layer4) and ResNet-50 v2 to stage3 (stage3)
// with a given head, and ResNet-18 through a fitted softmax-regression head (the head itself
// against the script's float64 fit), each Fisher tensor within 1e-4 relative (sum, sum of squares,
// projections, samples, whole small tensors). Also: the cached prefix equals running every sample
// from its image, the trainable set follows frozenPrefixes, the net's freezing is restored, bad
// input is refused, the file round-trips and bad files are refused, and the CLI on a tiny
// labelled folder of PNGs writes a file that readFisher accepts.
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  TrainResnet, computeFisher, fitLinearHead, pandaFrozenPrefixes, pooledFeatures, readFisher, readSafetensors,
  writeFisher, writeSafetensors, type FisherResult, type ResnetTap, type TrainableArch,
} from '../../lib/index.js';
import { runCli } from '../helpers/cli.js';
import { missing, resnet50v2Weights } from '../helpers/shared-data.js';
import { seededInput, seededTensor, uniform, writeSeededWeights } from '../helpers/seeded.js';
import { tempDir } from '../helpers/tmp.js';
import { relError } from '../helpers/train-reference.js';

interface Summary { count: number; sum: number; sumsq: number; samples: number[]; proj?: number[]; full?: number[] }
interface Case {
  arch: TrainableArch; lastTap?: ResnetTap; shape: [number, number, number, number]; classes: number; labels: number[];
  meanLoss: number; accuracy: number; fisher: Record<string, Summary>;
  head?: { weight: Summary; bias: number[]; trainAccuracy: number; loss: number; foldBias: number[][]; fitAccuracy: number };
  fit?: { l2: number; iterations: number }; folds?: number;
}
const fixture = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'train', 'fisher.json'), 'utf8')) as { cases: Record<string, Case> };

function seededNet(arch: TrainableArch, lastTap?: ResnetTap): TrainResnet {
  const net = new TrainResnet(arch, { lastTap });
  for (const name of net.tensorNames()) net.setTensor(name, seededTensor(name, (net.params.names().includes(name) ? net.params : net.buffers).info(name).shape));
  return net;
}

function givenHead(c: Case, d: number) {
  return { weight: seededTensor('fisher_head.weight', [c.classes, d]), bias: seededTensor('fisher_head.bias', [c.classes]) };
}

/** Signed or not: sum (scaled by the norm), sum of squares, projections, samples and full values within tol. */
function expectSummary(a: Float32Array, s: Summary, what: string, tol = 1e-4) {
  expect(a.length, what).toBe(s.count);
  let sum = 0;
  let sumsq = 0;
  for (const v of a) (sum += v), (sumsq += v * v);
  expect(Math.abs(sumsq - s.sumsq) / s.sumsq, `${what} sum of squares`).toBeLessThan(tol);
  expect(Math.abs(sum - s.sum), `${what} sum`).toBeLessThan(tol * Math.sqrt(s.count * s.sumsq));
  (s.proj ?? []).forEach((want, j) => {
    const u = uniform(`proj${j}`, a.length);
    let p = 0;
    for (let i = 0; i < a.length; i++) p += a[i] * u[i];
    expect(Math.abs(p - want) / Math.abs(want), `${what} projection ${j}`).toBeLessThan(tol);
  });
  const k = s.samples.length;
  const picked = s.samples.map((_, i) => a[Math.floor((i * s.count) / k)]);
  if (s.samples.some((v) => v !== 0)) expect(relError(picked, s.samples), `${what} samples`).toBeLessThan(tol);
  if (s.full) expect(relError(a, s.full), `${what} in full`).toBeLessThan(tol);
}

function expectFisher(r: FisherResult, c: Case) {
  expect(Object.keys(r.fisher).sort()).toEqual(Object.keys(c.fisher).sort());
  for (const [name, s] of Object.entries(c.fisher)) {
    expectSummary(r.fisher[name], s, name);
    expect(r.fisher[name].every((v) => v >= 0), name).toBe(true);
  }
  expect(Math.abs(r.meanLoss - c.meanLoss) / c.meanLoss).toBeLessThan(1e-4);
  expect(r.accuracy).toBe(c.accuracy);
  expect(r.samples).toBe(c.labels.length);
}

describe('empirical diagonal Fisher against torch autograd', () => {
  for (const name of ['resnet18_given', 'resnet50_v2_given']) {
    it(`${name}: every trainable tensor, per-sample squared gradients of the cross-entropy`, async () => {
      const c = fixture.cases[name];
      const net = seededNet(c.arch, c.lastTap);
      const d = net.tapShape(net.lastTap, 1, 1, 1)[1];
      const r = await computeFisher(net, seededInput(c.shape, 'fisher_input'), c.shape, c.labels, { head: givenHead(c, d) });
      expectFisher(r, c);
      expect(r.startTap).toBe(net.arch.endsWith('_v2') ? 'stage2' : 'layer2');
      expect(r.head.fitted).toBe(false);
      expect(r.parameters).toBe(Object.values(c.fisher).reduce((a, s) => a + s.count, 0));
      // The net is left as found: nothing frozen, no activations kept, zero gradients.
      expect(net.params.names().filter((p) => net.params.info(p).frozen)).toEqual([]);
      expect(net.keptFloats()).toBe(0);
    }, 60_000);
  }

  it('resnet18_fit: the fitted softmax-regression head, and the Fisher through cross-fitted heads', async () => {
    const c = fixture.cases.resnet18_fit;
    const net = seededNet(c.arch);
    const x = seededInput(c.shape, 'fisher_input');
    const features = await pooledFeatures(net, x, c.shape);
    const head = await fitLinearHead(features, c.labels, c.fit);
    expect(relError(head.bias, c.head!.bias)).toBeLessThan(1e-4);
    expectSummary(head.weight, c.head!.weight, 'head weight');
    expect(head.trainAccuracy).toBe(c.head!.trainAccuracy);
    expect(Math.abs(head.loss - c.head!.loss) / c.head!.loss).toBeLessThan(1e-4);
    expect([head.classes, head.dim]).toEqual([c.classes, 512]);
    const r = await computeFisher(net, x, c.shape, c.labels, { fit: c.fit });
    expect([r.head.fitted, r.head.folds, r.head.heads.length]).toEqual([true, c.folds, c.folds]);
    r.head.heads.forEach((h, f) => expect(relError(h.bias, c.head!.foldBias[f]), `fold ${f}`).toBeLessThan(1e-4));
    expect(r.head.fitAccuracy).toBeCloseTo(c.head!.fitAccuracy, 12);
    expectFisher(r, c);
    // folds: 1 fits one head on every sample: fitLinearHead's.
    const one = await computeFisher(net, x, c.shape, c.labels, { fit: c.fit, folds: 1 });
    expect(relError(one.head.heads[0].weight, head.weight)).toBeLessThan(1e-6);
  }, 60_000);
});

describe('computeFisher', () => {
  const c = fixture.cases.resnet18_given;
  const x = seededInput(c.shape, 'fisher_input');
  let net: TrainResnet;
  let head: { weight: Float32Array; bias: Float32Array };
  let reference: FisherResult;
  beforeAll(async () => {
    net = seededNet('resnet18');
    head = givenHead(c, 512);
    reference = await computeFisher(net, x, c.shape, c.labels, { head, batchSize: 4 });
  }, 60_000);

  it('the cached frozen prefix equals running every sample from its image', async () => {
    const direct = await computeFisher(net, x, c.shape, c.labels, { head, cachePrefix: false });
    expect(direct.startTap).toBe('input');
    expect(reference.startTap).toBe('layer2');
    for (const [name, f] of Object.entries(reference.fisher)) expect(relError(direct.fisher[name], f), name).toBeLessThan(1e-6);
    expect(direct.meanLoss).toBeCloseTo(reference.meanLoss, 6);
  }, 60_000);

  it('covers the parameters outside frozenPrefixes, restores the freezing, and reports progress', async () => {
    net.params.freeze('conv1.');
    const progress: string[] = [];
    const r = await computeFisher(net, x, c.shape, c.labels, {
      head, frozenPrefixes: [...pandaFrozenPrefixes(net), 'layer3.'], onProgress: (done, total, phase) => progress.push(`${phase} ${done}/${total}`),
    });
    expect(net.params.names().filter((p) => net.params.info(p).frozen)).toEqual(['conv1.weight']);
    net.params.unfreeze('');
    expect(r.startTap).toBe('layer3');
    expect(Object.keys(r.fisher)).toEqual(Object.keys(reference.fisher).filter((n) => n.startsWith('layer4.')));
    // A parameter's Fisher does not depend on which others train.
    for (const [name, f] of Object.entries(r.fisher)) expect(relError(f, reference.fisher[name]), name).toBeLessThan(1e-6);
    expect(progress).toEqual(c.labels.map((_, i) => `fisher ${i + 1}/${c.labels.length}`));
  }, 60_000);

  it('refuses bad input with errors naming it', async () => {
    const run = (over: { images?: Float32Array; shape?: number[]; labels?: unknown; head?: unknown; options?: object }) =>
      computeFisher(net, over.images ?? x, (over.shape ?? c.shape) as [number, number, number, number], (over.labels ?? c.labels) as number[], { head, ...(over.head === undefined ? {} : { head: over.head }), ...over.options });
    await expect(run({ labels: [0, 0, 0, 0, 0, 0] })).rejects.toThrow(/labels must hold at least 2 classes, received 1/);
    await expect(run({ labels: [0, 1, 2, 3, 4, 0] })).rejects.toThrow(/labels\[4\] is 4, out of range for a head of 4 classes/);
    await expect(run({ labels: [0, 1, 2, 3, 0] })).rejects.toThrow(/labels must have 6 elements/);
    await expect(run({ labels: [0, 1, 2, 3, 0, 1.5] })).rejects.toThrow(/labels\[5\] must be an integer >= 0/);
    const nan = x.slice();
    nan[3 * 32 * 32 * 2 + 5] = NaN;
    await expect(run({ images: nan })).rejects.toThrow(/images\[6149\] is NaN \(image 2\)/);
    await expect(run({ shape: [5, 3, 32, 32] })).rejects.toThrow(/images must have 15360 elements, received 18432/);
    await expect(run({ shape: [6, 1, 32, 32] })).rejects.toThrow(/shape\[1\] must be 3/);
    await expect(run({ head: { weight: new Float32Array(4 * 511), bias: new Float32Array(4) } })).rejects.toThrow(/options.head.weight must be \[4, 512\]/);
    await expect(run({ head: { weight: new Float32Array(512), bias: new Float32Array(1) } })).rejects.toThrow(/at least 2 classes/);
    await expect(run({ options: { frozenPrefixes: [''] } })).rejects.toThrow(/leave no parameter/);
    await expect(run({ options: { folds: 2 } })).rejects.toThrow(/with options.head it must be 1, received 2/);
    await expect(computeFisher(net, x, c.shape, [0, 1, 0, 1, 0, 1], { folds: 2 })).rejects.toThrow(/outside fold 0 of 2 .* fewer than 2 classes/);
    await expect(fitLinearHead(new Float32Array(10), [0, 1, 1], {})).rejects.toThrow(/n \* d values for n = 3/);
    expect(net.params.names().filter((p) => net.params.info(p).frozen)).toEqual([]);
  });

  it('stops on its AbortSignal with ERR_ABORTED', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(computeFisher(net, x, c.shape, c.labels, { head, signal: ac.signal })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    const mid = new AbortController();
    let calls = 0;
    await expect(computeFisher(net, x, c.shape, c.labels, { head, signal: mid.signal, onProgress: () => ++calls === 2 && mid.abort() }))
      .rejects.toMatchObject({ code: 'ERR_ABORTED' });
    expect(calls).toBe(2);
    expect(net.keptFloats()).toBe(0);
  }, 60_000);
});

describe('Fisher files', () => {
  const { dir, cleanup } = tempDir();
  afterAll(cleanup);
  // To layer3 (PANDA trains layer3 alone there): 2 M values keep the files small.
  const net = new TrainResnet('resnet18', { lastTap: 'layer3' });
  const fisher: Record<string, Float32Array> = {};
  for (const [k, name] of net.params.names().filter((n) => n.startsWith('layer3.')).entries())
    fisher[name] = Float32Array.from({ length: net.params.info(name).shape.reduce((a, b) => a * b, 1) }, (_, i) => ((i * 7 + k) % 11) / 10);
  const shapeOf = (name: string) => net.params.info(name).shape;

  it('round-trips by parameter name, with metadata; other tensors are listed as ignored', async () => {
    const path = join(dir, 'f.safetensors');
    await writeFisher(path, net, fisher, { data: 'seeded' });
    const r = await readFisher(path, net);
    expect(Object.keys(r.fisher).sort()).toEqual(Object.keys(fisher).sort());
    for (const [n, f] of Object.entries(fisher)) expect(Buffer.compare(Buffer.from(r.fisher[n].buffer, r.fisher[n].byteOffset, r.fisher[n].byteLength), Buffer.from(f.buffer)), n).toBe(0);
    expect(r.metadata).toMatchObject({ data: 'seeded', format: 'anomalens-fisher', arch: 'resnet18' });
    expect(r.ignored).toEqual([]);
    const extra = join(dir, 'extra.safetensors');
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = { 'fc.weight': { shape: [2, 3], data: new Float32Array(6) } };
    for (const [n, f] of Object.entries(fisher)) tensors[n] = { shape: shapeOf(n), data: f };
    tensors['conv1.weight'] = { shape: shapeOf('conv1.weight'), data: new Float32Array(64 * 3 * 49) };
    await writeSafetensors(extra, tensors);
    const e = await readFisher(extra, net);
    expect(e.ignored).toEqual(['fc.weight']);
    expect('conv1.weight' in e.fisher).toBe(true);
  });

  it('refuses missing, mis-shaped, negative and non-finite tensors, naming them', async () => {
    const write = async (file: string, edit: (t: Record<string, { shape: number[]; data: Float32Array }>) => void) => {
      const t: Record<string, { shape: number[]; data: Float32Array }> = {};
      for (const [n, f] of Object.entries(fisher)) t[n] = { shape: shapeOf(n), data: f.slice() };
      edit(t);
      await writeSafetensors(join(dir, file), t);
      return join(dir, file);
    };
    const missing = await write('missing.safetensors', (t) => delete t['layer3.1.bn2.bias']);
    await expect(readFisher(missing, net)).rejects.toMatchObject({ code: 'ERR_WEIGHTS_MISMATCH', message: expect.stringMatching(/resnet18 up to layer3: missing the Fisher of layer3\.1\.bn2\.bias/) });
    const shaped = await write('shaped.safetensors', (t) => (t['layer3.0.bn1.weight'] = { shape: [2, 128], data: new Float32Array(256) }));
    await expect(readFisher(shaped, net)).rejects.toMatchObject({ code: 'ERR_WEIGHTS_MISMATCH', message: expect.stringMatching(/mis-shaped layer3\.0\.bn1\.weight \(expected \[256\], received \[2, 128\]\)/) });
    const negative = await write('negative.safetensors', (t) => (t['layer3.1.conv2.weight'].data[7] = -0.5));
    await expect(readFisher(negative, net)).rejects.toMatchObject({ code: 'ERR_INVALID_FILE', message: expect.stringMatching(/'layer3\.1\.conv2\.weight'\[7\] is -0\.5; a diagonal Fisher is finite and >= 0/) });
    const inf = await write('inf.safetensors', (t) => (t['layer3.0.bn1.bias'].data[0] = Infinity));
    await expect(readFisher(inf, net)).rejects.toMatchObject({ code: 'ERR_INVALID_FILE', message: expect.stringMatching(/'layer3\.0\.bn1\.bias'\[0\] is Infinity/) });
    // frozenPrefixes [] asks for every parameter.
    await expect(readFisher(join(dir, 'missing.safetensors'), net, { frozenPrefixes: [] })).rejects.toThrow(/missing the Fisher of conv1\.weight/);
  });

  it('writeFisher refuses names that are not parameters and negative values, leaving nothing', async () => {
    const path = join(dir, 'bad.safetensors');
    await expect(writeFisher(path, net, { 'fc.weight': new Float32Array(4) })).rejects.toMatchObject({ code: 'ERR_WEIGHTS_MISMATCH', message: expect.stringMatching(/'fc\.weight' is not a parameter of resnet18 up to layer3/) });
    await expect(writeFisher(path, net, { 'layer3.0.bn1.bias': new Float32Array(256).fill(-1) })).rejects.toThrow(/fisher\['layer3\.0\.bn1\.bias'\]\[0\] is -1/);
    await expect(writeFisher(path, net, { 'layer3.0.bn1.bias': new Float32Array(3) })).rejects.toThrow(/must have 256 elements/);
    expect(existsSync(path)).toBe(false);
  });
});

describe('anomalens fisher', () => {
  const { dir, cleanup } = tempDir();
  const parity = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'backbone', 'parity.json'), 'utf8'));
  const weights = join(dir, 'r18.safetensors');
  const withFc = join(dir, 'r18-fc.safetensors');
  const data = join(dir, 'labelled');
  const indexed = join(dir, 'indexed');
  beforeAll(async () => {
    await writeSeededWeights(weights, parity.archs.resnet18.tensors);
    await writeSeededWeights(withFc, [...parity.archs.resnet18.tensors, ['fc.weight', [10, 512]], ['fc.bias', [10]]]);
    for (const [root, names] of [[data, ['cat', 'dog']], [indexed, ['3', '7']]] as const) {
      for (const [k, name] of names.entries()) {
        mkdirSync(join(root, name), { recursive: true });
        for (let i = 0; i < 3; i++) {
          const px = Buffer.alloc(40 * 36 * 3);
          for (let j = 0; j < px.length; j++) px[j] = (j * (3 + k * 4) + i * 29 + ((j / 120) | 0) * (k + 1)) % 256;
          await sharp(px, { raw: { width: 40, height: 36, channels: 3 } }).png().toFile(join(root, name, `${i}.png`));
        }
      }
    }
  });
  afterAll(cleanup);

  it('fits a head when the weights have no classifier and writes a Fisher readFisher accepts', async () => {
    const out = join(dir, 'fisher.safetensors');
    const r = await runCli('fisher', '--arch', 'resnet18', '--weights', weights, '--data', data, '--out', out, '--size', '32', '--per-class', '2', '--json');
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ head: 'fit', folds: 2, classes: 2, samples: 4, size: 32, lastTap: 'layer4', startTap: 'layer2', tensors: 30 });
    expect(s.notes[0]).toMatch(/the weights have no classifier/);
    expect(s.largest).toHaveLength(3);
    const net = new TrainResnet('resnet18');
    const f = await readFisher(out, net);
    expect(Object.keys(f.fisher)).toHaveLength(30);
    expect(f.metadata).toMatchObject({ head: 'fit', folds: '2', classes: '["cat","dog"]', samples: '4', size: '32' });
    expect(Object.values(f.fisher).some((v) => v.some((e) => e > 0))).toBe(true);
  }, 60_000);

  it("uses the weights' classifier when the class folders are its indices", async () => {
    const out = join(dir, 'fisher-fc.safetensors');
    const r = await runCli('fisher', '--arch', 'resnet18', '--weights', withFc, '--data', indexed, '--out', out, '--size', '32', '--json', '--threads', '1');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ head: 'classifier', samples: 6, folds: 1, fitAccuracy: null });
    expect((await readSafetensors(out)).metadata.head).toBe('classifier');
  }, 60_000);

  const reason = missing(resnet50v2Weights);
  it.skipIf(reason)(`on the shared ResNet-50 v2 weights (to stage3): a fitted head, stage3's Fisher, finite and >= 0${reason ? ` (${reason})` : ''}`, async () => {
    const out = join(dir, 'fisher-r50v2.safetensors');
    const r = await runCli('fisher', '--arch', 'resnet50_v2', '--weights', resnet50v2Weights, '--data', data, '--out', out, '--size', '64', '--json');
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ head: 'fit', lastTap: 'stage3', startTap: 'stage2', tensors: 55, parameters: 7095296, samples: 6 });
    const f = await readFisher(out, new TrainResnet('resnet50_v2', { lastTap: 'stage3' }));
    expect(Object.keys(f.fisher).every((n) => n.startsWith('resnetv24_stage3_'))).toBe(true);
    expect(Object.values(f.fisher).reduce((a, v) => a + v.reduce((x, e) => x + e, 0), 0)).toBeGreaterThan(0);
  }, 120_000);
  if (reason) it('real-weights Fisher skipped', () => console.log(reason));

  it('usage errors: --head classifier without a classifier or with folders that are not its indices; one class', async () => {
    const out = join(dir, 'never.safetensors');
    let r = await runCli('fisher', '--arch', 'resnet18', '--weights', weights, '--data', data, '--out', out, '--size', '32', '--head', 'classifier');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--head classifier needs torchvision's fc\.weight \/ fc\.bias .*use --head fit/);
    r = await runCli('fisher', '--arch', 'resnet18', '--weights', withFc, '--data', data, '--out', out, '--size', '32', '--head', 'classifier');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/class folders must be named by the classifier's class index \(0\.\.9\), received 'cat'/);
    r = await runCli('fisher', '--arch', 'resnet18', '--weights', weights, '--data', join(data, 'cat'), '--out', out, '--size', '32');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/one subfolder of images per class \(at least 2\), received 0/);
    r = await runCli('fisher', '--arch', 'resnet9', '--data', data, '--out', out);
    expect(r.code).toBe(2);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.includes('never'))).toEqual([]);
  }, 60_000);
});
