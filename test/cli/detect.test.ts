import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSeededWeights } from '../helpers/seeded.js';
import { runCli as run } from '../helpers/cli.js';
import { exited, spawnCli, waitForLine } from '../serve/helpers.js';
import { tempDir } from '../helpers/tmp.js';

const parity = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures/backbone/parity.json'), 'utf8'));
const { dir, cleanup } = tempDir();
const weights = join(dir, 'r18.safetensors');
const data = join(dir, 'tile');

/** A textured grey image; `defect` paints a bright square where the mask is. */
async function tile(path: string, seed: number, defect?: { mask: string }): Promise<void> {
  const w = 72, h = 64;
  const px = Buffer.alloc(w * h);
  for (let i = 0; i < px.length; i++) px[i] = 100 + ((i * 7 + seed * 13 + ((i / w) | 0) * 3) % 40);
  const mask = Buffer.alloc(w * h);
  if (defect) {
    for (let y = 20; y < 36; y++) for (let x = 30; x < 46; x++) (px[y * w + x] = 250), (mask[y * w + x] = 255);
    await sharp(mask, { raw: { width: w, height: h, channels: 1 } }).png().toFile(defect.mask);
  }
  await sharp(px, { raw: { width: w, height: h, channels: 1 } }).png().toFile(path);
}

beforeAll(async () => {
  await writeSeededWeights(weights, parity.archs.resnet18.tensors);
  for (const d of ['train/good', 'test/good', 'test/spot', 'ground_truth/spot']) mkdirSync(join(data, d), { recursive: true });
  for (let i = 0; i < 6; i++) await tile(join(data, 'train/good', `${i}.png`), i);
  for (let i = 0; i < 3; i++) await tile(join(data, 'test/good', `${i}.png`), 10 + i);
  for (let i = 0; i < 3; i++) await tile(join(data, 'test/spot', `${i}.png`), 20 + i, { mask: join(data, 'ground_truth/spot', `${i}_mask.png`) });
});
afterAll(cleanup);

