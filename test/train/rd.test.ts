// Reverse Distillation's bottleneck and decoder against torch autograd (fixtures:
// test/fixtures/rd/make_fixtures.py, the original modules of hq-deng/RD4AD written out), for
// the three student kinds (resnet18: basic blocks; resnet50; wide_resnet50_2: inner width
// 1024), batch 2, the teacher taps of a 64 x 64 image, seeded weights: outputs in eval and
// training mode, the loss, every parameter's gradient, the running statistics after a
// training forward, one Adam step. Training-mode references are torch float64 with per-tensor
// tolerances (1e-4 for resnet18 throughout; wider for the bottleneck students, whose BN
// gradients are sums of nearly cancelling terms: see the script).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cosineMapLoss, cosinePixelLoss, loadCheckpoint, RD_ADAM, readSafetensors, saveCheckpoint, TrainRd, writeSafetensors, type RdTeacher, type Tensor4 } from '../../lib/index.js';
import { tempDir } from '../helpers/tmp.js';
import { seededInput, seededTensor, uniform } from '../helpers/seeded.js';
import { relError } from '../helpers/train-reference.js';

interface Summary { count: number; sum: number; sumsq: number; samples: number[]; tol?: number }
interface Case {
  tapShapes: [number, number, number, number][];
  shapes: number[][];
  eval: Summary[];
  train: Summary[];
  loss: number;
  grads: Record<string, Summary>;
  noGrad: string[];
  buffers?: Record<string, Summary>;
  adamDelta?: Record<string, Summary>;
  evalLoss: number;
  evalGrads: Record<string, Summary>;
  pixelLoss?: number;
  pixelGrads?: Record<string, Summary>;
}
const fixture = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'rd', 'expected.json'), 'utf8')) as {
  cases: Record<RdTeacher, Case>;
  pixelLossOp: { shape: [number, number, number, number]; loss: number; gradA: number[]; gradB: number[] };
};

// A tolerance above 1e-4 marks a tensor whose float32 value is ill-conditioned (torch's own
// float32 is that far from float64 / 10): there, 4 x that checks the wiring, not the precision,
// which resnet18 (BN in training mode and frozen) and resnet50 (BN frozen) check at 1e-4.
function expectSummary(actual: Float32Array, s: Summary, what: string) {
  const tol = s.tol === undefined || s.tol <= 1e-4 ? 1e-4 : 4 * s.tol;
  expect(actual.length, what).toBe(s.count);
  const k = s.samples.length;
  const picked = s.samples.map((_, i) => actual[Math.floor((i * s.count) / k)]);
  expect(relError(picked, s.samples), `${what} samples`).toBeLessThan(tol);
  let sum = 0;
  let sumsq = 0;
  for (const v of actual) {
    sum += v;
    sumsq += v * v;
  }
  expect(Math.abs(sumsq - s.sumsq) / s.sumsq, `${what} sum of squares`).toBeLessThan(tol);
  expect(Math.abs(sum - s.sum), `${what} sum`).toBeLessThan(tol * Math.sqrt(s.count * s.sumsq));
}

function seededRd(kind: RdTeacher): TrainRd {
  const rd = new TrainRd(kind);
  for (const name of rd.tensorNames()) rd.setTensor(name, seededTensor(name, rd.shape(name)));
  return rd;
}

function taps(c: Case): Tensor4[] {
  return c.tapShapes.map((s, i) => ({ data: seededInput(s, `f${i + 1}`), shape: s }));
}

