// Losses against torch autograd (fixtures: test/fixtures/train/make_fixtures.py): PANDA's
// compactness loss, RD4AD's loss_function (whole-map cosine per scale), PANDA's EWC penalty;
// plus float64 finite differences of slow twins, and errors.
import { describe, expect, it } from 'vitest';
import { TrainParams, compactnessLoss, cosineMapLoss, ewcPenalty } from '../../lib/index.js';
import { finiteDifferences, loadTrainFixtures, relError } from '../helpers/train-reference.js';

const fx = loadTrainFixtures();
const byName = (name: string) => fx.cases.find((c) => c.name === name)!;
const relScalar = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

function cosine64(a: Float64Array, b: Float64Array, n: number): number {
  const m = a.length / n;
  let loss = 0;
  for (let i = 0; i < n; i++) {
    let ab = 0, aa = 0, bb = 0;
    for (let j = 0; j < m; j++) {
      ab += a[i * m + j] * b[i * m + j];
      aa += a[i * m + j] ** 2;
      bb += b[i * m + j] ** 2;
    }
    loss += 1 - ab / (Math.max(Math.sqrt(aa), 1e-8) * Math.max(Math.sqrt(bb), 1e-8));
  }
  return loss / n;
}

describe('training losses', () => {
  it('compactness: mean over the batch of ||f - c||^2 / d', async () => {
    const c = byName('compactness');
    const { n, d } = c.params as { n: number; d: number };
    const r = await compactnessLoss(fx.input(c, 'f'), fx.input(c, 'c'), n, d);
    expect(relScalar(r.loss, c.outputs.loss.value!)).toBeLessThan(1e-6);
    expect(relError(r.grad, fx.get(c, 'grad'))).toBeLessThan(1e-6);
  });

  it("cosine: RD4AD's loss_function over two scales, gradients for both sides", async () => {
    const c = byName('cosine');
    const n = c.params.n as number;
    const [a0, b0, a1, b1] = ['a0', 'b0', 'a1', 'b1'].map((k) => fx.input(c, k));
    const r = await cosineMapLoss([{ a: a0, b: b0, n }, { a: a1, b: b1, n }]);
    expect(relScalar(r.loss, c.outputs.loss.value!)).toBeLessThan(1e-6);
    expect(relError(r.grads[0].a, fx.get(c, 'ga0'))).toBeLessThan(1e-4);
    expect(relError(r.grads[0].b, fx.get(c, 'gb0'))).toBeLessThan(1e-4);
    expect(relError(r.grads[1].a, fx.get(c, 'ga1'))).toBeLessThan(1e-4);
    expect(relError(r.grads[1].b, fx.get(c, 'gb1'))).toBeLessThan(1e-4);
    // finite differences of the float64 twin (the loss is the "output", dy = 1)
    const f = (args: Float64Array[]) => Float64Array.of(cosine64(args[0], args[1], n));
    expect(relError(r.grads[1].a, finiteDifferences(f, [a1, b1], 0, [1]))).toBeLessThan(1e-4);
    expect(relError(r.grads[1].b, finiteDifferences(f, [a1, b1], 1, [1]))).toBeLessThan(1e-4);
  });

  it('cosine: a zero map is clamped by eps (distance 1, finite gradient)', async () => {
    const a = new Float32Array(6);
    const b = Float32Array.from([1, 2, 3, 4, 5, 6]);
    const r = await cosineMapLoss([{ a, b, n: 1 }]);
    expect(r.loss).toBe(1);
    expect(r.grads[0].a.every(Number.isFinite)).toBe(true);
  });

  it("ewc: PANDA's lambda * sum F (theta* - theta)^2 / 2", async () => {
    const c = byName('ewc');
    const r = await ewcPenalty(fx.input(c, 'theta'), fx.input(c, 'star'), fx.input(c, 'fisher'), c.params.lambda as number);
    expect(relScalar(r.loss, c.outputs.loss.value!)).toBeLessThan(1e-6);
    expect(relError(r.grad, fx.get(c, 'grad'))).toBeLessThan(1e-6);
  });

  it("ewc over a store: PANDA's penalty summed over anchored trainable parameters, gradients added", async () => {
    const c = byName('ewc');
    const [theta, star, fisher] = [fx.input(c, 'theta'), fx.input(c, 'star'), fx.input(c, 'fisher')];
    const ps = new TrainParams();
    ps.add('layer3.w', [5, 10], theta);
    ps.add('layer4.w', [5, 10], theta.map((v) => v * 0.5));
    ps.add('layer2.w', [5, 10], theta.map((v) => v * 2)); // frozen: skipped
    ps.add('fc.weight', [5, 10], theta); // no anchor: skipped, as PANDA's 'fc' exclusion
    ps.freeze('layer2.');
    for (const n of ['layer3.w', 'layer4.w', 'layer2.w']) ps.setEwcAnchor(n, star, fisher);
    const base = Float32Array.from({ length: 50 }, (_, i) => 0.01 * i);
    for (const n of ps.names()) ps.setGrad(n, base);
    const penalty = await ps.addEwcPenalty();
    const a = await ewcPenalty(theta, star, fisher);
    const b = await ewcPenalty(ps.value('layer4.w'), star, fisher);
    expect(relScalar(a.loss, c.outputs.loss.value!)).toBeLessThan(1e-6);
    expect(relScalar(penalty, a.loss + b.loss)).toBeLessThan(1e-12);
    expect(relError(ps.grad('layer3.w')!, a.grad.map((v, i) => v + base[i]))).toBeLessThan(1e-6);
    expect(relError(ps.grad('layer4.w')!, b.grad.map((v, i) => v + base[i]))).toBeLessThan(1e-6);
    expect(ps.grad('fc.weight')).toEqual(base);
    await expect(ps.addEwcPenalty(-1)).rejects.toThrow(/lambda must be >= 0/);
  });

  it('errors name the argument', async () => {
    await expect(compactnessLoss(new Float32Array(6), new Float32Array(2), 2, 3)).rejects.toThrow(/centre must have 3 elements/);
    await expect(cosineMapLoss([])).rejects.toThrow(TypeError);
    await expect(cosineMapLoss([{ a: new Float32Array(5), b: new Float32Array(5), n: 2 }])).rejects.toThrow(/scales\[0\].a/);
    await expect(ewcPenalty(new Float32Array(3), new Float32Array(3), new Float32Array(2))).rejects.toThrow(/fisher must have 3/);
    await expect(ewcPenalty(new Float32Array(3), new Float32Array(3), new Float32Array(3), -1)).rejects.toThrow(/lambda must be >= 0/);
  });
});
