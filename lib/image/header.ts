/**
 * Reads just enough of a PNG or JPEG header to choose the decoding pipeline (grey or colour,
 * 8 or 16 bits) without a separate sharp metadata() round trip, which costs about a tenth
 * of decoding a small JPEG. Other formats, and anything unexpected, return undefined and
 * the caller asks sharp.
 */

export interface PixelFormat {
  /** One colour channel (grey), possibly with alpha. */
  grey: boolean;
  /** 16 bits per sample. */
  depth16: boolean;
  /** An alpha channel in the pixel layout (PNG colour types 4 and 6; not tRNS). */
  alpha: boolean;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** @example sniffPixelFormat(await readFile('tile.jpg'))  // { grey: true, depth16: false, alpha: false } */
export function sniffPixelFormat(bytes: Uint8Array): PixelFormat | undefined {
  if (bytes.length >= 26 && PNG_SIGNATURE.every((b, i) => bytes[i] === b)) {
    // IHDR is the first chunk: length, "IHDR", width, height, bit depth (24), colour type (25)
    if (bytes[12] !== 0x49 || bytes[13] !== 0x48 || bytes[14] !== 0x44 || bytes[15] !== 0x52) return undefined;
    const depth = bytes[24], colourType = bytes[25];
    if (![1, 2, 4, 8, 16].includes(depth) || ![0, 2, 3, 4, 6].includes(colourType)) return undefined;
    return { grey: colourType === 0 || colourType === 4, depth16: depth === 16, alpha: colourType === 4 || colourType === 6 };
  }
  if (bytes.length >= 4 && bytes[0] === 0xff && bytes[1] === 0xd8) return sniffJpeg(bytes);
  return undefined;
}

/** The component count of the first start-of-frame segment; 8-bit precision only. */
function sniffJpeg(bytes: Uint8Array): PixelFormat | undefined {
  let p = 2;
  while (p + 4 <= bytes.length) {
    if (bytes[p] !== 0xff) return undefined;
    const marker = bytes[p + 1];
    if (marker === 0xff) {
      p += 1;  // fill byte
      continue;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      p += 2;  // stand-alone markers
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return undefined;  // end of image / scan before a frame
    const length = (bytes[p + 2] << 8) | bytes[p + 3];
    const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isFrame) {
      if (p + 10 > bytes.length || length < 8) return undefined;
      const precision = bytes[p + 4], components = bytes[p + 9];
      if (precision !== 8 || (components !== 1 && components !== 3)) return undefined;  // 12-bit, CMYK: ask sharp
      return { grey: components === 1, depth16: false, alpha: false };
    }
    if (length < 2) return undefined;
    p += 2 + length;
  }
  return undefined;
}
