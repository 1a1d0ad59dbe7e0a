// The trainable ResNet against torch autograd (fixtures: test/fixtures/train/make_resnet.py):
// ResNet-18, ResNet-50 and ResNet-50 v2 (to stage3, as the shared weights) with PANDA's frozen
// prefix and BN frozen, and ResNet-18 / ResNet-18 v2 all trainable
// with BN in training mode (at 64 x 64, see the script), at 2 x 3 x 32 x 32 with seeded weights: the layer4 output and every
// parameter gradient within 1e-4 relative (sampled elements, sum, sum of squares), running
// statistics after a training-mode forward; the constant-prefix cache (start at layer2's
// output) is exact; frozen prefixes keep nothing and get no gradient.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  PANDA_SGD, TrainResnet, compactnessLoss, compactnessStep, globalAvgPoolBackward, globalAvgPoolForward, type ResnetTap, type TrainableArch,
} from '../../lib/index.js';
import { seededInput, seededTensor, uniform } from '../helpers/seeded.js';

interface Summary { count: number; sum: number; sumsq: number; samples: number[] }
interface Case {
  arch: TrainableArch; lastTap?: ResnetTap; inputName?: string; bnTrain: boolean; frozen: string[]; shape: [number, number, number, number];
  outShape: number[]; output: Summary; grads: Record<string, Summary>; buffers?: Record<string, Summary>;
}
const fixture = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'train', 'resnet.json'), 'utf8')) as {
  cases: Record<string, Case>;
};

function expectSummary(actual: Float32Array, s: Summary, what: string, tol = 1e-4) {
  expect(actual.length, what).toBe(s.count);
  const k = s.samples.length;
  const picked = s.samples.map((_, i) => actual[Math.floor((i * s.count) / k)]);
  // The samples' largest error against the tensor's scale: the larger of the samples' largest
  // magnitude and the tensor's RMS. The samples sit at evenly spaced flat indices, which can all
  // land on a tensor's smallest entries (resnet18_v2_train's stage4 conv0 weight gradient: samples
  // ~5e-3 in a tensor of RMS 0.86), where float32 accumulation order alone moves them by 1e-4 of
  // their own size.
  let worst = 0;
  let scale = Math.sqrt(s.sumsq / s.count);
  for (let i = 0; i < k; i++) {
    worst = Math.max(worst, Math.abs(picked[i] - s.samples[i]));
    scale = Math.max(scale, Math.abs(s.samples[i]));
  }
  expect(worst / scale, `${what} samples`).toBeLessThan(tol);
  let sum = 0;
  let sumsq = 0;
  for (const v of actual) {
    sum += v;
    sumsq += v * v;
  }
  expect(Math.abs(sumsq - s.sumsq) / s.sumsq, `${what} sum of squares`).toBeLessThan(tol);
  expect(Math.abs(sum - s.sum), `${what} sum`).toBeLessThan(tol * Math.sqrt(s.count * s.sumsq));
}

/** The first index where a and b differ (bitwise as floats), or -1. */
function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function seededNet(arch: TrainableArch, lastTap?: ResnetTap): TrainResnet {
  const net = new TrainResnet(arch, { lastTap });
  for (const name of net.params.names()) net.setTensor(name, seededTensor(name, net.params.info(name).shape));
  for (const name of net.buffers.names()) net.setTensor(name, seededTensor(name, net.buffers.info(name).shape));
  return net;
}

function seededDy(count: number): Float32Array {
  const u = uniform('dy', count);
  return Float32Array.from(u, (v) => 2 * v - 1);
}

describe('trainable ResNet against torch autograd', () => {
  for (const [name, c] of Object.entries(fixture.cases)) {
    it(`${name}: output and parameter gradients`, async () => {
      const net = seededNet(c.arch, c.lastTap);
      for (const p of c.frozen) net.params.freeze(p);
      const out = await net.forward(seededInput(c.shape, c.inputName), c.shape, { bnTrain: c.bnTrain });
      expectSummary(out, c.output, 'output');
      await net.backward(seededDy(out.length));
      expect(net.keptFloats()).toBe(0);
      for (const p of net.params.names()) {
        const want = c.grads[p];
        if (!want) {
          expect(net.params.grad(p), `${p} is frozen`).toBeNull();
          continue;
        }
        // v2's data BN (batchnorm0, on the image itself) in training mode: its gradients are sums
        // over 8192 pixels per channel of terms that cancel to ~1e-4 of their magnitude (beta:
        // sum |terms| 1.3e4, result 0.16 .. 3.6), so float32 accumulation order shows at 1e-4.
        const dataBn = c.bnTrain && /^resnetv2\d_batchnorm0_/.test(p);
        expectSummary(net.params.grad(p)!, want, p, dataBn ? 1e-3 : 1e-4);
      }
      expect(Object.keys(c.grads).length).toBe(net.params.names().filter((p) => net.params.grad(p) !== null).length);
      for (const [b, s] of Object.entries(c.buffers ?? {})) expectSummary(net.buffers.value(b), s, b, 1e-5);
    });
  }
});

