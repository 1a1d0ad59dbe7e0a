// Training ops (max pooling included, with ties): every forward and backward against torch autograd (fixtures from
// test/fixtures/train/make_fixtures.py, torch 1.13 float32) within 1e-4 normwise relative, and
// the backwards of convolution, transposed convolution, batch norm (both modes) and linear
// against central finite differences of float64 twins; argument errors.
import { describe, expect, it } from 'vitest';
import {
  addBackward, addForward, batchNormBackward, batchNormFrozenForward, batchNormTrainForward, concatBackward,
  concatForward, conv2dBackward, conv2dForward, convTranspose2dBackward, convTranspose2dForward,
  globalAvgPoolBackward, globalAvgPoolForward, linearBackward, linearForward, maxPool2dBackward, maxPool2dForward,
  reluBackward, reluForward,
  type ConvGeometry,
} from '../../lib/index.js';
import {
  batchNorm64, conv2d64, convTranspose2d64, finiteDifferences, linear64, loadTrainFixtures, relError,
  sampleIndices, type Conv64, type FixtureCase,
} from '../helpers/train-reference.js';

const fx = loadTrainFixtures();
const TOL = 1e-4;
const casesOf = (op: string) => fx.cases.filter((c) => c.op === op);
const pair = (v: unknown): [number, number] => (Array.isArray(v) ? [v[0], v[1]] : [v as number, v as number]);

function close(actual: Float32Array | null, c: FixtureCase, out: string, tol = TOL) {
  expect(actual, `${c.name}.${out}`).not.toBeNull();
  const err = relError(actual!, fx.get(c, out));
  expect(err, `${c.name}.${out} relative error`).toBeLessThan(tol);
}

function geom64(p: Record<string, unknown>): Conv64 {
  const [sh, sw] = pair(p.stride);
  const [ph, pw] = pair(p.padding);
  const g = p as unknown as ConvGeometry;
  return { n: g.n, c: g.c, h: g.h, w: g.w, k: g.k, kh: g.kh, kw: g.kw, sh, sw, ph, pw };
}

describe('conv2d', () => {
  for (const c of casesOf('conv2d')) {
    it(`${c.name}: forward and backward match autograd`, async () => {
      const g = c.params as unknown as ConvGeometry;
      const x = fx.input(c, 'x');
      const w = fx.input(c, 'weight');
      const b = c.outputs.db ? fx.input(c, 'bias') : null;
      const dy = fx.input(c, 'dy');
      close(await conv2dForward(x, w, b, g), c, 'y');
      const r = await conv2dBackward(x, w, dy, g, { db: b !== null });
      close(r.dx, c, 'dx');
      close(r.dw, c, 'dw');
      if (b) close(r.db, c, 'db');
      else expect(r.db).toBeNull();
    });
  }

  for (const name of ['conv3x3', 'conv3x2s2']) {
    it(`${name}: backward matches float64 finite differences`, async () => {
      const c = fx.cases.find((k) => k.name === name)!;
      const g = c.params as unknown as ConvGeometry;
      const x = fx.input(c, 'x');
      const w = fx.input(c, 'weight');
      const b = fx.input(c, 'bias');
      const dy = fx.input(c, 'dy');
      const r = await conv2dBackward(x, w, dy, g);
      const g64 = geom64(c.params);
      const f = (a: Float64Array[]) => conv2d64(g64, a[0], a[1], a[2]);
      const ix = sampleIndices(x.length, 7);
      const fdx = finiteDifferences(f, [x, w, b], 0, dy, ix);
      expect(relError(ix.map((i) => r.dx![i]), fdx)).toBeLessThan(TOL);
      expect(relError(r.dw!, finiteDifferences(f, [x, w, b], 1, dy))).toBeLessThan(TOL);
      expect(relError(r.db!, finiteDifferences(f, [x, w, b], 2, dy))).toBeLessThan(TOL);
    });
  }

  it('computes only the wanted gradients', async () => {
    const c = casesOf('conv2d')[0];
    const g = c.params as unknown as ConvGeometry;
    const r = await conv2dBackward(fx.input(c, 'x'), fx.input(c, 'weight'), fx.input(c, 'dy'), g, { dx: false, dw: false });
    expect(r.dx).toBeNull();
    expect(r.dw).toBeNull();
    close(r.db, c, 'db');
  });
});

