#!/usr/bin/env node
// Reverse Distillation on magnetic-tile (../shared/data, MVTec layout) with the ImageNet
// ResNet-50 v2 teacher (stages 1-3): anomalens' Detector fit (a few epochs on a training
// subset) + evaluate on a test subset, then the PyTorch eager peer (bench/peers/rd_torch.py) doing
// the same training on the same images with the same threads, in the same run. Seconds per
// epoch on both sides (teacher taps cached on both: the teacher is frozen, no augmentation).
//
//   npx tsc -p tsconfig.json && node bench/rd-real.mjs [--size 128] [--train 160] [--epochs 3] [--peerEpochs N] [--threads 2]
//
// Data: Huang, Qiu, Yuan, "Surface defect saliency of magnetic tile", The Visual Computer 2020.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Detector, openMvtec, setNumThreads } from '../dist/lib/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '128' },
    train: { type: 'string', default: '160' },
    epochs: { type: 'string', default: '3' },
    // The peer's epochs (default: the same); only its seconds per epoch and losses are compared.
    peerEpochs: { type: 'string' },
    threads: { type: 'string', default: '2' },
    goodTest: { type: 'string', default: '40' },
    perDefect: { type: 'string', default: '8' },
    noPeer: { type: 'boolean', default: false },
    data: { type: 'string', default: join(root, '..', 'shared', 'data', 'magnetic-tile') },
    weights: { type: 'string', default: join(root, '..', 'shared', 'data', 'weights', 'resnet50v2-onnxzoo-stages1-3.safetensors') },
  },
});
for (const p of [values.data, values.weights]) if (!existsSync(p)) { console.log(`skipped: ${p} is absent`); process.exit(0); }
const size = Number(values.size), epochs = Number(values.epochs), threads = Number(values.threads);
const load = () => loadavg().map((v) => v.toFixed(2)).join(', ');
const loadBefore = load();

const full = await openMvtec(values.data);
const byName = (a, b) => basename(a.path).localeCompare(basename(b.path));
const train = [...full.train].sort(byName).slice(0, Number(values.train));
const test = [];
for (const type of [...new Set(full.test.map((s) => s.defectType))].sort()) {
  const of = full.test.filter((s) => s.defectType === type).sort(byName);
  test.push(...of.slice(0, type === 'good' ? Number(values.goodTest) : Number(values.perDefect)));
}
const dataset = { ...full, train, test };

setNumThreads(threads);
const events = [];
const det = await Detector.create({
  method: 'reverse-distillation', arch: 'resnet50_v2', weights: values.weights, size, batchSize: 16,
  methodOptions: { epochs, onEpoch: (e) => { events.push(e); console.error(`anomalens epoch ${e.epoch}/${e.epochs}: loss ${e.loss.toFixed(4)}, ${e.imagesPerSecond.toFixed(2)} img/s`); } },
});
const report = await det.evaluate(dataset);
const ours = {
  epochSeconds: events.map((e) => train.length / e.imagesPerSecond),
  losses: events.map((e) => e.loss),
  fitSeconds: report.fitSeconds,
  imageAuroc: report.imageAuroc, pixelAuroc: report.pixelAuroc, aupro: report.aupro,
  predictImagesPerSecond: report.predictImagesPerSecond,
};
console.error(JSON.stringify(ours));

let peer = null;
if (!values.noPeer) {
  const dir = mkdtempSync(join(tmpdir(), 'rd-peer-'));
  try {
    const subset = join(dir, 'subset.json');
    writeFileSync(subset, JSON.stringify({ train: train.map((s) => s.path) }));
    const out = execFileSync('/usr/bin/python3', [join(root, 'bench', 'peers', 'rd_torch.py'), subset, values.weights, String(threads), String(size), String(values.peerEpochs ?? epochs)],
      { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads) }, stdio: ['ignore', 'pipe', 'inherit'] });
    peer = JSON.parse(out.trim().split('\n').pop());
    console.error(JSON.stringify(peer));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const loadAfter = load();
const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
console.log(`magnetic-tile subset: ${train.length} train, ${test.length} test (${test.filter((s) => s.label).length} defective); size ${size}; ${epochs} epochs; ${threads} threads; load ${loadBefore} before, ${loadAfter} after`);
console.log('| impl | s / epoch (each) | mean s / epoch | loss per epoch | image AUROC | pixel AUROC | AUPRO |');
console.log('|---|---|---|---|---|---|---|');
const f4 = (v) => (v === null || v === undefined ? 'n/a' : v.toFixed(4));
console.log(`| anomalens | ${ours.epochSeconds.map((s) => s.toFixed(1)).join(' / ')} | ${mean(ours.epochSeconds).toFixed(1)} | ${ours.losses.map((l) => l.toFixed(4)).join(' / ')} | ${f4(ours.imageAuroc)} | ${f4(ours.pixelAuroc)} | ${f4(ours.aupro)} |`);
if (peer)
  console.log(`| torch eager | ${peer.epochSeconds.map((s) => s.toFixed(1)).join(' / ')} | ${mean(peer.epochSeconds).toFixed(1)} | ${peer.losses.map((l) => l.toFixed(4)).join(' / ')} | - | - | - |`);
if (peer) console.log(`speed-up (mean s / epoch, torch / anomalens): ${(mean(peer.epochSeconds) / mean(ours.epochSeconds)).toFixed(2)}x`);
