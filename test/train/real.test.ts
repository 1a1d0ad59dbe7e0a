// The shared ResNet-50 v2 ImageNet weights (stem + stages 1-3) in the trainable network: every
// tensor name matches both ways, the eval-mode stage3 output equals the inference backbone's
// (itself checked against a float64 reference in test/backbone.test.ts) within 1e-4, and a
// PANDA step on them gives finite gradients for stage3 only. Skips when ../shared/data is absent.
import { describe, expect, it } from 'vitest';
import { Backbone, TrainResnet, compactnessStep, pandaFrozenPrefixes, readSafetensors } from '../../lib/index.js';
import { missing, resnet50v2Weights } from '../helpers/shared-data.js';
import { relError } from '../helpers/train-reference.js';

const reason = missing(resnet50v2Weights);

function hashed(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sin(i * 0.7311 + seed) * 1.5;
  return out;
}

describe('trainable ResNet-50 v2 on the shared ImageNet weights', () => {
  it.skipIf(reason)(`loads by initializer name and matches the inference backbone${reason ? ` (${reason})` : ''}`, async () => {
    const file = await readSafetensors(resnet50v2Weights);
    const net = new TrainResnet('resnet50_v2', { lastTap: 'stage3' });
    const names = net.tensorNames();
    expect(names.filter((n) => !(n in file.tensors))).toEqual([]);
    expect(Object.keys(file.tensors).filter((n) => !names.includes(n))).toEqual([]);
    for (const n of names) net.setTensor(n, file.tensors[n].data!);
    const shape: [number, number, number, number] = [2, 3, 64, 64];
    const x = hashed(2 * 3 * 64 * 64, 1);
    const ours = await net.forward(x, shape);
    net.release();
    const bb = await Backbone.load({ arch: 'resnet50_v2', weights: resnet50v2Weights });
    const ref = (await bb.extract({ data: x, shape }, ['stage3'])).stage3;
    bb.dispose();
    expect(ref.shape).toEqual([2, 1024, 4, 4]);
    expect(relError(ours, ref.data)).toBeLessThan(1e-4);

    for (const p of pandaFrozenPrefixes(net)) net.params.freeze(p);
    const r = await compactnessStep(net, x, shape, new Float32Array(1024));
    expect(Number.isFinite(r.loss) && r.loss > 0).toBe(true);
    expect(Number.isFinite(r.gradNorm!)).toBe(true);
    for (const n of net.params.names()) {
      const g = net.params.grad(n);
      expect(g !== null, n).toBe(n.startsWith('resnetv24_stage3_'));
      if (g) expect(g.every(Number.isFinite), n).toBe(true);
    }
  });
  if (reason) it('real-weights training parity skipped', () => console.log(reason));
});
