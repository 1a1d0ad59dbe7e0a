/**
 * A slow, obvious TypeScript twin of Pillow's BILINEAR resize (src/libImaging/Resample.c),
 * for the tests of the native resampler: whole image, horizontal pass into an 8-bit
 * intermediate, then vertical pass, each output value computed on its own.
 */
const PRECISION_BITS = 22;

function bilinear(x: number): number {
  x = Math.abs(x);
  return x < 1 ? 1 - x : 0;
}

/** For each output index: first input index and 22-bit fixed-point weights. */
export function pilCoefficients(inSize: number, outSize: number): { start: number; weights: number[] }[] {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 1 * filterscale;
  const ss = 1 / filterscale;
  const out = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5));
    const w: number[] = [];
    for (let x = xmin; x < xmax; x++) w.push(bilinear((x - center + 0.5) * ss));
    const sum = w.reduce((a, b) => a + b, 0);
    const normalised = w.map((v) => (sum !== 0 ? v / sum : v));
    out.push({ start: xmin, weights: normalised.map((v) => Math.trunc(v < 0 ? v * 2 ** PRECISION_BITS - 0.5 : v * 2 ** PRECISION_BITS + 0.5)) });
  }
  return out;
}

function clip8(acc: number): number {
  return Math.min(255, Math.max(0, acc >> PRECISION_BITS));
}

/** HWC uint8 `w x h x c` -> `ow x oh x c`, as Image.resize((ow, oh), Image.BILINEAR). */
export function referenceResize(src: Uint8Array, w: number, h: number, c: number, ow: number, oh: number): Uint8Array {
  let img = src, iw = w;
  if (ow !== w) {
    const k = pilCoefficients(w, ow);
    const tmp = new Uint8Array(ow * h * c);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < ow; x++)
        for (let ch = 0; ch < c; ch++) {
          let acc = 1 << (PRECISION_BITS - 1);
          k[x].weights.forEach((wt, j) => (acc += src[(y * w + k[x].start + j) * c + ch] * wt));
          tmp[(y * ow + x) * c + ch] = clip8(acc);
        }
    img = tmp;
    iw = ow;
  }
  if (oh === h) return img === src ? src.slice() : img;
  const k = pilCoefficients(h, oh);
  const out = new Uint8Array(ow * oh * c);
  for (let y = 0; y < oh; y++)
    for (let x = 0; x < iw; x++)
      for (let ch = 0; ch < c; ch++) {
        let acc = 1 << (PRECISION_BITS - 1);
        k[y].weights.forEach((wt, j) => (acc += img[((k[y].start + j) * iw + x) * c + ch] * wt));
        out[(y * ow + x) * c + ch] = clip8(acc);
      }
  return out;
}
