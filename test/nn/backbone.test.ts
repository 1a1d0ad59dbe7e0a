import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AnomalensError, Backbone, tapsOf, writeSafetensors, type Arch } from '../../lib/index.js';
import { seededInput, seededTensor, writeSeededWeights } from '../helpers/seeded.js';
import { tempDir } from '../helpers/tmp.js';

interface TapFixture { shape: number[]; maxAbs: number; l2: number; samples: [number, number][] }
interface Fixture {
  formula: string;
  input: { shape: number[] };
  archs: Record<string, { tensors: [string, number[]][]; taps: Record<string, TapFixture> }>;
}
const fixture: Fixture = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures/backbone/parity.json'), 'utf8'));
const input = { data: seededInput(fixture.input.shape), shape: fixture.input.shape as [number, number, number, number] };
const { dir, cleanup } = tempDir();
afterAll(cleanup);

/** max |ours - ref| over the samples, relative to max |ref| of the whole tap. */
function sampleError(data: Float32Array, tap: TapFixture): number {
  let worst = 0;
  for (const [i, v] of tap.samples) worst = Math.max(worst, Math.abs(data[i] - v));
  return worst / tap.maxAbs;
}

function l2(data: Float32Array): number {
  let s = 0;
  for (let i = 0; i < data.length; i++) s += data[i] * data[i];
  return Math.sqrt(s);
}

describe('backbone parity with PyTorch float64 (seeded weights, input 2x3x97x131)', () => {
  for (const [arch, fx] of Object.entries(fixture.archs)) {
    it(`${arch}: every tap within 1e-4 relative`, async () => {
      const path = join(dir, `${arch}.safetensors`);
      await writeSeededWeights(path, fx.tensors);
      const bb = await Backbone.load({ arch: arch as Arch, weights: path });
      rmSync(path);
      expect(bb.availableTaps).toEqual(tapsOf(arch as Arch));
      const out = await bb.extract(input, bb.taps);
      for (const [tap, ref] of Object.entries(fx.taps)) {
        expect(out[tap].shape, `${arch} ${tap} shape`).toEqual(ref.shape);
        expect(bb.tapShape(tap, input.shape)).toEqual(ref.shape);
        expect(sampleError(out[tap].data, ref), `${arch} ${tap} samples`).toBeLessThan(1e-4);
        expect(Math.abs(l2(out[tap].data) - ref.l2) / ref.l2, `${arch} ${tap} l2`).toBeLessThan(1e-4);
      }
      // A single shallow tap stops early and gives the same values as the full pass.
      const stem = await bb.extract(input, ['stem']);
      expect(Array.from(stem.stem.data.subarray(0, 64))).toEqual(Array.from(out.stem.data.subarray(0, 64)));
      bb.dispose();
    });
  }
});

