import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AnomalensError } from '../../lib/core/errors.js';
import { decodeImageRaw } from '../../lib/image/images.js';
import { toRgb } from '../../lib/internal.js';
import { decodeImageBytes } from '../../lib/serve/decode.js';

const DECODE = join(import.meta.dirname, '../fixtures/images/decode');
const manifest: Record<string, { width: number; height: number; pilMode: string }> = JSON.parse(
  readFileSync(join(import.meta.dirname, '../fixtures/images/decode.json'), 'utf8'),
);

describe('decodeImageBytes: the file decoder applied to bytes', () => {
  it.each(Object.keys(manifest))('%s: the same pixels as decodeImageRaw, and Pillow RGB after toRgb', async (name) => {
    const bytes = readFileSync(join(DECODE, name));
    const fromBytes = await decodeImageBytes(bytes, name);
    const fromFile = await decodeImageRaw(join(DECODE, name));
    expect([fromBytes.width, fromBytes.height, fromBytes.channels]).toEqual([fromFile.width, fromFile.height, fromFile.channels]);
    expect(Buffer.from(fromBytes.data).equals(Buffer.from(fromFile.data))).toBe(true);
    expect(Buffer.from(toRgb(fromBytes)).equals(readFileSync(join(DECODE, `${name}.rgb`)))).toBe(true);
  });

  it('refuses an image over the pixel limit from its header, with ERR_TOO_LARGE naming the size', async () => {
    for (const name of ['rgb.png', 'grey.jpg', 'grey8.bmp']) {
      const bytes = readFileSync(join(DECODE, name));
      const err = await decodeImageBytes(bytes, 'upload', { maxPixels: 29 * 19 - 1 }).catch((e) => e);
      expect(err, name).toBeInstanceOf(AnomalensError);
      expect(err.code).toBe('ERR_TOO_LARGE');
      expect(err.message).toContain('29x19 = 551 pixels');
      await expect(decodeImageBytes(bytes, 'upload', { maxPixels: 29 * 19 })).resolves.toMatchObject({ width: 29, height: 19 });
    }
  });

  it('bytes that are no image, truncated or empty: ERR_INVALID_FILE naming the input', async () => {
    const png = readFileSync(join(DECODE, 'rgb.png'));
    for (const bytes of [Buffer.from('not an image at all'), png.subarray(0, png.length / 2), Buffer.alloc(0)]) {
      const err = await decodeImageBytes(bytes, "upload 'x.png'").catch((e) => e);
      expect(err).toBeInstanceOf(AnomalensError);
      expect(err.code).toBe('ERR_INVALID_FILE');
      expect(err.message).toContain("upload 'x.png'");
    }
  });
});
