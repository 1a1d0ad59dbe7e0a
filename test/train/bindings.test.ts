// What the training bindings re-check themselves, below lib/train/'s validation: a parameter
// view is made only over a TrainResnet or a TrainRd of this environment (never by
// reinterpreting another object) and shares its network's busy state, and element counts
// protect memory.
import { describe, expect, it } from 'vitest';
import { TrainParams, TrainRd, TrainResnet, type Tensor4 } from '../../lib/index.js';
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

  it('a TrainParams view of a TrainRd shares its busy state', async () => {
    const Ctor = native().TrainParams as unknown as new (net: unknown, which: string) => unknown;
    expect(() => new Ctor(new TrainRd('resnet18'), 'params')).toThrow(/expected a TrainResnet or a TrainRd/);
    const raw = new (native().TrainRd)('resnet18');
    expect(new (native().TrainParams)(raw, 'buffers').names()).toContain('bn.bn1.running_mean');
    const rd = new TrainRd('resnet18');
    rd.initialize(1);
    const taps: Tensor4[] = rd.tapChannels().map((c, i) => {
      const shape: Tensor4['shape'] = [2, c, 8 >> i, 8 >> i];
      return { data: new Float32Array(shape.reduce((a, b) => a * b, 1)).map((_, j) => Math.sin(j + i)), shape };
    });
    const before = rd.params.value('bn.conv1.weight');
    const step = rd.trainStep(taps);
    expect(() => rd.params.value('bn.conv1.weight')).toThrow(expect.objectContaining({ code: 'ERR_BUSY' }));
    expect(() => rd.buffers.value('bn.bn1.running_mean')).toThrow(expect.objectContaining({ code: 'ERR_BUSY' }));
    await expect(rd.forward(taps)).rejects.toThrow(expect.objectContaining({ code: 'ERR_BUSY' }));
    expect(Number.isFinite((await step).loss)).toBe(true);
    expect(rd.params.value('bn.conv1.weight')).not.toEqual(before);
    const stepOfParams = rd.params.adamStep({ lr: 1e-3 });
    await expect(rd.forward(taps)).rejects.toThrow(/Reverse Distillation student is in use/);
    await stepOfParams;
    expect((await rd.forward(taps))[0].shape).toEqual(taps[0].shape);
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
