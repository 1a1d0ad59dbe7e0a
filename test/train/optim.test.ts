// Parameters by name and the optimisers: SGD (momentum, dampening, weight decay) and Adam
// trajectories over 4 steps equal to torch.optim's within 1e-6 relative, clip_grad_norm_ before
// the step as PANDA runs it, freezing by prefix, optimiser state by torch's names, errors.
// Fixtures: test/fixtures/train/make_fixtures.py.
import { describe, expect, it } from 'vitest';
import { TrainParams, type AdamOptions, type SgdOptions } from '../../lib/index.js';
import { loadTrainFixtures, relError, seededValues } from '../helpers/train-reference.js';

const fx = loadTrainFixtures();

type Spec = [string, number[], number, number];

function makeStore(specs: Spec[]): TrainParams {
  const ps = new TrainParams();
  for (const s of specs) ps.add(s[0], s[1], seededValues(...s));
  return ps;
}

describe('optimisers follow torch.optim step by step', () => {
  for (const c of fx.cases.filter((k) => k.op === 'optim')) {
    it(c.name, async () => {
      const p = c.params as { steps: number; clip: number | null; gradScale: number; params: Spec[]; options: Record<string, unknown> };
      const ps = makeStore(p.params);
      const adam = c.name.startsWith('adam');
      for (let t = 0; t < p.steps; t++) {
        for (const s of p.params) ps.setGrad(s[0], seededValues(`grad${t}.${s[0]}`, s[1], p.gradScale, 0));
        if (p.clip !== null) {
          const norm = await ps.clipGradNorm(p.clip);
          expect(Math.abs(norm - c.outputs[`norm${t}`].value!) / c.outputs[`norm${t}`].value!).toBeLessThan(1e-6);
        }
        if (adam) await ps.adamStep(p.options as AdamOptions);
        else await ps.sgdStep(p.options as unknown as SgdOptions);
        p.params.forEach((s, i) => {
          const err = relError(ps.value(s[0]), fx.get(c, `step${t}.p${i}`));
          expect(err, `step ${t} ${s[0]}`).toBeLessThan(1e-6);
        });
      }
      p.params.forEach((s, i) => {
        for (const key of ['momentum_buffer', 'exp_avg', 'exp_avg_sq']) {
          const want = c.outputs[`${key}.p${i}`];
          const got = ps.state(s[0], key);
          if (!want) {
            expect(got, `${key} of ${s[0]}`).toBeNull();
            continue;
          }
          expect(relError(got!, fx.get(c, `${key}.p${i}`)), `${key} of ${s[0]}`).toBeLessThan(1e-6);
        }
        if (adam) expect(ps.info(s[0]).step).toBe(p.steps);
      });
    });
  }

  for (const c of fx.cases.filter((k) => k.op === 'optim' && k.name.startsWith('adam')))
    it(`${c.name}: a new store given the values, exp_avg, exp_avg_sq and step after 2 steps continues torch's trajectory (setStep)`, async () => {
      const p = c.params as { steps: number; clip: number | null; gradScale: number; params: Spec[]; options: Record<string, unknown> };
      const grads = (t: number, ps: TrainParams) => p.params.forEach((s) => ps.setGrad(s[0], seededValues(`grad${t}.${s[0]}`, s[1], p.gradScale, 0)));
      const run = async (ps: TrainParams, t: number) => {
        grads(t, ps);
        if (p.clip !== null) await ps.clipGradNorm(p.clip);
        await ps.adamStep(p.options as AdamOptions);
      };
      const first = makeStore(p.params);
      for (let t = 0; t < 2; t++) await run(first, t);
      const second = makeStore(p.params);
      const stale = makeStore(p.params);
      for (const s of p.params) {
        for (const ps of [second, stale]) {
          ps.setValue(s[0], first.value(s[0]));
          for (const key of ['exp_avg', 'exp_avg_sq']) ps.setState(s[0], key, first.state(s[0], key)!);
        }
        second.setStep(s[0], first.info(s[0]).step);
      }
      expect(second.info(p.params[0][0]).step).toBe(2);
      for (let t = 2; t < p.steps; t++) await run(second, t), await run(stale, t);
      p.params.forEach((s, i) => {
        expect(relError(second.value(s[0]), fx.get(c, `step${p.steps - 1}.p${i}`)), s[0]).toBeLessThan(1e-6);
        // Without the step count the bias corrections restart: off torch's trajectory.
        expect(relError(stale.value(s[0]), fx.get(c, `step${p.steps - 1}.p${i}`)), s[0]).toBeGreaterThan(1e-6);
      });
      expect(() => second.setStep(p.params[0][0], 1.5)).toThrow(/step must be an integer/);
      expect(() => second.setStep('nope', 1)).toThrow(/unknown parameter 'nope'/);
    });

  it('the updates move the parameters (the trajectory is not the initial value)', () => {
    const c = fx.cases.find((k) => k.name === 'sgd_panda')!;
    const spec = (c.params.params as Spec[])[0];
    expect(relError(seededValues(...spec), fx.get(c, 'step3.p0'))).toBeGreaterThan(1e-6);
  });
});

