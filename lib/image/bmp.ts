/**
 * A small BMP decoder: sharp's libvips has no BMP loader. Produces what Pillow's
 * `Image.open(path).convert('RGB')` produces for the common uncompressed kinds:
 * 1/4/8-bit paletted, 16-bit (5-5-5 and 5-6-5), 24-bit, and 32-bit (BI_RGB, or BI_BITFIELDS
 * with byte-aligned masks), bottom-up or top-down. Alpha is dropped. RLE and embedded
 * JPEG/PNG compression are rejected with ERR_UNSUPPORTED.
 */
import { AnomalensError } from '../core/errors.js';

const BI_RGB = 0;
const BI_BITFIELDS = 3;
const BI_ALPHABITFIELDS = 6;

/** True when the bytes start with a BMP file header ("BM"). */
export function isBmp(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x42 && bytes[1] === 0x4d;
}

/**
 * Decodes a BMP file into 8-bit RGB, HWC. `origin` names the file in errors.
 * @example const { data, width, height } = decodeBmp(await readFile('a.bmp'), 'a.bmp')
 */
export function decodeBmp(bytes: Uint8Array, origin: string, maxPixels = 0x3fff * 0x3fff): { data: Uint8Array; width: number; height: number; channels: 3 } {
  const invalid = (why: string) => new AnomalensError('ERR_INVALID_FILE', `cannot decode image ${origin}: ${why}`);
  const unsupported = (why: string) => new AnomalensError('ERR_UNSUPPORTED', `cannot decode image ${origin}: ${why}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!isBmp(bytes) || bytes.length < 26) throw invalid('not a BMP file or truncated header');
  const dataOffset = view.getUint32(10, true);
  const headerSize = view.getUint32(14, true);
  if (14 + headerSize > bytes.length) throw invalid(`truncated BMP header (${headerSize} bytes declared)`);

  let width: number, height: number, bpp: number, compression = BI_RGB, colors = 0, paletteEntry: number;
  let paletteStart = 14 + headerSize;
  if (headerSize === 12) {
    // BITMAPCOREHEADER (OS/2 1.x): 16-bit sizes, 3-byte palette entries
    width = view.getUint16(18, true);
    height = view.getUint16(20, true);
    bpp = view.getUint16(24, true);
    paletteEntry = 3;
  } else if (headerSize >= 40) {
    width = view.getInt32(18, true);
    height = view.getInt32(22, true);
    bpp = view.getUint16(28, true);
    compression = view.getUint32(30, true);
    colors = view.getUint32(46, true);
    paletteEntry = 4;
    // With the 40-byte header the masks follow it; larger headers hold them inside.
    if (headerSize === 40 && compression === BI_BITFIELDS) paletteStart += 12;
    if (headerSize === 40 && compression === BI_ALPHABITFIELDS) paletteStart += 16;
  } else {
    throw unsupported(`BMP header of ${headerSize} bytes`);
  }
  const topDown = height < 0;
  height = Math.abs(height);
  if (width <= 0 || height <= 0) throw invalid(`BMP size ${width}x${height}`);
  if (width * height > maxPixels)
    throw new AnomalensError('ERR_TOO_LARGE', `image ${origin} declares ${width}x${height} pixels, more than the limit of ${maxPixels} (ANOMALENS_MAX_IMAGE_PIXELS raises it)`);
  if (compression !== BI_RGB && compression !== BI_BITFIELDS && compression !== BI_ALPHABITFIELDS)
    throw unsupported(`BMP compression ${compression} (RLE or embedded JPEG/PNG) is not supported`);
  if (![1, 4, 8, 16, 24, 32].includes(bpp)) throw unsupported(`BMP with ${bpp} bits per pixel`);
  if (compression !== BI_RGB && bpp !== 16 && bpp !== 32)
    throw unsupported(`BMP bit-field compression with ${bpp} bits per pixel`);

  const stride = Math.floor((bpp * width + 31) / 32) * 4;
  if (dataOffset + stride * height > bytes.length)
    throw invalid(`truncated pixel data (${bytes.length - dataOffset} of ${stride * height} bytes)`);
  const out = new Uint8Array(width * height * 3);
  const rowStart = (y: number) => dataOffset + (topDown ? y : height - 1 - y) * stride;

  if (bpp <= 8) {
    const palette = readPalette(bytes, paletteStart, colors || 1 << bpp, paletteEntry, bpp, invalid);
    const perByte = 8 / bpp;
    const mask = (1 << bpp) - 1;
    for (let y = 0; y < height; y++) {
      const row = rowStart(y);
      for (let x = 0; x < width; x++) {
        const byte = bytes[row + Math.floor(x / perByte)];
        const index = (byte >> (8 - bpp * ((x % perByte) + 1))) & mask;
        out.set(palette.subarray(index * 3, index * 3 + 3), (y * width + x) * 3);
      }
    }
  } else if (bpp === 24) {
    for (let y = 0; y < height; y++) {
      const row = rowStart(y);
      for (let x = 0; x < width; x++) {
        const o = (y * width + x) * 3, p = row + x * 3;
        out[o] = bytes[p + 2];
        out[o + 1] = bytes[p + 1];
        out[o + 2] = bytes[p];
      }
    }
  } else if (bpp === 16) {
    // Pillow: BI_RGB is 5-5-5 ("BGR;15"); bit fields 0xf800/0x7e0/0x1f is 5-6-5 ("BGR;16").
    const masks = compression === BI_RGB ? [0x7c00, 0x3e0, 0x1f] : readMasks(view, 3);
    const is565 = masks[0] === 0xf800 && masks[1] === 0x7e0 && masks[2] === 0x1f;
    const is555 = masks[0] === 0x7c00 && masks[1] === 0x3e0 && masks[2] === 0x1f;
    if (!is565 && !is555) throw unsupported(`16-bit BMP bit fields ${hexMasks(masks)}`);
    const gBits = is565 ? 63 : 31, rShift = is565 ? 11 : 10;
    for (let y = 0; y < height; y++) {
      const row = rowStart(y);
      for (let x = 0; x < width; x++) {
        const v = view.getUint16(row + x * 2, true), o = (y * width + x) * 3;
        out[o] = Math.floor((((v >> rShift) & 31) * 255) / 31);
        out[o + 1] = Math.floor((((v >> 5) & gBits) * 255) / gBits);
        out[o + 2] = Math.floor(((v & 31) * 255) / 31);
      }
    }
  } else {
    // 32-bit: BI_RGB is B, G, R, unused; bit fields name the byte of each channel.
    let shifts = [16, 8, 0];
    if (compression !== BI_RGB) {
      const masks = readMasks(view, 3);
      if (masks.some((m) => m !== 0)) {
        shifts = masks.map((m) => [0, 8, 16, 24].find((s) => m === (0xff << s) >>> 0) ?? -1);
        if (shifts.includes(-1)) throw unsupported(`32-bit BMP bit fields ${hexMasks(masks)}`);
      }
    }
    const byteOf = shifts.map((s) => s / 8);  // little-endian: byte k holds bits 8k..8k+7
    for (let y = 0; y < height; y++) {
      const row = rowStart(y);
      for (let x = 0; x < width; x++) {
        const o = (y * width + x) * 3, p = row + x * 4;
        out[o] = bytes[p + byteOf[0]];
        out[o + 1] = bytes[p + byteOf[1]];
        out[o + 2] = bytes[p + byteOf[2]];
      }
    }
  }
  return { data: out, width, height, channels: 3 };
}

/** The palette as RGB triplets for 1 << bpp indices (entries the file lacks are black). */
function readPalette(
  bytes: Uint8Array,
  start: number,
  colors: number,
  entry: number,
  bpp: number,
  invalid: (why: string) => Error,
): Uint8Array {
  if (colors > 1 << bpp) colors = 1 << bpp;  // larger declared palettes: only the addressable part matters
  if (start + colors * entry > bytes.length) throw invalid(`truncated palette (${colors} colours declared)`);
  const palette = new Uint8Array((1 << bpp) * 3);
  let greyRamp = true;
  for (let i = 0; i < colors; i++) {
    const p = start + i * entry;
    palette[i * 3] = bytes[p + 2];
    palette[i * 3 + 1] = bytes[p + 1];
    palette[i * 3 + 2] = bytes[p];
    const grey = colors === 2 ? i * 255 : i;
    if (bytes[p] !== grey || bytes[p + 1] !== grey || bytes[p + 2] !== grey) greyRamp = false;
  }
  // Pillow opens a palette that is the grey ramp 0, 1, 2, ... as mode "L": indices past the
  // declared colours then read as their own grey level rather than as black.
  if (greyRamp && colors !== 2) for (let i = colors; i < 1 << bpp; i++) palette.fill(i, i * 3, i * 3 + 3);
  return palette;
}

/** The R, G, B (and A) masks, which start at byte 54 in every header that has them. */
function readMasks(view: DataView, count: number): number[] {
  if (view.byteLength < 54 + count * 4) return new Array(count).fill(0);
  return Array.from({ length: count }, (_, i) => view.getUint32(54 + i * 4, true));
}

function hexMasks(masks: number[]): string {
  return masks.map((m) => `0x${m.toString(16)}`).join('/');
}
