import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backbone, loadBatch, readSafetensors, writeSafetensors, IMAGENET_PREPROCESS } from '../../lib/index.js';
import { seededInput, writeSeededWeights } from '../helpers/seeded.js';
import { readFileSync } from 'node:fs';
import { runCli as run } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const fixture = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures/backbone/parity.json'), 'utf8'));
const { dir, cleanup } = tempDir();
const weights = join(dir, 'r18.safetensors');

/** Writes a PNG of the given size with a deterministic gradient. */
async function png(path: string, width: number, height: number): Promise<void> {
  const data = Buffer.alloc(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + (i % 7) * 11) & 255;
  await sharp(data, { raw: { width, height, channels: 3 } }).png().toFile(path);
}

beforeAll(async () => {
  await writeSeededWeights(weights, fixture.archs.resnet18.tensors);
});
afterAll(cleanup);

describe('anomalens features', () => {
  it('--input: writes one tensor per tap, equal to Backbone.extract', async () => {
    const shape = [5, 3, 64, 48];
    const data = seededInput(shape);
    const input = join(dir, 'input.safetensors');
    await writeSafetensors(input, { input: { shape, data } });
    const out = join(dir, 'f.safetensors');
    const r = await run('features', '--arch', 'resnet18', '--weights', weights, '--taps', 'layer1,layer3', '--input', input, '--out', out, '--batch', '2', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.count).toBe(5);
    const file = await readSafetensors(out);
    expect(file.metadata.arch).toBe('resnet18');
    const bb = await Backbone.load({ arch: 'resnet18', weights });
    const ref = await bb.extract({ data, shape: shape as [number, number, number, number] }, ['layer1', 'layer3']);
    for (const tap of ['layer1', 'layer3']) {
      expect(file.tensors[tap].shape).toEqual(ref[tap].shape);
      // Batches of 2 vs one batch of 5: oneDNN may block differently; equal to float32 rounding.
      const a = file.tensors[tap].data!;
      const b = ref[tap].data;
      let worst = 0;
      let scale = 0;
      for (let i = 0; i < a.length; i++) {
        worst = Math.max(worst, Math.abs(a[i] - b[i]));
        scale = Math.max(scale, Math.abs(b[i]));
      }
      expect(worst / scale).toBeLessThan(1e-5);
    }
  });

  it('--images: a folder of images, preprocessed like loadBatch', async () => {
    const imgs = join(dir, 'imgs');
    mkdirSync(imgs);
    const pngs = ['a.png', 'b.png', 'c.png'];
    await png(join(imgs, 'a.png'), 50, 40);
    await png(join(imgs, 'b.png'), 41, 77);
    await png(join(imgs, 'c.png'), 33, 33);
    const out = join(dir, 'img.safetensors');
    const r = await run('features', '--arch', 'resnet18', '--weights', weights, '--taps', 'layer2', '--images', imgs, '--size', '40', '--crop', '32', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/layer2 \[\d+, 128, 4, 4\]/);
    const file = await readSafetensors(out);
    const bb = await Backbone.load({ arch: 'resnet18', weights });
    const batch = await loadBatch(pngs.sort().map((f) => join(imgs, f)), { resize: 40, crop: 32 });
    const ref = await bb.extract(batch, ['layer2']);
    expect(file.tensors.layer2.shape).toEqual(ref.layer2.shape);
    expect(JSON.parse(file.metadata.files)).toEqual(pngs.sort());
    expect(IMAGENET_PREPROCESS).toEqual({ resize: 256, crop: 224 });
  });

  it('bad arguments exit 2 with a message; bad files exit 1 with the code; nothing half-written', async () => {
    const out = join(dir, 'never.safetensors');
    let r = await run('features', '--arch', 'resnet18', '--weights', weights, '--taps', 'layer1', '--out', out);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/exactly one of --images or --input/);
    r = await run('features', '--arch', 'resnet7', '--weights', weights, '--taps', 'layer1', '--input', 'x', '--out', out);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--arch must be one of/);
    r = await run('features', '--arch', 'resnet18', '--weights', weights, '--taps', 'layer1', '--input', join(dir, 'nope.safetensors'), '--out', out);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error \[ERR_IO\].*nope\.safetensors/);
    const corrupt = join(dir, 'corrupt.png');
    writeFileSync(corrupt, 'not a png');
    r = await run('features', '--arch', 'resnet18', '--weights', weights, '--taps', 'layer1', '--images', corrupt, '--out', out);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/corrupt\.png/);
    // Mixed output sizes (no crop, different aspect ratios) fail on the second batch: no output left.
    const mixed = join(dir, 'mixed');
    mkdirSync(mixed);
    await png(join(mixed, '1.png'), 64, 32);
    await png(join(mixed, '2.png'), 32, 64);
    r = await run('features', '--arch', 'resnet18', '--weights', weights, '--taps', 'stem', '--images', mixed, '--size', '32', '--crop', 'none', '--batch', '1', '--out', out);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/all inputs must preprocess to one size: the first batch is 32x64 but '.*2\.png'\.\.\. give 64x32/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    r = await run('features', '--arch', 'resnet18', '--weights', weights, '--taps', 'stem', '--images', empty, '--out', out);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/empty/);
  });
});