describe('Reverse Distillation bottleneck + decoder against torch autograd', () => {
  for (const [kind, c] of Object.entries(fixture.cases) as [RdTeacher, Case][]) {
    it(`${kind}: outputs (eval, train), loss, every gradient${c.adamDelta ? ', running statistics, one Adam step' : ''}`, async () => {
      const rd = seededRd(kind);
      const f = taps(c);
      const ev = await rd.forward(f);
      ev.forEach((o, i) => {
        expect(o.shape).toEqual(c.shapes[i]);
        expectSummary(o.data, c.eval[i], `eval output ${i}`);
      });
      expect(rd.keptFloats()).toBe(0);
      const tr = await rd.forward(f, { bnTrain: true });
      tr.forEach((o, i) => expectSummary(o.data, c.train[i], `train output ${i}`));
      for (const [b, s] of Object.entries(c.buffers ?? {})) expectSummary(rd.buffers.value(b), s, b);
      // The step starts from the seeded running statistics, as torch's does.
      for (const b of rd.buffers.names()) rd.setTensor(b, seededTensor(b, rd.shape(b)));
      const before = new Map(Object.keys(c.adamDelta ?? {}).map((p) => [p, rd.params.value(p)]));
      const { loss, scaleLosses } = await rd.trainStep(f, RD_ADAM);
      expect(Math.abs(loss - c.loss) / c.loss).toBeLessThan(1e-5);
      expect(scaleLosses.reduce((a, b) => a + b, 0)).toBeCloseTo(loss, 12);
      for (const p of rd.params.names()) {
        const want = c.grads[p];
        if (!want) {
          expect(c.noGrad, p).toContain(p);
          expect(rd.params.grad(p), `${p} gets no gradient`).toBeNull();
          continue;
        }
        expectSummary(rd.params.grad(p)!, want, `grad ${p}`);
      }
      expect(c.noGrad.sort()).toEqual(['bn.bn4.bias', 'bn.bn4.weight', 'bn.conv4.weight']);
      // Adam's first step is lr * g / (|g| + eps) per element: that of our own gradient (to the
      // float32 rounding of p + delta),
      // and torch's within 1e-3 of lr (elements whose |g| is near eps amplify the 1e-4 of g).
      for (const [p, s] of Object.entries(c.adamDelta ?? {})) {
        const now = rd.params.value(p);
        const b = before.get(p)!;
        const g = rd.params.grad(p)!;
        const delta = now.map((v, i) => v - b[i]);
        const formula = g.map((v) => (-RD_ADAM.lr * v) / (Math.abs(v) + RD_ADAM.eps));
        expect(relError(delta, formula), `Adam step ${p} against its formula`).toBeLessThan(1e-4);
        expectSummary(delta, { ...s, tol: 1e-3 }, `Adam step ${p}`);
        expect(rd.params.info(p).step).toBe(1);
      }
    }, 120_000);
  }
});

// The wide student is ill-conditioned even so (torch float32 is 1e-3 to 2e-2 from float64): its
// wiring is checked by the training-mode case above.
describe('Reverse Distillation backward with BN frozen (well conditioned: resnet18, resnet50)', () => {
  for (const kind of ['resnet18', 'resnet50'] as const) {
    const c = fixture.cases[kind];
    it(`${kind}: every gradient, BN frozen`, async () => {
      const rd = seededRd(kind);
      const f = taps(c);
      const out = await rd.forward(f, { record: true });
      const { loss, grads } = await cosineMapLoss(f.map((t, i) => ({ a: t.data, b: out[i].data, n: t.shape[0] })));
      expect(Math.abs(loss - c.evalLoss) / c.evalLoss).toBeLessThan(1e-5);
      await rd.backward(grads.map((g) => g.b));
      for (const [p, s] of Object.entries(c.evalGrads)) expectSummary(rd.params.grad(p)!, s, `grad ${p}`);
      expect(Math.max(...Object.values(c.evalGrads).map((s) => s.tol ?? 0))).toBe(1e-4);
      for (const b of rd.buffers.names()) expect(relError(rd.buffers.value(b), seededTensor(b, rd.shape(b))), `${b} untouched`).toBe(0);
    }, 120_000);
  }
});

describe("the paper's per-pixel loss (an option)", () => {
  it('cosinePixelLoss against torch float64 autograd, a zero vector included (the eps clamp)', async () => {
    const o = fixture.pixelLossOp;
    const count = o.shape.reduce((a, b) => a * b, 1);
    const a = Float32Array.from(uniform('pa', count), (u) => 2 * u - 1);
    const b = Float32Array.from(uniform('pb', count), (u) => 2 * u - 1);
    const [, c, h, w] = o.shape;
    for (let ch = 0; ch < c; ch++) b[((1 * c + ch) * h + 2) * w + 3] = 0;
    const r = await cosinePixelLoss(a, b, o.shape);
    expect(Math.abs(r.loss - o.loss) / o.loss).toBeLessThan(1e-6);
    expect(relError(r.gradA, o.gradA)).toBeLessThan(1e-5);
    expect(relError(r.gradB, o.gradB)).toBeLessThan(1e-5);
    await expect(cosinePixelLoss(a, b, [2, 5, 3, 8])).rejects.toThrow(/a must have|elements/);
  });

  it('resnet18 step with the per-pixel loss: every gradient against torch float64 (1e-4)', async () => {
    const c = fixture.cases.resnet18;
    const rd = seededRd('resnet18');
    const { loss } = await rd.trainStep(taps(c), { lr: 0 }, 'pixel');
    expect(Math.abs(loss - c.pixelLoss!) / c.pixelLoss!).toBeLessThan(1e-5);
    for (const [p, s] of Object.entries(c.pixelGrads!)) expectSummary(rd.params.grad(p)!, s, `grad ${p}`);
    expect(Math.max(...Object.values(c.pixelGrads!).map((s) => s.tol ?? 0))).toBe(1e-4);
  });
});

