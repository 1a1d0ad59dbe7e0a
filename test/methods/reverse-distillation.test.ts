// The reverse-distillation method: the anomaly map against the original's cal_anomaly_map +
// gaussian_filter (fixture: test/fixtures/rd/make_fixtures.py, resnet18 student, seeded
// weights, teacher taps of a 64 x 64 image), and the Detector glue on a seeded resnet18
// backbone: epochs with progress, checkpoints under the original names, save / load, a student
// loaded from a checkpoint scoring identically, cancellation.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Detector, numThreads, rdAnomalyMap, readSafetensors, saveCheckpoint, setNumThreads, TrainRd, writeSafetensors, type RdEpochEvent, type Tensor4 } from '../../lib/index.js';
import { loadStudent } from '../../lib/internal.js';
import { seededInput, seededTensor, writeSeededWeights } from '../helpers/seeded.js';
import { tempDir } from '../helpers/tmp.js';
import { relError } from '../helpers/train-reference.js';

function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

interface Summary { count: number; sum: number; sumsq: number; samples: number[] }
const fx = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'rd', 'expected.json'), 'utf8'));
const parity = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'backbone', 'parity.json'), 'utf8'));
const c18 = fx.cases.resnet18;

function expectSummary(actual: Float32Array, s: Summary, what: string, tol = 1e-5) {
  expect(actual.length, what).toBe(s.count);
  const k = s.samples.length;
  const picked = s.samples.map((_, i) => actual[Math.floor((i * s.count) / k)]);
  expect(relError(picked, s.samples), `${what} samples`).toBeLessThan(tol);
  let sum = 0;
  let sumsq = 0;
  for (const v of actual) sum += v, sumsq += v * v;
  expect(Math.abs(sumsq - s.sumsq) / s.sumsq, `${what} sum of squares`).toBeLessThan(tol);
  expect(Math.abs(sum - s.sum) / Math.abs(s.sum), `${what} sum`).toBeLessThan(tol);
}

const { dir, cleanup } = tempDir();
const weights = join(dir, 'r18.safetensors');
beforeAll(() => writeSeededWeights(weights, parity.archs.resnet18.tensors));
afterAll(cleanup);

describe('Reverse Distillation anomaly map against the original', () => {
  it('per-scale 1 - cos, align_corners resize, sum, Gaussian sigma 4, max: a student loaded by the original names', async () => {
    // The student as a PyTorch checkpoint converted to safetensors would hold it.
    const rd = new TrainRd('resnet18');
    const file = join(dir, 'student.safetensors');
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const name of rd.tensorNames()) tensors[name] = { shape: rd.shape(name), data: seededTensor(name, rd.shape(name)) };
    tensors['bn.bn1.num_batches_tracked'] = { shape: [1], data: new Float32Array([3]) };
    await writeSafetensors(file, tensors);
    loadStudent(rd, (await readSafetensors(file)).tensors, file);
    const f: Tensor4[] = c18.tapShapes.map((s: Tensor4['shape'], i: number) => ({ data: seededInput(s, `f${i + 1}`), shape: s }));
    const s = await rd.forward(f);
    const n = fx.n;
    const size: [number, number] = [fx.image, fx.image];
    const hw = size[0] * size[1];
    const raw = await rdAnomalyMap(f, s, size, { sigma: 0 });
    const smooth = await rdAnomalyMap(f, s, size);
    for (let j = 0; j < n; j++) {
      expectSummary(raw.maps.subarray(j * hw, (j + 1) * hw), c18.maps.sum[j], `sum map ${j}`);
      expectSummary(smooth.maps.subarray(j * hw, (j + 1) * hw), c18.maps.smoothed[j], `smoothed map ${j}`);
      expect(Math.abs(smooth.scores[j] - c18.maps.scores[j]) / c18.maps.scores[j], `score ${j}`).toBeLessThan(1e-5);
    }
    // Each scale alone (mode 'add' of one scale is that scale's upsampled map).
    for (let i = 0; i < 3; i++) {
      const one = await rdAnomalyMap([f[i]], [s[i]], size, { sigma: 0 });
      for (let j = 0; j < n; j++) expectSummary(one.maps.subarray(j * hw, (j + 1) * hw), c18.maps.scales[i][j], `scale ${i} map ${j}`);
    }
    const mul = await rdAnomalyMap(f, s, size, { mode: 'mul', sigma: 0 });
    const parts = await Promise.all([0, 1, 2].map((i) => rdAnomalyMap([f[i]], [s[i]], size, { sigma: 0 })));
    for (const k of [0, 77, 4095, 8191]) expect(mul.maps[k]).toBeCloseTo(parts[0].maps[k] * parts[1].maps[k] * parts[2].maps[k], 6);
  });
});