describe('convTranspose2d (PyTorch weight layout [in, out, kh, kw])', () => {
  for (const c of casesOf('convTranspose2d')) {
    it(`${c.name}: forward and backward match autograd and finite differences`, async () => {
      const g = c.params as unknown as ConvGeometry;
      const x = fx.input(c, 'x');
      const w = fx.input(c, 'weight');
      const b = c.outputs.db ? fx.input(c, 'bias') : null;
      const dy = fx.input(c, 'dy');
      close(await convTranspose2dForward(x, w, b, g), c, 'y');
      const r = await convTranspose2dBackward(x, w, dy, g, { db: b !== null });
      close(r.dx, c, 'dx');
      close(r.dw, c, 'dw');
      if (b) close(r.db, c, 'db');
      const g64 = geom64(c.params);
      const f = (a: Float64Array[]) => convTranspose2d64(g64, a[0], a[1], b ? a[2] : null);
      const args = b ? [x, w, b] : [x, w];
      expect(relError(r.dx!, finiteDifferences(f, args, 0, dy))).toBeLessThan(TOL);
      expect(relError(r.dw!, finiteDifferences(f, args, 1, dy))).toBeLessThan(TOL);
    });
  }
});

describe('batch norm', () => {
  for (const c of casesOf('batchNormTrain')) {
    it(`${c.name}: training mode matches autograd, running statistics as torch (unbiased variance)`, async () => {
      const shape = c.params.shape as [number, number, number, number];
      const [x, gamma, beta, dy] = ['x', 'gamma', 'beta', 'dy'].map((k) => fx.input(c, k));
      const runningMean = fx.input(c, 'running_mean');
      const runningVar = fx.input(c, 'running_var');
      const r = await batchNormTrainForward(x, gamma, beta, shape, { runningMean, runningVar });
      close(r.y, c, 'y');
      close(r.saveMean, c, 'saveMean', 1e-6);
      close(r.saveVar, c, 'saveVar', 1e-6);
      close(runningMean, c, 'runningMean', 1e-6);
      close(runningVar, c, 'runningVar', 1e-6);
      const g = await batchNormBackward(x, gamma, r.saveMean, r.saveVar, dy, shape);
      close(g.dx, c, 'dx');
      close(g.dgamma, c, 'dgamma');
      close(g.dbeta, c, 'dbeta');
      // finite differences through the batch statistics
      const f = (a: Float64Array[]) => batchNorm64(shape, a[0], a[1], a[2], 1e-5);
      const ix = sampleIndices(x.length, 5);
      const fdx = finiteDifferences(f, [x, gamma, beta], 0, dy, ix);
      expect(relError(ix.map((i) => g.dx![i]), fdx)).toBeLessThan(TOL);
      expect(relError(g.dgamma!, finiteDifferences(f, [x, gamma, beta], 1, dy))).toBeLessThan(TOL);
      expect(relError(g.dbeta!, finiteDifferences(f, [x, gamma, beta], 2, dy))).toBeLessThan(TOL);
    });
  }

  for (const c of casesOf('batchNormFrozen')) {
    it(`${c.name}: frozen statistics match autograd in eval mode and finite differences`, async () => {
      const shape = c.params.shape as [number, number, number, number];
      const [x, gamma, beta, dy, mean, variance] = ['x', 'gamma', 'beta', 'dy', 'running_mean', 'running_var'].map((k) =>
        fx.input(c, k),
      );
      close(await batchNormFrozenForward(x, gamma, beta, mean, variance, shape), c, 'y');
      const g = await batchNormBackward(x, gamma, mean, variance, dy, shape, { frozen: true });
      close(g.dx, c, 'dx');
      close(g.dgamma, c, 'dgamma');
      close(g.dbeta, c, 'dbeta');
      const f = (a: Float64Array[]) => batchNorm64(shape, a[0], a[1], a[2], 1e-5, { mean, variance });
      const ix = sampleIndices(x.length, 5);
      expect(relError(ix.map((i) => g.dx![i]), finiteDifferences(f, [x, gamma, beta], 0, dy, ix))).toBeLessThan(TOL);
      expect(relError(g.dgamma!, finiteDifferences(f, [x, gamma, beta], 1, dy))).toBeLessThan(TOL);
    });
  }

  it('refuses training mode with one value per channel, as torch', async () => {
    const x = new Float32Array(3);
    await expect(
      batchNormTrainForward(x, null, null, [1, 3, 1, 1], { runningMean: new Float32Array(3), runningVar: new Float32Array(3) }),
    ).rejects.toThrow(RangeError);
  });
});