describe('backbone weights handling', () => {
  const r18 = fixture.archs.resnet18.tensors;
  const write = async (name: string, tensors: [string, number[]][]) => {
    const p = join(dir, name);
    await writeSeededWeights(p, tensors);
    return p;
  };

  it('a file holding only the first stages offers taps up to the last complete stage', async () => {
    const p = await write('r18-l2.safetensors', r18.filter(([n]) => !n.startsWith('layer3') && !n.startsWith('layer4')));
    const bb = await Backbone.load({ arch: 'resnet18', weights: p });
    expect(bb.availableTaps).toEqual(['stem', 'layer1', 'layer2']);
    expect(bb.deepestTap).toBe('layer2');
    const out = await bb.extract(input, ['layer2']);
    expect(sampleError(out.layer2.data, fixture.archs.resnet18.taps.layer2)).toBeLessThan(1e-4);
    const err = await bb.extract(input, ['layer3']).catch((e) => e);
    expect(err).toBeInstanceOf(AnomalensError);
    expect(err.code).toBe('ERR_WEIGHTS_MISMATCH');
    expect(err.message).toMatch(/tap 'layer3' is deeper than the weights .* hold taps up to 'layer2'/);
  });

  it('missing, unexpected and mis-shaped tensors are errors naming the tensor', async () => {
    const cases: [string, [string, number[]][], RegExp][] = [
      ['missing', r18.filter(([n]) => n !== 'layer1.1.bn2.running_var'), /lacks 1 tensor\(s\) of layer1 for resnet18: layer1\.1\.bn2\.running_var/],
      ['unexpected', [...r18, ['layer1.0.extra.weight', [3]]], /unexpected for resnet18: layer1\.0\.extra\.weight/],
      ['misshaped', r18.map(([n, s]) => [n, n === 'layer2.0.conv1.weight' ? [128, 64, 1, 3] : s] as [string, number[]]),
        /tensor 'layer2\.0\.conv1\.weight' .* has shape \[128, 64, 1, 3\], expected \[128, 64, 3, 3\]/],
      ['nostem', r18.filter(([n]) => n !== 'conv1.weight'), /lacks 1 tensor\(s\) of the stem for resnet18: conv1\.weight/],
      ['gap', r18.filter(([n]) => !n.startsWith('layer2')), /lacks .* of layer2/],
    ];
    for (const [name, tensors, pattern] of cases) {
      const p = await write(`${name}.safetensors`, tensors);
      const err = await Backbone.load({ arch: 'resnet18', weights: p }).catch((e) => e);
      expect(err, name).toBeInstanceOf(AnomalensError);
      expect(err.code, name).toBe('ERR_WEIGHTS_MISMATCH');
      expect(err.message, name).toMatch(pattern);
    }
  });

  it('the wrong arch for a file is a clear error', async () => {
    const p = await write('r18.safetensors', r18);
    const err = await Backbone.load({ arch: 'resnet50', weights: p }).catch((e) => e);
    expect(err.code).toBe('ERR_WEIGHTS_MISMATCH');
    const err2 = await Backbone.load({ arch: 'resnet50_v2', weights: p }).catch((e) => e);
    expect(err2.message).toMatch(/no ONNX Model Zoo stem tensor/);
  });

  it('accepts num_batches_tracked and classifier tensors; F16 weights load', async () => {
    const p = join(dir, 'extras.safetensors');
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [n, s] of r18) tensors[n] = { shape: s, data: seededTensor(n, s) };
    tensors['fc.weight'] = { shape: [1000, 512], data: new Float32Array(512000) };
    tensors['fc.bias'] = { shape: [1000], data: new Float32Array(1000) };
    tensors['bn1.num_batches_tracked'] = { shape: [1], data: new Float32Array(1) };
    await writeSafetensors(p, tensors);
    const bb = await Backbone.load({ arch: 'resnet18', weights: p });
    expect(bb.availableTaps).toContain('avgpool');
  });

  it('validates arguments with TypeError / RangeError naming them', async () => {
    await expect(Backbone.load({ arch: 'resnet19' as Arch, weights: 'x' })).rejects.toThrow(RangeError);
    await expect(Backbone.load({ arch: 'resnet18', weights: 3 as unknown as string })).rejects.toThrow(
      /options\.weights must be a non-empty string, received 3/,
    );
    const missing = await Backbone.load({ arch: 'resnet18', weights: join(dir, 'none.safetensors') }).catch((e) => e);
    expect(missing.code).toBe('ERR_IO');
    const p = await write('r18b.safetensors', r18);
    const bb = await Backbone.load({ arch: 'resnet18', weights: p });
    await expect(bb.extract(input, ['layer9'])).rejects.toThrow(/taps\[0\] must be one of 'stem', 'layer1'/);
    await expect(bb.extract({ data: new Float32Array(10), shape: [1, 3, 2, 2] }, ['stem'])).rejects.toThrow(
      /input\.data must have 12 elements, received 10/,
    );
    await expect(bb.extract({ data: new Float32Array(16), shape: [1, 4, 2, 2] }, ['stem'])).rejects.toThrow(/input\.shape\[1\] must be 3/);
    const nan = new Float32Array(3 * 32 * 32);
    nan[77] = NaN;
    await expect(bb.extract({ data: nan, shape: [1, 3, 32, 32] }, ['stem'])).rejects.toThrow(/input\.data\[77\] is NaN/);
    await expect(bb.extract(input, ['stem', 'stem'])).rejects.toThrow(/must not repeat/);
    const tiny = await bb.extract({ data: new Float32Array(3), shape: [1, 3, 1, 1] }, ['layer4']);
    expect(tiny.layer4.shape).toEqual([1, 512, 1, 1]);
  });

  it('dispose is refused while extract runs, and later calls say disposed', async () => {
    const p = await write('r18c.safetensors', r18);
    const bb = await Backbone.load({ arch: 'resnet18', weights: p });
    const pending = bb.extract(input, ['layer4']);
    expect(() => bb.dispose()).toThrow(expect.objectContaining({ code: 'ERR_BUSY' }));
    await pending;
    bb.dispose();
    await expect(bb.extract(input, ['stem'])).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
  });

  it('concurrent extract() calls (several libuv workers sharing one plan) give identical outputs', async () => {
    const p = await write('r18e.safetensors', r18);
    const bb = await Backbone.load({ arch: 'resnet18', weights: p });
    const one = { data: input.data.subarray(0, 3 * 97 * 131), shape: [1, 3, 97, 131] as [number, number, number, number] };
    const first = await bb.extract(one, ['layer3']);
    const runs = await Promise.all(Array.from({ length: 12 }, () => bb.extract(one, ['layer3'])));
    for (const r of runs) expect(Array.from(r.layer3.data)).toEqual(Array.from(first.layer3.data));
  });

  it('profile() reports every step with its oneDNN implementation', async () => {
    const p = await write('r18d.safetensors', r18);
    const bb = await Backbone.load({ arch: 'resnet18', weights: p });
    const { layers, outputs } = await bb.profile(input, ['layer1']);
    expect(outputs.layer1.shape).toEqual([2, 64, 25, 33]);
    const convs = layers.filter((l) => l.gflop > 0);
    expect(convs.map((l) => l.name)).toEqual(['conv1', 'layer1.0.conv1', 'layer1.0.conv2', 'layer1.1.conv1', 'layer1.1.conv2']);
    expect(layers.every((l) => l.impl.length > 0 && l.ms >= 0)).toBe(true);
  });
});

