/**
 * Deterministic metric test data, generated identically by test/fixtures/metrics/make_fixtures.py
 * (numpy uint32) and here (Math.imul): keep both in sync. Every score is a float32 the
 * formulas hit exactly.
 */

/** lowbias32 (Chris Wellons' 32-bit integer hash). */
export function lowbias32(x: number): number {
  x >>>= 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** lowbias32((i + seed * 0x9e3779b9) mod 2^32) */
export function hash32(seed: number, i: number): number {
  return lowbias32((i + Math.imul(seed, 0x9e3779b9)) >>> 0);
}

export type ImageKind = 'ties' | 'dense' | 'bits' | 'constant';

export function imageCase(kind: ImageKind, seed: number, n: number): { scores: Float32Array; labels: Uint8Array } {
  const scores = new Float32Array(n);
  const labels = new Uint8Array(n);
  const bitsView = new Uint32Array(scores.buffer);
  for (let i = 0; i < n; i++) {
    const a = hash32(seed, i);
    const b = hash32(seed + 1, i);
    switch (kind) {
      case 'ties':
        scores[i] = (a % 9) / 8 - 0.5;
        labels[i] = b % 16 < 3 + (a % 9) ? 1 : 0;
        break;
      case 'dense':
        scores[i] = ((a >>> 8) - 2 ** 23) / 2 ** 23;
        labels[i] = b % 2048 < (a >>> 22) + 512 ? 1 : 0;
        break;
      case 'bits': {
        const bits = (a & 0xbfffffff) >>> 0;
        bitsView[i] = bits;
        labels[i] = b % 8 < (bits < 0x80000000 ? 4 : 2) ? 1 : 0;
        break;
      }
      case 'constant':
        scores[i] = 0.25;
        labels[i] = b % 3 === 0 ? 1 : 0;
        break;
    }
  }
  return { scores, labels };
}

export type MapKind = 'dense' | 'ties' | 'ties4';

/** Image k of a pixel data set: a mask with blobs (0/255 for even k, 0/1 for odd k) and a map. */
export function makeImage(seed: number, k: number, h: number, w: number, kind: MapKind): { map: Float32Array; mask: Uint8Array } {
  const s = seed * 1000 + k;
  const h1 = (j: number) => hash32(s, j);
  const mask = new Uint8Array(h * w);
  const blobs = h1(0) % 4;
  for (let j = 0; j < blobs; j++) {
    const cx = h1(1 + 4 * j) % w;
    const cy = h1(2 + 4 * j) % h;
    const rx = 1 + (h1(3 + 4 * j) % Math.max(1, Math.floor(w / 5)));
    const ry = 1 + (h1(4 + 4 * j) % Math.max(1, Math.floor(h / 5)));
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        if ((x - cx) ** 2 * ry * ry + (y - cy) ** 2 * rx * rx <= rx * rx * ry * ry) mask[y * w + x] = 1;
  }
  if (k % 3 === 1) {
    const a = h1(100) % (h - 4);
    const b = h1(101) % (w - 4);
    for (const [y, x] of [[a, b], [a, b + 1], [a + 1, b], [a + 1, b + 1], [a + 2, b + 2], [a + 2, b + 3], [a + 3, b + 2], [a + 3, b + 3]])
      mask[y * w + x] = 1;
  }
  if (k % 4 === 2) for (let j = 0; j < 3; j++) mask[(h1(200 + j) % h) * w + (h1(300 + j) % w)] = 1;
  if (k % 5 === 4) mask.fill(0);
  const map = new Float32Array(h * w);
  const boost = 2 ** 21 * (1 + (h1(400) % 3));
  for (let i = 0; i < h * w; i++) {
    const v = hash32(s + 500000, i);
    const m = mask[i];
    if (kind === 'dense') map[i] = ((v >>> 9) + m * boost) / 2 ** 23;
    else if (kind === 'ties') map[i] = ((v % 16) + 5 * m) / 16;
    else map[i] = ((v % 4) + 2 * m) / 4;
  }
  if (k % 2 === 0) for (let i = 0; i < mask.length; i++) mask[i] *= 255;
  return { map, mask };
}

export interface PixelSet {
  maps: { data: Float32Array; shape: [number, number] }[];
  masks: { data: Uint8Array; shape: [number, number] }[];
}

export function pixelSet(seed: number, sizes: readonly (readonly [number, number])[], kind: MapKind): PixelSet {
  const maps: PixelSet['maps'] = [];
  const masks: PixelSet['masks'] = [];
  sizes.forEach(([h, w], k) => {
    const { map, mask } = makeImage(seed, k, h, w, kind);
    maps.push({ data: map, shape: [h, w] });
    masks.push({ data: mask, shape: [h, w] });
  });
  return { maps, masks };
}
