#!/usr/bin/env node
// PANDA against DN2, one-class on Fashion-MNIST: each class in turn is normal, the detector is
// fitted on its first --train images, a fixed stratified test subset (--test-per-class of every
// class) is scored, AUROC of "not this class". Variants, all through Detector: DN2 (the
// pretrained features), PANDA with the fixed epoch count (the original's "early stopping"),
// PANDA with sample-wise early stopping (SES, checkpoints every --ses-every epochs), and PANDA
// with EWC when --fisher gives a diagonal Fisher (anomalens fisher, from a labelled set that
// shares neither images nor classes with Fashion-MNIST).
//
//   npx tsc -p tsconfig.json && node bench/panda-fashion-mnist.mjs [--size 64] [--train 200] [--test-per-class 100] [--epochs 15] [--classes 0,1,...] [--variants dn2,es,ses,ewc] [--fisher F] [--out results.jsonl]
import { appendFileSync, existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { existsSync as exists } from 'node:fs';
import { Detector, imageAuroc, preprocessImages, setNumThreads } from '../dist/lib/index.js';
import { CLASS_NAMES, FASHION_MNIST_DIR, firstPerClass, loadFashionMnist, rawImages } from './fashion-mnist.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    weights: { type: 'string', default: join(root, '..', 'shared', 'data', 'weights', 'resnet50v2-onnxzoo-stages1-3.safetensors') },
    arch: { type: 'string', default: 'resnet50_v2' },
    size: { type: 'string', default: '64' },
    train: { type: 'string', default: '200' },
    'test-per-class': { type: 'string', default: '100' },
    epochs: { type: 'string', default: '15' },
    'ses-every': { type: 'string', default: '5' },
    classes: { type: 'string', default: '0,1,2,3,4,5,6,7,8,9' },
    variants: { type: 'string', default: 'dn2,es,ses,ewc' },
    fisher: { type: 'string' },
    threads: { type: 'string', default: '2' },
    out: { type: 'string' },
  },
});
if (!exists(FASHION_MNIST_DIR)) { console.log(`skipped: ${FASHION_MNIST_DIR} is absent (apt-get install dataset-fashion-mnist)`); process.exit(0); }
const fm = loadFashionMnist();

/** Images `indices` as one normalised [n, 3, size, size] batch, through the library's preprocessing. */
async function batchOf(images, indices) {
  const data = new Float32Array(indices.length * 3 * size * size);
  for (let s = 0; s < indices.length; s += 256) {
    const b = await preprocessImages(rawImages(images, indices.slice(s, s + 256)), { resize: [size, size] });
    data.set(b.data, s * 3 * size * size);
  }
  return { data, shape: [indices.length, 3, size, size] };
}
if (!existsSync(values.weights)) { console.log(`skipped: ${values.weights} is absent`); process.exit(0); }
setNumThreads(Number(values.threads));
const size = Number(values.size), epochs = Number(values.epochs);
let variants = values.variants.split(',');
if (variants.includes('ewc') && !values.fisher) {
  console.error('note: no --fisher, so the EWC variant is left out');
  variants = variants.filter((v) => v !== 'ewc');
}
const options = {
  dn2: { method: 'dn2' },
  es: { method: 'panda', methodOptions: { epochs } },
  ses: { method: 'panda', methodOptions: { epochs, ses: true, sesEvery: Number(values['ses-every']) } },
  ewc: { method: 'panda', methodOptions: { epochs, ewc: values.fisher } },
};
// The first --test-per-class test images of every class, in file order.
const testIdx = firstPerClass(fm.test.labels, Number(values['test-per-class'])).sort((a, b) => a - b);
const test = await batchOf(fm.test.images, testIdx);
const load = () => loadavg().map((v) => v.toFixed(1)).join(' ');
console.error(`setting: ${values.arch} ${size}x${size}, ${values.train} training images per class, ${testIdx.length} test images, ${epochs} epochs, load ${load()}`);
const rows = [];
for (const c of values.classes.split(',').map(Number)) {
  const train = await batchOf(fm.train.images, firstPerClass(fm.train.labels, Number(values.train), [c]));
  const labels = Uint8Array.from(testIdx, (i) => (fm.test.labels[i] === c ? 0 : 1));
  const row = { class: c, name: CLASS_NAMES[c] };
  for (const v of variants) {
    const t0 = performance.now();
    const det = await Detector.create({ arch: values.arch, weights: values.weights, size, batchSize: 32, ...options[v] });
    await det.fit(train);
    const fitSeconds = (performance.now() - t0) / 1000;
    const scores = Float32Array.from((await det.predict(test)).map((p) => p.predScore));
    row[v] = Number((await imageAuroc(scores, labels)).toFixed(4));
    row[`${v}Seconds`] = Number(((performance.now() - t0) / 1000).toFixed(1));
    row[`${v}FitSeconds`] = Number(fitSeconds.toFixed(1));
    det.dispose();
  }
  row.load = load();
  rows.push(row);
  console.log(JSON.stringify(row));
  if (values.out) appendFileSync(values.out, JSON.stringify(row) + '\n');
}
const mean = (v) => rows.reduce((a, r) => a + r[v], 0) / rows.length;
console.log(`| class | ${variants.join(' | ')} |\n|---|${variants.map(() => '---').join('|')}|`);
for (const r of rows) console.log(`| ${r.class} ${r.name} | ${variants.map((v) => r[v].toFixed(3)).join(' | ')} |`);
console.log(`| mean | ${variants.map((v) => mean(v).toFixed(4)).join(' | ')} |`);
