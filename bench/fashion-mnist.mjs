// Fashion-MNIST (Debian package dataset-fashion-mnist: gzipped IDX files in
// /usr/share/datasets/fashion-mnist) for the one-class benches: the four files, class subsets,
// and normalised batches through the library's own preprocessing (grey -> 3 channels, resize
// without crop, ImageNet normalisation).
import { existsSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { preprocessImages } from '../dist/lib/index.js';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

function idx(path) {
  const b = gunzipSync(readFileSync(path));
  const dims = b[3];
  const shape = Array.from({ length: dims }, (_, i) => b.readUInt32BE(4 + 4 * i));
  return { shape, data: b.subarray(4 + 4 * dims) };
}

/** The four files, or null (with the reason) when the package is not installed. */
export function loadFashionMnist(dir = FASHION_MNIST_DIR) {
  const files = ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'];
  const missing = files.find((f) => !existsSync(`${dir}/${f}`));
  if (missing) return { missing: `${dir}/${missing}` };
  const [trainX, trainY, testX, testY] = files.map((f) => idx(`${dir}/${f}`));
  return { trainX, trainY: trainY.data, testX, testY: testY.data };
}

/** The first `n` indices of class `c`. */
export function firstOfClass(labels, c, n) {
  const out = [];
  for (let i = 0; i < labels.length && out.length < n; i++) if (labels[i] === c) out.push(i);
  return out;
}

/** The first `perClass` indices of every class (a fixed, stratified subset). */
export function stratified(labels, perClass) {
  const out = [];
  for (let c = 0; c < 10; c++) out.push(...firstOfClass(labels, c, perClass));
  return out.sort((a, b) => a - b);
}

/** Images `indices` as one normalised [n, 3, size, size] batch. */
export async function fashionBatch(images, indices, size) {
  const raw = indices.map((i) => ({ data: images.data.subarray(i * 784, (i + 1) * 784), width: 28, height: 28, channels: 1 }));
  const parts = [];
  for (let s = 0; s < raw.length; s += 256) parts.push(await preprocessImages(raw.slice(s, s + 256), { resize: [size, size] }));
  const data = new Float32Array(indices.length * 3 * size * size);
  let o = 0;
  for (const p of parts) data.set(p.data, o), (o += p.data.length);
  return { data, shape: [indices.length, 3, size, size] };
}