describe('real ResNet-50 v2 ImageNet weights on magnetic-tile images (float64 reference)', async () => {
  const { resnet50v2Weights, magneticTile, missing } = await import('../helpers/shared-data.js');
  const { loadBatch, IMAGENET_PREPROCESS } = await import('../../lib/image/images.js');
  const reason = missing(resnet50v2Weights) ?? missing(magneticTile);
  const real: { images: string[]; input: TapFixture; taps: Record<string, TapFixture> } = JSON.parse(
    readFileSync(join(import.meta.dirname, '..', 'fixtures/backbone/real.json'), 'utf8'),
  );
  it.skipIf(reason)(`stem and stages 1-3 within 1e-4 relative${reason ? ` (${reason})` : ''}`, async () => {
    const batch = await loadBatch(real.images.map((p) => join(magneticTile, p)), IMAGENET_PREPROCESS);
    // Preprocessing first, so a failure says which half differs.
    expect(batch.shape).toEqual(real.input.shape);
    expect(sampleError(batch.data, real.input), 'preprocessed input').toBeLessThan(1e-5);
    const bb = await Backbone.load({ arch: 'resnet50_v2', weights: resnet50v2Weights });
    expect(bb.availableTaps).toEqual(['stem', 'stage1', 'stage2', 'stage3']);
    const out = await bb.extract(batch, ['stem', 'stage1', 'stage2', 'stage3']);
    for (const [tap, ref] of Object.entries(real.taps)) {
      expect(out[tap].shape).toEqual(ref.shape);
      expect(sampleError(out[tap].data, ref), tap).toBeLessThan(1e-4);
      expect(Math.abs(l2(out[tap].data) - ref.l2) / ref.l2, `${tap} l2`).toBeLessThan(1e-4);
    }
    const err = await bb.extract(batch, ['stage4']).catch((e) => e);
    expect(err.code).toBe('ERR_WEIGHTS_MISMATCH');
    bb.dispose();
  });
  if (reason) it('real-weights parity skipped', () => console.log(reason));
});