describe('frozen prefix and the constant-prefix cache', () => {
  it('starting at layer2 output gives the very same output and gradients (BN frozen)', async () => {
    const shape: [number, number, number, number] = [2, 3, 32, 32];
    const x = seededInput(shape);
    const prefix = seededNet('resnet18', 'layer2');
    prefix.params.freeze('');
    const l2 = await prefix.forward(x, shape);
    expect(prefix.keptFloats()).toBe(0); // nothing trainable: nothing kept
    const full = seededNet('resnet18');
    const cached = seededNet('resnet18');
    for (const net of [full, cached]) for (const p of ['conv1.', 'bn1.', 'layer1.', 'layer2.']) net.params.freeze(p);
    const a = await full.forward(x, shape);
    const b = await cached.forward(l2, full.tapShape('layer2', 2, 32, 32), { startTap: 'layer2' });
    expect(firstDifference(b, a)).toBe(-1);
    expect(cached.keptFloats()).toBe(full.keptFloats());
    const dy = seededDy(a.length);
    await full.backward(dy);
    await cached.backward(dy);
    for (const p of full.params.names()) {
      const ga = full.params.grad(p);
      const gb = cached.params.grad(p);
      expect(gb === null, p).toBe(ga === null);
      if (ga && gb) expect(firstDifference(gb, ga), p).toBe(-1);
    }
  });

  it('keeps fewer activations with a frozen prefix than with everything trainable', async () => {
    const shape: [number, number, number, number] = [2, 3, 32, 32];
    const net = seededNet('resnet18');
    await net.forward(seededInput(shape), shape);
    const all = net.keptFloats();
    for (const p of ['conv1.', 'bn1.', 'layer1.', 'layer2.']) net.params.freeze(p);
    await net.forward(seededInput(shape), shape);
    expect(net.keptFloats()).toBeLessThan(all / 2);
  });

  it('profiles where the time goes, per stage, op and pass', async () => {
    const shape: [number, number, number, number] = [2, 3, 32, 32];
    const net = seededNet('resnet18');
    for (const p of ['conv1.', 'bn1.', 'layer1.', 'layer2.']) net.params.freeze(p);
    net.resetProfile();
    const out = await net.forward(seededInput(shape), shape);
    await net.backward(seededDy(out.length));
    const prof = net.profile();
    expect(prof['layer3 conv forward']).toBeGreaterThan(0);
    expect(prof['layer4 batch norm backward']).toBeGreaterThan(0);
    expect(prof['stem max pool forward']).toBeGreaterThan(0);
    expect(prof['layer2 conv backward']).toBeUndefined(); // frozen prefix: forward only
    net.resetProfile();
    expect(net.profile()).toEqual({});
  });

  it('errors', async () => {
    expect(() => new TrainResnet('resnet50_v3' as TrainableArch)).toThrow(RangeError);
    expect(() => new TrainResnet('resnet50_v2', { lastTap: 'layer3' })).toThrow(/options.lastTap must be one of 'stage1'/);
    const net = new TrainResnet('resnet18', { lastTap: 'layer2' });
    await expect(net.backward(new Float32Array(4))).rejects.toThrow(/no forward/);
    await expect(net.forward(new Float32Array(10), [1, 3, 2, 2])).rejects.toThrow(/x must have 12 elements/);
    await expect(net.forward(new Float32Array(12), [1, 3, 2, 2], { startTap: 'layer1' })).rejects.toThrow(/64 channels/);
    const p = net.forward(new Float32Array(3 * 32 * 32), [1, 3, 32, 32]);
    expect(() => net.params.value('conv1.weight')).toThrow(expect.objectContaining({ code: 'ERR_BUSY' }));
    await p;
  });
});

