// Fashion-MNIST for the one-class benches (Debian package dataset-fashion-mnist: IDX files,
// gzipped): loading, the images as RawImage objects for preprocessImages, the per-class
// training picks and a seeded stratified test subset. Used by fashion-mnist-dn2.mjs and
// rd-fashion-mnist.mjs.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { mulberry32 } from '../dist/lib/core/random.js';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
export const CLASS_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

/** One IDX file: { shape, data } (data: the raw uint8 payload). */
export function readIdx(path) {
  const b = gunzipSync(readFileSync(path));
  if (b[0] !== 0 || b[1] !== 0 || b[2] !== 0x08) throw new Error(`${path}: not an unsigned-byte IDX file`);
  const dims = b[3];
  const shape = Array.from({ length: dims }, (_, i) => b.readUInt32BE(4 + 4 * i));
  return { shape, data: b.subarray(4 + 4 * dims) };
}

/** { train: { images, labels }, test: { images, labels } }; images: { shape [n, 28, 28], data }. */
export function loadFashionMnist(dir = FASHION_MNIST_DIR) {
  const split = (prefix) => ({ images: readIdx(`${dir}/${prefix}-images-idx3-ubyte.gz`), labels: readIdx(`${dir}/${prefix}-labels-idx1-ubyte.gz`).data });
  return { train: split('train'), test: split('t10k') };
}

/** The images at `indices` as 28 x 28 grey RawImages (views, no copy) for preprocessImages. */
export function rawImages(images, indices) {
  const [, h, w] = images.shape;
  return indices.map((i) => ({ data: images.data.subarray(i * h * w, (i + 1) * h * w), width: w, height: h, channels: 1 }));
}

/** Indices of the first `perClass` images of each class in `classes`, in file order, class by class. */
export function firstPerClass(labels, perClass, classes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]) {
  const out = [];
  for (const c of classes) {
    let taken = 0;
    for (let i = 0; i < labels.length && taken < perClass; i++) if (labels[i] === c) out.push(i), taken++;
  }
  return out;
}

/**
 * A seeded stratified subset of `n` indices (all of them when n >= labels.length): each
 * class gets its share of n in proportion to its count (10 equal classes in Fashion-MNIST's
 * test set: n / 10 each, the remainder to the first classes), drawn by a seeded shuffle;
 * returned in file order.
 */
export function stratifiedSubset(labels, n, seed = 0) {
  if (n >= labels.length) return Array.from({ length: labels.length }, (_, i) => i);
  const byClass = new Map();
  labels.forEach((c, i) => (byClass.has(c) ? byClass.get(c).push(i) : byClass.set(c, [i])));
  const classes = [...byClass.keys()].sort((a, b) => a - b);
  const shares = classes.map((c) => Math.floor((n * byClass.get(c).length) / labels.length));
  for (let k = 0, left = n - shares.reduce((a, b) => a + b, 0); left > 0; k = (k + 1) % classes.length, left--) shares[k]++;
  const next = mulberry32(seed);
  const out = [];
  classes.forEach((c, k) => {
    const idx = byClass.get(c).slice();
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
    out.push(...idx.slice(0, shares[k]));
  });
  return out.sort((a, b) => a - b);
}
