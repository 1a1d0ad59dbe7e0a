#!/usr/bin/env node
// Reverse Distillation one-class AUROC on Fashion-MNIST (Debian package dataset-fashion-mnist),
// the setting of RD's novelty-detection table (the paper reports 95.0 mean AUROC over the 10
// classes): each class in turn is "normal", a Detector with method 'reverse-distillation' is
// fitted on that class's first N training images, a test subset is scored, and the AUROC of
// "not this class" (image score = max of the anomaly map) is reported with the epoch seconds.
//
//   node bench/rd-fashion-mnist.mjs [--classes 0,1,2] [--size 64] [--train-per-class 1000]
//     [--epochs 20] [--test 2000] [--threads 2] [--batch 16] [--seed 0]
//     [--weights W] [--arch resnet50_v2] [--dir /usr/share/datasets/fashion-mnist]
//
// --test: a seeded stratified subset of that many test images (the same for every class), or
// all 10 000 (--test 10000). The 28 x 28 grey images are resized to --size (Pillow's bilinear,
// antialiased), replicated to RGB and normalised with the ImageNet mean / std, exactly as the
// Detector preprocesses files (det.preprocess), and passed as normalised Tensor4 batches. The
// teacher is ResNet-50 v2 (ONNX Model Zoo, stages 1-3) unless --arch / --weights say otherwise;
// the rest of the method is the original's defaults (Adam lr 0.005, betas (0.5, 0.999), batch
// 16, loss over flattened maps, sum of scales, sigma 4). Prints a JSON line with the setting,
// a JSON line per class and a markdown table. Run `npm run build` first (uses dist/).
import { parseArgs } from 'node:util';
import { Detector, imageAuroc, numThreads, preprocessImages, setNumThreads } from '../dist/lib/index.js';
import { CLASS_NAMES, FASHION_MNIST_DIR, firstPerClass, loadFashionMnist, rawImages, stratifiedSubset } from './fashion-mnist.mjs';

const { values } = parseArgs({
  options: {
    classes: { type: 'string', default: '0,1,2' },
    size: { type: 'string', default: '64' },
    'train-per-class': { type: 'string', default: '1000' },
    epochs: { type: 'string', default: '20' },
    test: { type: 'string', default: '2000' },
    threads: { type: 'string', default: '2' },
    batch: { type: 'string', default: '16' },
    seed: { type: 'string', default: '0' },
    weights: { type: 'string', default: '../shared/data/weights/resnet50v2-onnxzoo-stages1-3.safetensors' },
    arch: { type: 'string', default: 'resnet50_v2' },
    dir: { type: 'string', default: FASHION_MNIST_DIR },
  },
});

function int(name, min, max = Number.MAX_SAFE_INTEGER) {
  const v = Number(values[name]);
  if (!Number.isInteger(v) || v < min || v > max) {
    console.error(`--${name} must be an integer in [${min}, ${max}], received '${values[name]}'`);
    process.exit(2);
  }
  return v;
}
const classes = values.classes.split(',').map((s) => Number(s));
if (!classes.length || classes.some((c) => !Number.isInteger(c) || c < 0 || c > 9)) {
  console.error(`--classes must be a comma-separated list of 0-9, received '${values.classes}'`);
  process.exit(2);
}
const size = int('size', 32);
if (size % 32) {
  console.error(`--size must be a multiple of 32 (the bottleneck works at 1/32), received ${size}`);
  process.exit(2);
}
const perClass = int('train-per-class', 1, 6000);
const epochs = int('epochs', 1);
const testCount = int('test', 10);
const batch = int('batch', 1);
const seed = int('seed', 0);
setNumThreads(int('threads', 1));

const fm = loadFashionMnist(values.dir);
const testIdx = stratifiedSubset(fm.test.labels, testCount, seed);
const CHUNK = 256;