describe('TrainParams', () => {
  const specs: Spec[] = [
    ['layer1.0.conv1.weight', [2, 3], 1, 0],
    ['layer1.0.bn1.weight', [2], 1, 0],
    ['layer3.0.conv1.weight', [4], 1, 0],
  ];

  it('keeps insertion order, freezes by prefix, skips frozen and gradient-less parameters', async () => {
    const ps = makeStore(specs);
    expect(ps.names()).toEqual(specs.map((s) => s[0]));
    expect(ps.freeze('layer1.')).toBe(2);
    expect(ps.info('layer1.0.bn1.weight')).toMatchObject({ shape: [2], frozen: true, hasGrad: false });
    for (const s of specs) ps.setGrad(s[0], new Float32Array(s[1].reduce((a, b) => a * b, 1)).fill(1));
    await ps.sgdStep({ lr: 0.5 });
    expect(ps.value('layer1.0.conv1.weight')).toEqual(seededValues(...specs[0]));
    const moved = seededValues(...specs[2]).map((v) => v - 0.5);
    expect(relError(ps.value('layer3.0.conv1.weight'), moved)).toBeLessThan(1e-7);
    // gradient-less: a fresh store with no grad set does not move
    const fresh = makeStore(specs);
    await fresh.sgdStep({ lr: 0.5, momentum: 0.9 });
    expect(fresh.value('layer3.0.conv1.weight')).toEqual(seededValues(...specs[2]));
    expect(fresh.state('layer3.0.conv1.weight', 'momentum_buffer')).toBeNull();
    expect(ps.unfreeze('')).toBe(3);
  });

  it('clipGradNorm: the total L2 norm over every parameter, coefficient capped at 1', async () => {
    const ps = makeStore(specs.slice(0, 2));
    ps.setGrad(specs[0][0], Float32Array.from([3, 0, 0, 0, 0, 0]));
    ps.setGrad(specs[1][0], Float32Array.from([0, 4]));
    expect(await ps.clipGradNorm(10)).toBeCloseTo(5, 6);
    expect(Array.from(ps.grad(specs[1][0])!)).toEqual([0, 4]);
    await ps.clipGradNorm(1);
    expect(ps.grad(specs[1][0])![1]).toBeCloseTo(4 / (5 + 1e-6), 6);
  });

  it('round-trips values, gradients and optimiser state by name', () => {
    const ps = makeStore(specs.slice(0, 1));
    const v = Float32Array.from([1, 2, 3, 4, 5, 6]);
    ps.setValue(specs[0][0], v);
    ps.setState(specs[0][0], 'momentum_buffer', v);
    expect(ps.value(specs[0][0])).toEqual(v);
    expect(ps.state(specs[0][0], 'momentum_buffer')).toEqual(v);
    expect(ps.grad(specs[0][0])).toBeNull();
    ps.setGrad(specs[0][0], v);
    ps.zeroGrad();
    expect(Array.from(ps.grad(specs[0][0])!)).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('errors name the argument or the parameter', async () => {
    const ps = makeStore(specs.slice(0, 1));
    expect(() => ps.add(specs[0][0], [6], new Float32Array(6))).toThrow(/already present/);
    expect(() => ps.add('x', [2, 2], new Float32Array(3))).toThrow(/value must have 4 elements, received 3/);
    expect(() => ps.value('nope')).toThrow(/unknown parameter 'nope'/);
    expect(() => ps.setGrad(specs[0][0], new Float32Array(2))).toThrow(/grad/);
    await expect(ps.sgdStep({ lr: -1 })).rejects.toThrow(/options.lr must be >= 0/);
    await expect(ps.sgdStep({ lr: 1, nesterov: true })).rejects.toThrow(/nesterov/);
    await expect(ps.adamStep({ betas: [0.9, 1] })).rejects.toThrow(/betas\[1\] must be < 1/);
    await expect(ps.clipGradNorm(0)).rejects.toThrow(/maxNorm must be > 0/);
  });

  it('refuses access while a step is in flight', async () => {
    const ps = makeStore(specs.slice(0, 1));
    ps.setGrad(specs[0][0], new Float32Array(6).fill(1));
    const step = ps.sgdStep({ lr: 0.1 });
    expect(() => ps.value(specs[0][0])).toThrow(expect.objectContaining({ code: 'ERR_BUSY' }));
    await step;
    expect(ps.value(specs[0][0]).length).toBe(6);
  });
});
