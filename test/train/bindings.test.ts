// What the training bindings re-check themselves, below lib/train/'s validation: a parameter
// view is made only over a TrainResnet of this environment (never by reinterpreting another
// object), and element counts protect memory.
import { describe, expect, it } from 'vitest';
import { TrainParams, TrainResnet } from '../../lib/index.js';
import { native } from '../../lib/internal.js';

describe('training bindings', () => {
  it('a TrainParams view needs a TrainResnet', () => {
    const Ctor = native().TrainParams as unknown as new (net: unknown, which: string) => unknown;
    expect(() => new Ctor({}, 'params')).toThrow(/expected a TrainResnet/);
    const store = new (native().TrainParams)();
    expect(() => new Ctor(store, 'params')).toThrow(/expected a TrainResnet/);
    // the library's wrapper is not the native object
    expect(() => new Ctor(new TrainResnet('resnet18', { lastTap: 'layer1' }), 'params')).toThrow(/expected a TrainResnet/);
    const net = new (native().TrainResnet)('resnet18', 'layer1', '');
    const params = new (native().TrainParams)(net, 'params');
    const buffers = new (native().TrainParams)(net, 'buffers');
    expect(params.names()).toContain('layer1.0.conv1.weight');
    expect(buffers.names()).toContain('bn1.running_mean');
    expect(params.names()).not.toContain('bn1.running_mean');
  });

  it('re-checks element counts and types', async () => {
    const n = native();
    await expect(async () => n.trainReluForward([] as unknown as Float32Array)).rejects.toThrow(/x must be a Float32Array/);
    await expect(async () => n.trainAddForward(new Float32Array(4), new Float32Array(3))).rejects.toThrow(/b has 3 elements but shape \[4\] needs 4/);
    await expect(async () => n.trainGlobalAvgPoolForward(new Float32Array(4), [1, 2, 2])).rejects.toThrow(/shape must have 4 entries/);
    await expect(async () => n.trainMaxPool2dForward(new Float32Array(4), [1, 1, 2, 2, 5, 1, 0])).rejects.toThrow(/bad max-pool geometry/);
    const ps = new TrainParams();
    ps.add('w', [2], new Float32Array(2));
    expect(() => ps.setGrad('w', new Float32Array(3))).toThrow(/grad has 3 elements but shape \[2\] needs 2/);
  });
});