/** Normalised [n, 3, size, size] batch of the images at `indices`, as the Detector would make it. */
async function tensor(images, indices, preprocess) {
  const b = await preprocessImages(rawImages(images, indices), preprocess);
  return { data: b.data, shape: b.shape };
}

const setting = {
  bench: 'rd-fashion-mnist', arch: values.arch, weights: values.weights, size, trainPerClass: perClass, epochs, batchSize: batch,
  test: testIdx.length, testSubset: testIdx.length === fm.test.labels.length ? 'all' : `seeded stratified (seed ${seed})`,
  threads: numThreads(), seed, method: 'reverse-distillation (original defaults: Adam 0.005, betas 0.5/0.999, map loss, sum of scales, sigma 4)',
  paperMeanAuroc: 0.95,
};
console.log(JSON.stringify({ setting }));

const rows = [];
for (const c of classes) {
  const epochSeconds = [];
  const losses = [];
  const det = await Detector.create({
    method: 'reverse-distillation', arch: values.arch, weights: values.weights, size, batchSize: 32,
    methodOptions: { epochs, batchSize: batch, seed, onEpoch: (e) => (epochSeconds.push(perClass / e.imagesPerSecond), losses.push(e.loss)) },
  });
  const trainIdx = firstPerClass(fm.train.labels, perClass, [c]);
  const t0 = performance.now();
  await det.fit(await tensor(fm.train.images, trainIdx, det.preprocess));
  const fitSeconds = (performance.now() - t0) / 1000;
  const scores = new Float32Array(testIdx.length);
  const t1 = performance.now();
  for (let s = 0; s < testIdx.length; s += CHUNK) {
    const preds = await det.predict(await tensor(fm.test.images, testIdx.slice(s, s + CHUNK), det.preprocess));
    preds.forEach((p, i) => (scores[s + i] = p.predScore));
  }
  const predictSeconds = (performance.now() - t1) / 1000;
  const labels = Uint8Array.from(testIdx, (i) => (fm.test.labels[i] === c ? 0 : 1));
  const auroc = await imageAuroc(scores, labels);
  const row = {
    class: c, name: CLASS_NAMES[c], train: trainIdx.length, test: testIdx.length, auroc: Number(auroc.toFixed(4)),
    firstLoss: Number(losses[0].toFixed(5)), lastLoss: Number(losses.at(-1).toFixed(5)),
    epochSeconds: Number((epochSeconds.reduce((a, b) => a + b, 0) / epochSeconds.length).toFixed(2)),
    trainImagesPerSecond: Number((perClass / (epochSeconds.reduce((a, b) => a + b, 0) / epochSeconds.length)).toFixed(1)),
    fitSeconds: Number(fitSeconds.toFixed(1)), predictImagesPerSecond: Number((testIdx.length / predictSeconds).toFixed(1)),
  };
  rows.push(row);
  console.log(JSON.stringify(row));
}

const mean = rows.reduce((a, r) => a + r.auroc, 0) / rows.length;
console.log('');
console.log(`Reverse Distillation, Fashion-MNIST one-class: ${values.arch} teacher (${values.weights.split('/').pop()}), ${size}x${size}, ` +
  `${perClass} training images per class, ${epochs} epochs of batch ${batch}, ${setting.test} test images (${setting.testSubset}), ${setting.threads} threads.`);
console.log('');
console.log('| class | name | AUROC | loss first -> last | epoch s | train img/s | fit s | predict img/s |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of rows)
  console.log(`| ${r.class} | ${r.name} | ${r.auroc.toFixed(4)} | ${r.firstLoss} -> ${r.lastLoss} | ${r.epochSeconds} | ${r.trainImagesPerSecond} | ${r.fitSeconds} | ${r.predictImagesPerSecond} |`);
console.log(`| mean (${rows.length} classes) | | ${mean.toFixed(4)} | | | | | |`);
console.log('');
console.log(`The paper's F-MNIST figure (RD, novelty detection, mean of 10 classes): 95.0.`);