describe("PANDA's optimisation step", () => {
  interface Steps { arch: TrainableArch; shape: [number, number, number, number]; steps: number; losses: number[]; norms: number[]; deltas: Record<string, Summary>; momentum: Record<string, Summary> }
  const steps = (fixture as unknown as { steps: Record<string, Steps> }).steps;
  for (const [name, c] of Object.entries(steps)) {
    it(`${name}: losses, clipped update and momentum as torch (eval mode, clip 1e-3, SGD)`, async () => {
      const net = seededNet(c.arch);
      for (const p of ['conv1.', 'bn1.', 'layer1.', 'layer2.']) net.params.freeze(p);
      const before = Object.fromEntries(net.params.names().map((p) => [p, net.params.value(p)]));
      const d = net.tapShape('layer4', 1, 1, 1)[1];
      const centre = Float32Array.from(uniform('centre', d), (v) => 0.5 * v);
      const x = seededInput(c.shape);
      for (let t = 0; t < c.steps; t++) {
        const r = await compactnessStep(net, x, c.shape, centre);
        expect(Math.abs(r.loss - c.losses[t]) / c.losses[t], `loss ${t}`).toBeLessThan(1e-5);
        expect(Math.abs(r.gradNorm! - c.norms[t]) / c.norms[t], `norm ${t}`).toBeLessThan(1e-4);
      }
      for (const p of net.params.names()) {
        const want = c.deltas[p];
        const now = net.params.value(p);
        if (!want) {
          expect(firstDifference(now, before[p]), `${p} is frozen`).toBe(-1);
          continue;
        }
        // The update is ~1e-5 of the parameter (clip 1e-3): after - before carries the float32
        // rounding of the parameter itself, ~1e-7 / 1e-5 relative; the momentum buffer is exact.
        expectSummary(now.map((v, i) => v - before[p][i]), want, `${p} update`, 1e-3);
        expectSummary(net.params.state(p, 'momentum_buffer')!, c.momentum[p], `${p} momentum`);
      }
    });
  }

  // The one-call native step runs the very ops of the step-level API in the same order: the
  // same features, loss, norm, parameters and momentum, bit for bit.
  it('the one-call step equals forward, pooling, loss, backward, clipping and SGD called one by one', async () => {
    const shape: [number, number, number, number] = [3, 128, 5, 5];
    const fused = seededNet('resnet18');
    const byParts = seededNet('resnet18');
    for (const net of [fused, byParts]) for (const p of ['conv1.', 'bn1.', 'layer1.', 'layer2.']) net.params.freeze(p);
    const centre = Float32Array.from(uniform('centre', 512), (v) => 0.5 * v);
    const x = Float32Array.from(seededInput(shape), (v) => Math.max(v, 0));
    for (let t = 0; t < 2; t++) {
      const r = await compactnessStep(fused, x, shape, centre, { startTap: 'layer2' });
      const out = await byParts.forward(x, shape, { startTap: 'layer2' });
      const fShape: [number, number, number, number] = [3, 512, out.length / (3 * 512), 1];
      const features = await globalAvgPoolForward(out, fShape);
      const { loss, grad } = await compactnessLoss(features, centre, 3, 512);
      await byParts.backward(await globalAvgPoolBackward(grad, fShape));
      const norm = await byParts.params.clipGradNorm(1e-3);
      await byParts.params.sgdStep(PANDA_SGD);
      expect(firstDifference(r.features, features), `features ${t}`).toBe(-1);
      expect(r.loss, `loss ${t}`).toBe(loss);
      expect(r.gradNorm, `norm ${t}`).toBe(norm);
    }
    for (const p of fused.params.names()) {
      expect(firstDifference(fused.params.value(p), byParts.params.value(p)), p).toBe(-1);
      const m = byParts.params.state(p, 'momentum_buffer');
      if (m) expect(firstDifference(fused.params.state(p, 'momentum_buffer')!, m), `${p} momentum`).toBe(-1);
    }
  });

  it('refuses bad input before changing anything', async () => {
    const net = seededNet('resnet18');
    for (const p of ['conv1.', 'bn1.', 'layer1.', 'layer2.']) net.params.freeze(p);
    const shape: [number, number, number, number] = [2, 128, 4, 4];
    const x = new Float32Array(2 * 128 * 16);
    const centre = new Float32Array(512);
    const before = net.params.value('layer4.1.conv2.weight');
    await expect(compactnessStep(net, x, shape, new Float32Array(256), { startTap: 'layer2' })).rejects.toThrow(/centre must have 512 elements/);
    await expect(compactnessStep(net, x.subarray(1), shape, centre, { startTap: 'layer2' })).rejects.toThrow(/batch must have 4096 elements/);
    await expect(compactnessStep(net, x, shape, centre, { startTap: 'layer2', clip: 0 })).rejects.toThrow(/options.clip must be > 0/);
    await expect(compactnessStep(net, x, shape, centre, { startTap: 'layer9' as ResnetTap })).rejects.toThrow(/options.startTap/);
    await expect(compactnessStep(net, x, shape, centre, { startTap: 'layer2', sgd: { lr: -1 } })).rejects.toThrow(/options.sgd.lr must be >= 0/);
    await expect(compactnessStep(net, x, shape, centre)).rejects.toThrow(/3 channels/);
    expect(firstDifference(net.params.value('layer4.1.conv2.weight'), before)).toBe(-1);
    expect(net.params.grad('layer4.1.conv2.weight')).toBeNull();
    const p = compactnessStep(net, x, shape, centre, { startTap: 'layer2' });
    expect(() => net.params.value('layer4.1.conv2.weight')).toThrow(expect.objectContaining({ code: 'ERR_BUSY' }));
    expect((await p).features.length).toBe(2 * 512);
  });
});