describe('Reverse Distillation step-level API', () => {
  const c = fixture.cases.resnet18;

  it('forward (recorded) + cosineMapLoss + backward gives the same gradients as trainStep', async () => {
    const a = seededRd('resnet18');
    const b = seededRd('resnet18');
    const f = taps(c);
    const out = await a.forward(f, { bnTrain: true, record: true });
    expect(a.keptFloats()).toBeGreaterThan(0);
    const { loss, grads } = await cosineMapLoss(f.map((t, i) => ({ a: t.data, b: out[i].data, n: t.shape[0] })));
    await a.backward(grads.map((g) => g.b));
    expect(a.keptFloats()).toBe(0);
    const step = await b.trainStep(f, { lr: 0 });
    expect(step.loss).toBeCloseTo(loss, 12);
    for (const p of a.params.names()) {
      const ga = a.params.grad(p);
      const gb = b.params.grad(p);
      if (ga === null) {
        expect(gb).toBeNull();
        continue;
      }
      expect(relError(ga, gb!), p).toBe(0);
    }
  });

  it('names are the original checkpoint\'s, flattened', () => {
    const rd = new TrainRd('wide_resnet50_2');
    const names = rd.tensorNames();
    expect(names).toContain('bn.bn_layer.0.downsample.0.weight');
    expect(names).toContain('bn.conv4.weight');
    expect(names).toContain('decoder.layer3.5.bn3.running_var');
    expect(names).toContain('decoder.layer1.0.upsample.1.running_mean');
    // The wide teacher's inner width is 1024 in the bottleneck (width_per_group 128 passed to BN_layer).
    expect(rd.shape('bn.bn_layer.0.conv2.weight')).toEqual([1024, 1024, 3, 3]);
    expect(rd.shape('decoder.layer1.0.conv2.weight')).toEqual([512, 512, 2, 2]);
    expect(rd.shape('decoder.layer1.0.upsample.0.weight')).toEqual([2048, 1024, 2, 2]);
    expect(names.filter((n) => n.startsWith('decoder.layer3.') && n.endsWith('.conv1.weight')).length).toBe(6);
    const r18 = new TrainRd('resnet18');
    expect(r18.shape('decoder.layer1.0.conv1.weight')).toEqual([512, 256, 2, 2]);
    expect(r18.shape('bn.bn_layer.0.conv1.weight')).toEqual([512, 768, 3, 3]);
    // resnet34 (not in the fixtures): basic blocks, 3 bottleneck blocks, decoder [3, 4, 6].
    const r34 = new TrainRd('resnet34').tensorNames();
    expect(r34.filter((n) => /^bn\.bn_layer\.\d+\.conv1\.weight$/.test(n)).length).toBe(3);
    for (const [layer, blocks] of [[1, 3], [2, 4], [3, 6]])
      expect(r34.filter((n) => new RegExp(`^decoder\\.layer${layer}\\.\\d+\\.conv1\\.weight$`).test(n)).length).toBe(blocks);
  });

  it('initialize: the original init (kaiming normal fan_out; transposed convs torch default; BN 1, 0)', () => {
    const rd = new TrainRd('resnet18');
    rd.initialize(7);
    const w = rd.tensor('bn.bn_layer.0.conv1.weight');
    let ss = 0;
    for (const v of w) ss += v * v;
    expect(Math.sqrt(ss / w.length)).toBeCloseTo(Math.sqrt(2 / (512 * 9)), 3);
    const t = rd.tensor('decoder.layer1.0.conv1.weight');
    const bound = 1 / Math.sqrt(256 * 4);
    let max = 0;
    for (const v of t) max = Math.max(max, Math.abs(v));
    expect(max).toBeLessThanOrEqual(bound);
    expect(max).toBeGreaterThan(0.99 * bound);
    expect([...rd.tensor('bn.bn1.weight')].every((v) => v === 1)).toBe(true);
    expect([...rd.tensor('decoder.layer2.0.bn1.running_var')].every((v) => v === 1)).toBe(true);
    const again = new TrainRd('resnet18');
    again.initialize(7);
    expect(relError(again.tensor('bn.conv1.weight'), rd.tensor('bn.conv1.weight'))).toBe(0);
  });

  it('refuses bad input with errors naming it', async () => {
    const rd = new TrainRd('resnet18');
    const f = taps(c);
    expect(() => new TrainRd('resnet152' as RdTeacher)).toThrow(/teacher/);
    await expect(rd.forward([f[0], f[1]])).rejects.toThrow(/3 teacher taps/);
    await expect(rd.forward([f[1], f[1], f[2]])).rejects.toThrow(/features\[0\] must have 64 channels/);
    const odd = [[2, 64, 18, 18], [2, 128, 9, 9], [2, 256, 5, 5]].map((s) => ({ data: new Float32Array(s.reduce((a, b) => a * b)), shape: s })) as Tensor4[];
    await expect(rd.forward(odd)).rejects.toThrow(/multiple of 32/);
    await expect(rd.backward([new Float32Array(1), new Float32Array(1), new Float32Array(1)])).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(rd.trainStep(f, { lr: -1 })).rejects.toThrow(/adam.lr/);
  });
});

