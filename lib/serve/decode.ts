/**
 * Decoding of images that arrive as bytes (uploads, queue jobs) rather than as files, with a
 * pixel limit checked on the header before anything is decoded.
 *
 * The decoding is decodeImageRaw's own (decodeImageBuffer in lib/image/images.ts) applied to
 * bytes in memory, so that a served prediction equals `Detector.predict([file])` on the same
 * file (test/serve/decode.test.ts checks the two against each other on PNG, JPEG and BMP);
 * this module adds the checks of untrusted uploads before it: type, emptiness, and the
 * service's own pixel limit read from the header.
 */
import type { Sharp } from 'sharp';
import { isBmp } from '../image/bmp.js';
import { AnomalensError } from '../core/errors.js';
import { decodeImageBuffer, type RawImage } from '../image/images.js';

let sharpModule: Promise<typeof import('sharp')> | undefined;
function loadSharp(): Promise<typeof import('sharp')> {
  sharpModule ??= import('sharp').then((m) => m.default);
  return sharpModule;
}

/** Width and height from a BMP header (bytes 18..25), or undefined when too short. */
function bmpSize(bytes: Uint8Array): { width: number; height: number } | undefined {
  if (bytes.length < 26) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerSize = view.getUint32(14, true);
  if (headerSize === 12) return { width: view.getUint16(18, true), height: view.getUint16(20, true) };
  return { width: Math.abs(view.getInt32(18, true)), height: Math.abs(view.getInt32(22, true)) };
}

function tooLarge(name: string, width: number, height: number, maxPixels: number): AnomalensError {
  return new AnomalensError(
    'ERR_TOO_LARGE',
    `${name}: the image has ${width}x${height} = ${width * height} pixels, more than the limit of ${maxPixels}`,
  );
}

/**
 * Decodes image bytes (PNG, JPEG, BMP, TIFF, WebP...) to 8-bit pixels as decodeImageRaw does
 * for a file. An image of more than `maxPixels` pixels is refused from its header with
 * ERR_TOO_LARGE; bytes that are not a decodable image reject with ERR_INVALID_FILE. `name`
 * labels the image in messages.
 * @example const img = await decodeImageBytes(upload, 'upload', { maxPixels: 4096 * 4096 })
 */
export async function decodeImageBytes(bytes: Uint8Array, name: string, options: { maxPixels?: number } = {}): Promise<RawImage> {
  if (!(bytes instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array of image bytes`);
  const maxPixels = options.maxPixels ?? 0x3fff * 0x3fff;
  if (bytes.length === 0) throw new AnomalensError('ERR_INVALID_FILE', `cannot decode image ${name}: it is empty`);
  if (isBmp(bytes)) {
    const s = bmpSize(bytes);
    if (s && s.width * s.height > maxPixels) throw tooLarge(name, s.width, s.height, maxPixels);
  } else {
    const sharp = await loadSharp();
    let meta: { width?: number; height?: number };
    try {
      // limitInputPixels: false here, our own limit below gives the typed error; sharp reads
      // only the header for metadata().
      const image: Sharp = sharp(bytes, { failOn: 'error', ignoreIcc: true, limitInputPixels: false });
      meta = await image.metadata();
    } catch (err) {
      throw new AnomalensError('ERR_INVALID_FILE', `cannot decode image ${name}: ${(err as Error).message}`, { cause: err });
    }
    const width = meta.width ?? 0, height = meta.height ?? 0;
    if (width * height > maxPixels) throw tooLarge(name, width, height, maxPixels);
  }
  return decodeImageBuffer(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), name, maxPixels);
}

/** 8-bit RGB (h x w x 3) from decoded pixels of 1 to 4 channels: grey replicated, alpha dropped. */
export function toRgb(image: RawImage): Uint8Array {
  const { data, width, height, channels } = image;
  if (channels === 3) return data;
  const n = width * height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    if (channels <= 2) {
      const g = data[i * channels];
      out[i * 3] = g;
      out[i * 3 + 1] = g;
      out[i * 3 + 2] = g;
    } else {
      out[i * 3] = data[i * 4];
      out[i * 3 + 1] = data[i * 4 + 1];
      out[i * 3 + 2] = data[i * 4 + 2];
    }
  }
  return out;
}