describe('anomalens fit / predict / eval', () => {
  const model = join(dir, 'model.anomalens');

  it('fit writes a detector; predict --out writes overlays and scores.csv', async () => {
    let r = await run('fit', '--method', 'patchcore', '--arch', 'resnet18', '--weights', weights, '--data', data, '--out', model,
      '--size', '64', '--option', 'coreset=1', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ method: 'patchcore', trainImages: 6 });
    expect(existsSync(model)).toBe(true);
    const out = join(dir, 'pred');
    r = await run('predict', '--model', model, '--data', join(data, 'test/spot'), join(data, 'test/good/0.png'), '--out', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(4);
    expect(readdirSync(out).sort()).toEqual(['0_overlay.png', '1_overlay.png', '2_overlay.png', 'scores.csv']);
    const meta = await sharp(join(out, '1_overlay.png')).metadata();
    expect([meta.width, meta.height]).toEqual([72, 64]);
    const csv = readFileSync(join(out, 'scores.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('path,score,label,normalizedScore');
    expect(csv).toHaveLength(5);
  });

  it('fit --method reverse-distillation trains with an epoch line per epoch', async () => {
    const rd = join(dir, 'rd.anomalens');
    const r = await run('fit', '--method', 'reverse-distillation', '--arch', 'resnet18', '--weights', weights, '--data', data, '--out', rd,
      '--size', '64', '--option', 'epochs=2', '--option', 'batchSize=4', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ method: 'reverse-distillation', trainImages: 6 });
    expect(r.stderr).toMatch(/epoch 1\/2: loss [0-9.]+, [0-9.]+ img\/s, ETA \d+ s/);
    expect(r.stderr).toMatch(/epoch 2\/2/);
    expect(existsSync(rd)).toBe(true);
  }, 120_000);

  it('fit --method panda --epochs N trains with an epoch line per epoch; eval scores it (image level); --epochs elsewhere is a usage error', async () => {
    const panda = join(dir, 'panda.anomalens');
    let r = await run('fit', '--method', 'panda', '--arch', 'resnet18', '--weights', weights, '--data', data, '--out', panda,
      '--size', '64', '--epochs', '2', '--option', 'batchSize=4', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ method: 'panda', trainImages: 6 });
    expect(r.stderr).toMatch(/epoch 1\/2: loss [0-9.e-]+, [0-9.]+ img\/s, ETA \d+ s/);
    expect(r.stderr).toMatch(/epoch 2\/2/);
    r = await run('eval', '--model', panda, '--data', data, '--json');
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report).toMatchObject({ method: 'panda', pixelAuroc: null, aupro: null });
    expect(report.imageAuroc).toBeGreaterThanOrEqual(0);
    r = await run('fit', '--method', 'padim', '--arch', 'resnet18', '--weights', weights, '--data', data, '--out', join(dir, 'x.anomalens'), '--epochs', '3');
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/--epochs applies to the training methods \(panda, reverse-distillation\), not to 'padim'/);
    r = await run('fit', '--method', 'panda', '--arch', 'resnet18', '--weights', weights, '--data', data, '--out', join(dir, 'x.anomalens'), '--epochs', '-1');
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/--epochs must be a non-negative integer/);
  }, 120_000);

  it("the progress bar names the 'build' phase: training for a training method, memory bank otherwise", async () => {
    // The bar draws only on a terminal: stderr poses as one for these two in-process runs.
    const had = Object.getOwnPropertyDescriptor(process.stderr, 'isTTY');
    Object.defineProperty(process.stderr, 'isTTY', { value: true, configurable: true });
    try {
      const rd = await run('fit', '--method', 'reverse-distillation', '--arch', 'resnet18', '--weights', weights, '--data', data, '--out', join(dir, 'rd-bar.anomalens'),
        '--size', '64', '--option', 'epochs=1', '--option', 'batchSize=3');
      expect(rd.code, rd.stderr).toBe(0);
      expect(rd.stderr).toMatch(/\rtraining \[[#.]+\] 1000\/1000 [0-9.]+ ‰\/s/);
      expect(rd.stderr).not.toMatch(/memory bank/);
      const pc = await run('fit', '--method', 'patchcore', '--arch', 'resnet18', '--weights', weights, '--data', data, '--out', join(dir, 'pc-bar.anomalens'),
        '--size', '64', '--option', 'coreset=0.5');
      expect(pc.code, pc.stderr).toBe(0);
      expect(pc.stderr).toMatch(/\rmemory bank \[/);
      expect(pc.stderr).not.toMatch(/training \[/);
    } finally {
      if (had) Object.defineProperty(process.stderr, 'isTTY', had);
      else delete (process.stderr as { isTTY?: boolean }).isTTY;
    }
  }, 120_000);

  it('Ctrl-C during training stops after the step in flight: exit 130, the last complete checkpoint, no detector file; resume continues it', async () => {
    const ck = join(dir, 'sigint.safetensors');
    const out = join(dir, 'sigint.anomalens');
    const args = ['fit', '--method', 'reverse-distillation', '--arch', 'resnet18', '--weights', weights, '--data', data, '--out', out,
      '--size', '64', '--threads', '1', '--option', 'batchSize=2'];
    const child = spawnCli([...args, '--option', `checkpoint=${ck}`, '--option', 'epochs=1000']);
    await waitForLine(child, /^epoch 1\/1000: loss [0-9.]+, [0-9.]+ img\/s, ETA \d+ s$/, 90_000);
    child.kill('SIGINT');
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const { code } = await exited(child);
    expect(code, stderr).toBe(130);
    expect(stderr).toMatch(/interrupted: stopping after the step in flight/);
    expect(stderr).toMatch(/error \[ERR_ABORTED\]: training interrupted \(SIGINT\)/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith('sigint.safetensors.'))).toEqual([]);
    const { readSafetensors } = await import('../../lib/index.js');
    const epoch = Number((await readSafetensors(ck)).metadata.epoch);
    expect(epoch).toBeGreaterThanOrEqual(1);
    expect(epoch).toBeLessThan(1000);
    // Resume to one epoch more than the checkpoint's: one epoch line, the detector written.
    const r = await run(...args, '--option', `resume=${ck}`, '--option', `epochs=${epoch + 1}`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.match(/^epoch \d+\/\d+/gm)).toEqual([`epoch ${epoch + 1}/${epoch + 1}`]);
    expect(existsSync(out)).toBe(true);
  }, 180_000);

  it('eval --model prints the metrics; eval --method fits first and --save keeps the thresholds', async () => {
    let r = await run('eval', '--model', model, '--data', data, '--json');
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    for (const k of ['imageAuroc', 'pixelAuroc', 'aupro', 'f1', 'fitSeconds', 'predictImagesPerSecond']) expect(typeof report[k], k).toBe('number');
    // A bright 16x16 square on a faint texture: every method should find it.
    expect(report.imageAuroc).toBe(1);
    expect(report.pixelAuroc).toBeGreaterThan(0.9);
    const saved = join(dir, 'padim.anomalens');
    r = await run('eval', '--method', 'padim', '--arch', 'resnet18', '--weights', weights, '--data', data, '--size', '64', '--save', saved);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/image AUROC\s+1\.0000/);
    expect(r.stdout).toMatch(/AUPRO \(FPR <= 0\.3\)\s+0\.\d{4}|AUPRO \(FPR <= 0\.3\)\s+1\.0000/);
    r = await run('predict', '--model', saved, '--data', join(data, 'test/spot/0.png'), '--json');
    const [p] = JSON.parse(r.stdout);
    expect(p.predLabel).toBe(1);
    expect(p.normalizedScore).toBeGreaterThanOrEqual(0.5);
  });

  it('errors: CUDA on a CPU build, missing data, incomplete flags', async () => {
    let r = await run('fit', '--method', 'dn2', '--arch', 'resnet18', '--weights', weights, '--data', data, '--out', join(dir, 'x'), '--device', 'cuda');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_UNSUPPORTED.*--device cuda/);
    r = await run('fit', '--method', 'dn2', '--arch', 'resnet18', '--weights', weights, '--data', join(dir, 'nope'), '--out', join(dir, 'x'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_IO/);
    // --arch and --weights are optional, but a v2 arch has no default weights on the Hub
    r = await run('eval', '--method', 'dn2', '--arch', 'resnet50_v2', '--data', data);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--weights is required for arch 'resnet50_v2'/);
    r = await run('eval', '--data', data);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/give either --model or --method/);
    r = await run('fit', '--method', 'svm', '--arch', 'resnet18', '--weights', weights, '--data', data, '--out', join(dir, 'x'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--method must be one of dn2, spade, patchcore, padim/);
    expect(existsSync(join(dir, 'x'))).toBe(false);
  });
});

describe('anomalens bench', () => {
  it('times the forward pass, kNN and map kernels and prints throughput', async () => {
    const r = await run('bench', '--arch', 'resnet18', '--weights', weights, '--size', '64', '--batch', '2', '--time', '50', '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.results.map((x: { task: string }) => x.task)).toEqual([
      'forward resnet18@64 to layer4, batch 2',
      'knn exact 20000x256, 1000 queries, k=1',
      'knn exact 20000x256, 1000 queries, k=10',
      'resize 28x28 -> 224x224, 16 maps',
      'gaussian blur sigma 4, 16 maps of 224x224',
      'cosine distance map [8, 256, 56, 56]',
    ]);
    for (const x of out.results) expect(x.throughput).toBeGreaterThan(0);
  });
});