describe('Reverse Distillation checkpoints (lib/train/checkpoint.ts)', () => {
  const c = fixture.cases.resnet18;

  it("carry Adam's state by torch's names; a partial state is refused and nothing is set", async () => {
    const { dir, cleanup } = tempDir();
    try {
      const a = seededRd('resnet18');
      await a.trainStep(taps(c), RD_ADAM);
      await a.trainStep(taps(c), RD_ADAM);
      const path = join(dir, 'rd.safetensors');
      await saveCheckpoint(a, path, { epoch: '1' }, { optimizer: 'adam' });
      const file = await readSafetensors(path);
      expect(file.metadata).toMatchObject({ format: 'anomalens-rd-student', teacher: 'resnet18', optimizer: 'adam', epoch: '1' });
      // bn.conv4 / bn.bn4 never get a gradient, so (as in torch) they have no state.
      expect(file.tensors['bn.conv4.weight.exp_avg']).toBeUndefined();
      expect(Array.from(file.tensors['decoder.layer3.0.conv1.weight.step'].data!)).toEqual([2]);
      const b = new TrainRd('resnet18');
      await loadCheckpoint(b, path, { unexpected: 'refuse' });
      for (const p of a.params.names()) {
        expect(relError(b.params.value(p), a.params.value(p)), p).toBe(0);
        expect(b.params.info(p).step, p).toBe(a.params.info(p).step);
        const s = a.params.state(p, 'exp_avg_sq');
        if (s) expect(relError(b.params.state(p, 'exp_avg_sq')!, s), p).toBe(0);
      }
      // The student alone (optimizer: false) and a partial state.
      const fresh = new TrainRd('resnet18');
      await loadCheckpoint(fresh, path, { optimizer: false });
      expect(fresh.params.info('bn.conv1.weight').step).toBe(0);
      const partial = join(dir, 'partial.safetensors');
      const t = Object.fromEntries(Object.entries(file.tensors).filter(([k]) => k !== 'bn.conv1.weight.exp_avg_sq').map(([k, v]) => [k, { shape: v.shape, data: v.data! }]));
      await writeSafetensors(partial, t);
      const target = new TrainRd('resnet18');
      const before = target.tensor('decoder.layer1.0.conv1.weight');
      await expect(loadCheckpoint(target, partial)).rejects.toMatchObject({ code: 'ERR_WEIGHTS_MISMATCH', message: expect.stringMatching(/missing bn\.conv1\.weight\.exp_avg_sq/) });
      expect(relError(target.tensor('decoder.layer1.0.conv1.weight'), before)).toBe(0);
      await expect(saveCheckpoint(a, path, {}, { optimizer: 'rmsprop' as 'adam' })).rejects.toThrow(/options.optimizer must be one of 'sgd', 'adam'/);
    } finally {
      cleanup();
    }
  });
});
