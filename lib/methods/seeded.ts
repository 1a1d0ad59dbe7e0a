/** Seeded integer hashing for reproducible choices (also computable in numpy: uint32 ops). */

/** lowbias32 of (i * 0x9E3779B9 + seed) mod 2^32. */
export function hash32(i: number, seed: number): number {
  let x = (Math.imul(i, 0x9e3779b9) + seed) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * `d` distinct indices of [0, total), ascending: those with the smallest hash32(i, seed)
 * (ties by index). numpy: np.sort(np.lexsort((idx, hash))[:d]).
 */
export function seededSubset(total: number, d: number, seed: number): Int32Array {
  const idx = Array.from({ length: total }, (_, i) => i);
  const h = idx.map((i) => hash32(i, seed));
  idx.sort((a, b) => h[a] - h[b] || a - b);
  return Int32Array.from(idx.slice(0, d).sort((a, b) => a - b));
}
