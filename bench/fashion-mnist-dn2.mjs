#!/usr/bin/env node
// DN2 one-class AUROC on Fashion-MNIST (Debian package dataset-fashion-mnist): each class in
// turn is "normal" (fit on its training images), all test images are scored, AUROC of
// "not this class"; reported per class and as the mean over the 10 classes.
//
//   node bench/fashion-mnist-dn2.mjs [--weights W] [--arch resnet50_v2] [--size 112] [--train-per-class 1000] [--threads 2]
//
// Features are extracted once (the backbone does not depend on the class); DN2's scoring (k = 2,
// sum of squared L2 distances on pooled features) is then run per class with knnSearch, the
// same computation as the dn2 method of Detector (lib/methods/dn2.ts).
import { parseArgs } from 'node:util';
import { Backbone, imageAuroc, knnSearch, preprocessImages, setNumThreads } from '../dist/lib/index.js';
import { FASHION_MNIST_DIR, firstPerClass, loadFashionMnist, rawImages } from './fashion-mnist.mjs';

const { values } = parseArgs({
  options: {
    weights: { type: 'string', default: '../shared/data/weights/resnet50v2-onnxzoo-stages1-3.safetensors' },
    arch: { type: 'string', default: 'resnet50_v2' },
    size: { type: 'string', default: '112' },
    'train-per-class': { type: 'string', default: '1000' },
    threads: { type: 'string', default: '2' },
    dir: { type: 'string', default: FASHION_MNIST_DIR },
  },
});
setNumThreads(Number(values.threads));
const size = Number(values.size);
const perClass = Number(values['train-per-class']);

async function pooled(bb, tap, images, indices) {
  const out = [];
  const t0 = performance.now();
  for (let s = 0; s < indices.length; s += 32) {
    const raw = rawImages(images, indices.slice(s, s + 32));
    const batch = await preprocessImages(raw, { resize: [size, size] });
    const f = (await bb.extract(batch, [tap]))[tap];
    const [n, c, h, w] = f.shape;
    for (let i = 0; i < n; i++) {
      const v = new Float32Array(c);
      for (let ch = 0; ch < c; ch++) {
        let sum = 0;
        const base = (i * c + ch) * h * w;
        for (let j = 0; j < h * w; j++) sum += f.data[base + j];
        v[ch] = sum / (h * w);
      }
      out.push(v);
    }
  }
  const secs = (performance.now() - t0) / 1000;
  const dim = out[0].length;
  const flat = new Float32Array(out.length * dim);
  out.forEach((v, i) => flat.set(v, i * dim));
  return { data: flat, dim, secs };
}

const fm = loadFashionMnist(values.dir);
const [trainX, trainY, testX, testY] = [fm.train.images, fm.train.labels, fm.test.images, fm.test.labels];
const bb = await Backbone.load({ arch: values.arch, weights: values.weights });
const tap = bb.availableTaps.includes('avgpool') ? 'avgpool' : bb.deepestTap;
const trainIdx = firstPerClass(trainY, perClass);
const testIdx = Array.from({ length: testY.length }, (_, i) => i);
const tr = await pooled(bb, tap, trainX, trainIdx);
const te = await pooled(bb, tap, testX, testIdx);
const aurocs = [];
for (let c = 0; c < 10; c++) {
  const rows = trainIdx.map((i, j) => [i, j]).filter(([i]) => trainY[i] === c).map(([, j]) => j);
  const bank = new Float32Array(rows.length * tr.dim);
  rows.forEach((j, r) => bank.set(tr.data.subarray(j * tr.dim, (j + 1) * tr.dim), r * tr.dim));
  const r = await knnSearch({ data: bank, shape: [rows.length, tr.dim] }, { data: te.data, shape: [testIdx.length, tr.dim] }, { k: 2 });
  const scores = new Float32Array(testIdx.length);
  for (let i = 0; i < scores.length; i++) scores[i] = r.distances[2 * i] + r.distances[2 * i + 1];
  const labels = Uint8Array.from(testIdx, (i) => (testY[i] === c ? 0 : 1));
  aurocs.push(await imageAuroc(scores, labels));
}
const mean = aurocs.reduce((a, b) => a + b, 0) / 10;
console.log(JSON.stringify({
  arch: values.arch, tap: `${tap} (global average)`, size, trainPerClass: perClass, test: testIdx.length,
  aurocPerClass: aurocs.map((a) => Number(a.toFixed(4))), meanAuroc: Number(mean.toFixed(4)),
  featureImagesPerSecond: Number(((trainIdx.length + testIdx.length) / (tr.secs + te.secs)).toFixed(1)),
}));