describe('relu, add, concat, pooling, linear', () => {
  it('relu matches autograd (backward from the output)', async () => {
    const c = casesOf('relu')[0];
    const x = fx.input(c, 'x');
    const y = await reluForward(x);
    close(y, c, 'y');
    close(await reluBackward(y, fx.input(c, 'dy')), c, 'dx');
  });

  it('add: y = a + b, both gradients dy', async () => {
    const a = Float32Array.from([1, -2, 3.5]);
    const b = Float32Array.from([0.5, 2, -1]);
    expect(Array.from(await addForward(a, b))).toEqual([1.5, 0, 2.5]);
    const dy = Float32Array.from([1, 2, 3]);
    const g = addBackward(dy);
    expect(g.da).toBe(dy);
    expect(g.db).toBe(dy);
  });

  it('concat matches torch.cat and its backward', async () => {
    const c = casesOf('concat')[0];
    const { n, channels, h, w } = c.params as { n: number; channels: number[]; h: number; w: number };
    const y = await concatForward([fx.input(c, 'a'), fx.input(c, 'b')], n, channels, h, w);
    expect(relError(y, fx.get(c, 'y'))).toBe(0);
    const [da, db] = await concatBackward(fx.input(c, 'dy'), n, channels, h, w);
    expect(relError(da, fx.get(c, 'da'))).toBe(0);
    expect(relError(db, fx.get(c, 'db'))).toBe(0);
  });

  it('global average pooling matches autograd', async () => {
    const c = casesOf('globalAvgPool')[0];
    const shape = c.params.shape as [number, number, number, number];
    close(await globalAvgPoolForward(fx.input(c, 'x'), shape), c, 'y');
    close(await globalAvgPoolBackward(fx.input(c, 'dy'), shape), c, 'dx');
  });

  it('max pooling (3, 2, 1) matches torch, ties to the first maximum', async () => {
    const c = casesOf('maxPool')[0];
    const p = c.params as { n: number; c: number; h: number; w: number; k: number; stride: number; padding: number; quantum: number };
    // torch.round: half to even
    const roundEven = (v: number) => {
      const r = Math.round(v);
      return Math.abs(v - Math.trunc(v)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
    };
    const x = fx.input(c, 'x').map((v) => roundEven(v / p.quantum) * p.quantum);
    let ties = 0;
    for (let i = 1; i < x.length; i++) if (x[i] === x[i - 1]) ties++;
    expect(ties).toBeGreaterThan(10);
    const y = await maxPool2dForward(x, p);
    expect(relError(y, fx.get(c, 'y'))).toBe(0);
    const dx = await maxPool2dBackward(x, fx.input(c, 'dy'), p);
    expect(relError(dx, fx.get(c, 'dx'))).toBeLessThan(1e-6);
  });

  it('linear matches autograd and finite differences', async () => {
    const c = casesOf('linear')[0];
    const { n, d, k } = c.params as { n: number; d: number; k: number };
    const [x, w, b, dy] = ['x', 'weight', 'bias', 'dy'].map((key) => fx.input(c, key));
    close(await linearForward(x, w, b, n, d, k), c, 'y');
    const r = await linearBackward(x, w, dy, n, d, k);
    close(r.dx, c, 'dx');
    close(r.dw, c, 'dw');
    close(r.db, c, 'db');
    const f = (a: Float64Array[]) => linear64(n, d, k, a[0], a[1], a[2]);
    expect(relError(r.dx!, finiteDifferences(f, [x, w, b], 0, dy))).toBeLessThan(TOL);
    expect(relError(r.dw!, finiteDifferences(f, [x, w, b], 1, dy))).toBeLessThan(TOL);
    expect(relError(r.db!, finiteDifferences(f, [x, w, b], 2, dy))).toBeLessThan(TOL);
  });
});

describe('argument errors name the argument', () => {
  const g: ConvGeometry = { n: 1, c: 2, h: 5, w: 5, k: 3, kh: 3, kw: 3 };
  const x = new Float32Array(50);
  const w = new Float32Array(54);
  it('types and sizes', async () => {
    await expect(conv2dForward([] as unknown as Float32Array, w, null, g)).rejects.toThrow(/x must be a Float32Array/);
    await expect(conv2dForward(x, new Float32Array(3), null, g)).rejects.toThrow(/weight must have 54 elements, received 3/);
    await expect(conv2dForward(x, w, new Float32Array(2), g)).rejects.toThrow(RangeError);
    await expect(conv2dForward(x, w, null, { ...g, k: 0 })).rejects.toThrow(/geometry.k must be >= 1/);
    await expect(conv2dForward(x, w, null, { ...g, kh: 9, kw: 9 })).rejects.toThrow(/empty output/);
    await expect(conv2dBackward(x, w, new Float32Array(1), g)).rejects.toThrow(/dy must have 27 elements/);
    await expect(conv2dBackward(x, w, new Float32Array(27), g, { dx: 1 as unknown as boolean })).rejects.toThrow(
      /wants.dx must be a boolean/,
    );
    await expect(batchNormTrainForward(x, null, null, [1, 2, 5] as unknown as [number, number, number, number])).rejects.toThrow(
      /shape must be \[n, c, h, w\]/,
    );
    await expect(batchNormTrainForward(x, null, null, [1, 2, 5, 5], { eps: 0 })).rejects.toThrow(/options.eps must be > 0/);
    await expect(linearForward(x, w, null, 2, 25, 0)).rejects.toThrow(/k must be >= 1/);
    await expect(reluBackward(x, new Float32Array(3))).rejects.toThrow(/dy must have 50 elements/);
    await expect(concatForward([x], 1, [2, 3], 5, 5)).rejects.toThrow(/same length/);
  });
});