// The converter of an original .pth checkpoint, where Debian's python3-torch is installed.
const torchPython = (() => {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (!torchPython) console.log('skipping the .pth converter test: /usr/bin/python3 with torch is not installed');

describe.skipIf(!torchPython)('scripts/rd_pth_to_safetensors.py', () => {
  it('converts an original {bn, decoder} checkpoint to names anomalens loads', async () => {
    const root = join(import.meta.dirname, '..', '..');
    const pth = join(dir, 'rd18.pth');
    const out = join(dir, 'rd18.safetensors');
    const make = `import sys, torch; sys.path.insert(0, ${JSON.stringify(join(root, 'test', 'fixtures', 'rd'))}); import make_fixtures as M; m = M.seeded_student('resnet18'); torch.save({'bn': m.bn.state_dict(), 'decoder': m.decoder.state_dict()}, ${JSON.stringify(pth)})`;
    execFileSync('/usr/bin/python3', ['-c', make], { stdio: 'ignore' });
    execFileSync('/usr/bin/python3', [join(root, 'scripts', 'rd_pth_to_safetensors.py'), pth, out], { stdio: 'ignore' });
    const rd = new TrainRd('resnet18');
    loadStudent(rd, (await readSafetensors(out)).tensors, out);
    for (const name of rd.tensorNames()) expect(relError(rd.tensor(name), seededTensor(name, rd.shape(name))), name).toBe(0);
  }, 60_000);
});

describe('reverse-distillation detector', () => {
  const train: Tensor4 = { data: seededInput([5, 3, 64, 64], 'rd-train'), shape: [5, 3, 64, 64] };
  const test: Tensor4 = { data: seededInput([3, 3, 64, 64], 'rd-test'), shape: [3, 3, 64, 64] };

  it('trains epochs with progress and checkpoints; save / load and a student from the checkpoint score identically', async () => {
    const events: RdEpochEvent[] = [];
    const checkpoint = join(dir, 'ckpt.safetensors');
    const det = await Detector.create({
      method: 'reverse-distillation', arch: 'resnet18', weights, size: 64, batchSize: 2,
      methodOptions: { epochs: 2, batchSize: 2, checkpoint, onEpoch: (e: RdEpochEvent) => events.push(e) },
    });
    await det.fit(train);
    expect(events.map((e) => e.epoch)).toEqual([1, 2]);
    for (const e of events) {
      expect(e.epochs).toBe(2);
      expect(Number.isFinite(e.loss) && e.loss > 0 && e.loss < 3).toBe(true);
      expect(e.imagesPerSecond).toBeGreaterThan(0);
    }
    expect(events[1].etaSeconds).toBe(0);
    const p = await det.predict(test);
    expect(p).toHaveLength(3);
    for (const r of p) {
      expect(r.anomalyMap).toHaveLength(64 * 64);
      let m = -Infinity;
      for (const v of r.anomalyMap!) m = Math.max(m, v);
      expect(r.predScore).toBe(m);
    }
    const ck = await readSafetensors(checkpoint);
    expect(ck.metadata.epoch).toBe('2');
    expect(Object.keys(ck.tensors)).toContain('decoder.layer3.1.bn2.running_var');
    expect(Object.keys(ck.tensors)).toContain('bn.conv4.weight');

    const file = join(dir, 'rd.anomalens');
    await det.save(file);
    const back = await Detector.load(file);
    const q = await back.predict(test);
    q.forEach((r, i) => {
      expect(r.predScore).toBe(p[i].predScore);
      expect(relError(r.anomalyMap!, p[i].anomalyMap!)).toBe(0);
    });
    const fromCk = await Detector.create({ method: 'reverse-distillation', arch: 'resnet18', weights, size: 64, batchSize: 2, methodOptions: { epochs: 0, student: checkpoint } });
    await fromCk.fit(train);
    const r = await fromCk.predict(test);
    r.forEach((x, i) => expect(x.predScore).toBe(p[i].predScore));
  }, 120_000);

  for (const loss of ['map', 'pixel'] as const)
    it(`the loss falls over epochs on a fixed set (loss '${loss}')`, async () => {
      const losses: number[] = [];
      const det = await Detector.create({
        method: 'reverse-distillation', arch: 'resnet18', weights, size: 64,
        methodOptions: { epochs: 4, batchSize: 5, loss, onEpoch: (e: RdEpochEvent) => losses.push(e.loss) },
      });
      await det.fit(train);
      expect(losses[3]).toBeLessThan(losses[0]);
    }, 120_000);

  it('cancellation stops after the step in flight and leaves the last complete checkpoint', async () => {
    const ac = new AbortController();
    const checkpoint = join(dir, 'abort.safetensors');
    const det = await Detector.create({
      method: 'reverse-distillation', arch: 'resnet18', weights, size: 64,
      methodOptions: { epochs: 50, batchSize: 2, checkpoint, signal: ac.signal, onEpoch: (e: RdEpochEvent) => e.epoch === 1 && ac.abort(new Error('stop')) },
    });
    await expect(det.fit(train)).rejects.toThrow('stop');
    expect(det.fitted).toBe(false);
    expect((await readSafetensors(checkpoint)).metadata.epoch).toBe('1');
    expect(existsSync(`${checkpoint}.tmp`)).toBe(false);
  }, 120_000);

  it('resume: 4 epochs straight equal 2 epochs, a checkpoint, and 2 resumed epochs in a new detector, bit for bit', async () => {
    // One thread: oneDNN's and our reductions then run in one fixed order in both runs.
    const threads = numThreads();
    setNumThreads(1);
    try {
      const opts = { method: 'reverse-distillation', arch: 'resnet18', weights, size: 64, batchSize: 2 } as const;
      const straight = await Detector.create({ ...opts, methodOptions: { epochs: 4, batchSize: 2, seed: 3 } });
      await straight.fit(train);
      const half = join(dir, 'half.safetensors');
      const first = await Detector.create({ ...opts, methodOptions: { epochs: 2, batchSize: 2, seed: 3, checkpoint: half } });
      await first.fit(train);
      const ck = await readSafetensors(half);
      expect(ck.metadata).toMatchObject({ epoch: '2', optimizer: 'adam', teacher: 'resnet18', seed: '3', batchSize: '2' });
      // Adam's state by torch's names: 3 images, batches of 2 -> 2 steps per epoch, 4 steps.
      expect(ck.tensors['decoder.layer1.0.conv2.weight.exp_avg'].shape).toEqual(ck.tensors['decoder.layer1.0.conv2.weight'].shape);
      expect(ck.tensors['bn.bn1.weight.exp_avg_sq'].shape).toEqual([ck.tensors['bn.bn1.weight'].shape[0]]);
      expect(ck.tensors['bn.conv1.weight.step'].shape).toEqual([]);
      expect(ck.tensors['bn.conv1.weight.step'].data![0]).toBe(2 * Math.ceil(train.shape[0] / 2));
      const events: RdEpochEvent[] = [];
      const resumed = await Detector.create({ ...opts, methodOptions: { epochs: 4, batchSize: 2, seed: 3, resume: half, onEpoch: (e: RdEpochEvent) => events.push(e) } });
      await resumed.fit(train);
      expect(events.map((e) => e.epoch)).toEqual([3, 4]);
      const a = (await straight.save(join(dir, 'straight.anomalens')), await readSafetensors(join(dir, 'straight.anomalens')));
      const b = (await resumed.save(join(dir, 'resumed.anomalens')), await readSafetensors(join(dir, 'resumed.anomalens')));
      const names = Object.keys(a.tensors).filter((n) => n.includes('bn.') || n.includes('decoder.'));
      expect(names.length).toBeGreaterThan(100);
      for (const n of names) expect(firstDifference(b.tensors[n].data!, a.tensors[n].data!), n).toBe(-1);
      // The restored state matters: the same file with Adam's step counts set back to 1 (the
      // bias corrections of a fresh optimiser) resumes to a different student.
      const early = join(dir, 'early.safetensors');
      await writeSafetensors(early, Object.fromEntries(Object.entries(ck.tensors).map(([k, t]) => [k, { shape: t.shape, data: k.endsWith('.step') ? new Float32Array([1]) : t.data! }])), ck.metadata);
      const off = await Detector.create({ ...opts, methodOptions: { epochs: 4, batchSize: 2, seed: 3, resume: early } });
      await off.fit(train);
      const c = (await off.save(join(dir, 'off.anomalens')), await readSafetensors(join(dir, 'off.anomalens')));
      expect(names.some((n) => firstDifference(c.tensors[n].data!, a.tensors[n].data!) !== -1)).toBe(true);
    } finally {
      setNumThreads(threads);
    }
  }, 180_000);

  it('resume refuses another teacher, a student without Adam state, and a checkpoint beyond epochs; at epochs it trains nothing', async () => {
    const half = join(dir, 'half.safetensors');
    const mk = (methodOptions: Record<string, unknown>) =>
      Detector.create({ method: 'reverse-distillation', arch: 'resnet18', weights, size: 64, batchSize: 2, methodOptions });
    // Another teacher's checkpoint: by the metadata, and by the tensors when the metadata says nothing.
    const rd34 = new TrainRd('resnet34');
    rd34.initialize(1);
    const r34 = join(dir, 'rd34.safetensors');
    await saveCheckpoint(rd34, r34, { epoch: '2' });
    await expect((await mk({ epochs: 4, resume: r34 })).fit(train)).rejects.toMatchObject({ code: 'ERR_WEIGHTS_MISMATCH', message: expect.stringMatching(/holds a resnet34 .* teacher is resnet18/) });
    const file = await readSafetensors(r34);
    const anonymous = join(dir, 'anonymous.safetensors');
    await writeSafetensors(anonymous, Object.fromEntries(Object.entries(file.tensors).map(([k, t]) => [k, { shape: t.shape, data: t.data! }])), { epoch: '2' });
    await expect((await mk({ epochs: 4, resume: anonymous })).fit(train)).rejects.toMatchObject({
      code: 'ERR_WEIGHTS_MISMATCH', message: expect.stringMatching(/does not fit a resnet18 Reverse Distillation student: .*unexpected bn\./),
    });
    // A student without Adam's state (as converted from the original's .pth): student yes, resume no.
    const plain = join(dir, 'plain.safetensors');
    const rd = new TrainRd('resnet18');
    rd.initialize(5);
    await writeSafetensors(plain, Object.fromEntries(rd.tensorNames().map((n) => [n, { shape: rd.shape(n), data: rd.tensor(n) }])));
    await expect((await mk({ epochs: 4, resume: plain })).fit(train)).rejects.toMatchObject({ code: 'ERR_WEIGHTS_MISMATCH', message: expect.stringMatching(/has no Adam state.*options.methodOptions.student/) });
    await (await mk({ epochs: 0, student: plain })).fit(train);
    await (await mk({ epochs: 0, student: half })).fit(train);
    // Beyond epochs: refused; at epochs: nothing to train, the checkpoint's student scores.
    await expect((await mk({ epochs: 1, resume: half })).fit(train)).rejects.toThrow(/after epoch 2, beyond options.methodOptions.epochs 1/);
    const events: RdEpochEvent[] = [];
    const done = await mk({ epochs: 2, resume: half, onEpoch: (e: RdEpochEvent) => events.push(e) });
    await done.fit(train);
    expect(events).toEqual([]);
    const fromStudent = await mk({ epochs: 0, student: half });
    await fromStudent.fit(train);
    const [p, q] = [await done.predict(test), await fromStudent.predict(test)];
    p.forEach((r, i) => expect(r.predScore).toBe(q[i].predScore));
    await expect(mk({ epochs: 2, resume: half, student: half })).rejects.toThrow(/exclude each other/);
  }, 120_000);

  it('refuses bad options and sizes with clear errors', async () => {
    await expect(Detector.create({ method: 'reverse-distillation', arch: 'resnet18', weights, methodOptions: { epochs: -1 } })).rejects.toThrow(/epochs/);
    await expect(Detector.create({ method: 'reverse-distillation', arch: 'resnet18', weights, methodOptions: { amapMode: 'max' } })).rejects.toThrow(/amapMode/);
    await expect(Detector.create({ method: 'reverse-distillation', arch: 'resnet18', weights, methodOptions: { loss: 'l2' } })).rejects.toThrow(/methodOptions.loss/);
    await expect(Detector.create({ method: 'reverse-distillation', arch: 'resnet18', weights, methodOptions: { signal: {} } })).rejects.toThrow(/AbortSignal/);
    const det = await Detector.create({ method: 'reverse-distillation', arch: 'resnet18', weights, size: 72, methodOptions: { epochs: 1 } });
    await expect(det.fit({ data: seededInput([2, 3, 72, 72]), shape: [2, 3, 72, 72] })).rejects.toThrow(/multiple of 32/);
  }, 60_000);
});
