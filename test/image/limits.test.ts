/**
 * Resource limits: files that declare far more than they hold are refused from their headers,
 * before any large allocation (the resident set grows by less than the allocation would be).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { decodeImage, readSafetensors } from '../../lib/index.js';
import { tempDir } from '../helpers/tmp.js';

const { dir, cleanup } = tempDir('anomalens-limits-');
afterAll(cleanup);
afterEach(() => delete process.env.ANOMALENS_MAX_IMAGE_PIXELS);

const CRC = Array.from({ length: 256 }, (_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c >>> 0; });
function chunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  let c = 0xffffffff;
  for (const x of body) c = CRC[(c ^ x) & 0xff] ^ (c >>> 8);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE((c ^ 0xffffffff) >>> 0);
  return Buffer.concat([len, body, crc]);
}

/** A grey PNG declaring w x h whose data holds only the first `rows` rows (all zero). */
function bombPng(w: number, h: number, rows: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // grey
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc((w + 1) * rows), { level: 9 })), chunk('IEND', Buffer.alloc(0)),
  ]);
}

function safetensors(header: unknown, dataBytes: number, lengthField?: bigint): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthField ?? BigInt(json.length));
  return Buffer.concat([len, json, Buffer.alloc(dataBytes)]);
}

const rss = () => process.memoryUsage().rss;
const MB = 1 << 20;

describe('limits', () => {
  it('a 30000 x 30000 PNG of a few KB is refused with ERR_TOO_LARGE before decoding (2.7 GB as RGB)', async () => {
    const file = join(dir, 'bomb.png');
    const bytes = bombPng(30000, 30000, 200);
    expect(bytes.length).toBeLessThan(16 * 1024);
    writeFileSync(file, bytes);
    const before = rss();
    const err = await decodeImage(file).catch((e) => e);
    expect(err.code).toBe('ERR_TOO_LARGE');
    expect(err.message).toContain(file);
    expect(err.message).toContain('30000x30000');
    expect(err.message).toContain('ANOMALENS_MAX_IMAGE_PIXELS');
    expect(rss() - before).toBeLessThan(256 * MB);
  });

  it('a BMP header declaring 30000 x 30000 is refused the same way', async () => {
    const file = join(dir, 'bomb.bmp');
    const b = Buffer.alloc(54 + 16);
    b.write('BM', 0, 'latin1');
    b.writeUInt32LE(54, 10);
    b.writeUInt32LE(40, 14);
    b.writeInt32LE(30000, 18);
    b.writeInt32LE(30000, 22);
    b.writeUInt16LE(1, 26);
    b.writeUInt16LE(24, 28);
    writeFileSync(file, b);
    await expect(decodeImage(file)).rejects.toMatchObject({ code: 'ERR_TOO_LARGE', message: expect.stringContaining('30000x30000') });
  });

  it('ANOMALENS_MAX_IMAGE_PIXELS sets the limit (an image at the limit decodes, one pixel over does not)', async () => {
    const file = join(dir, 'small.png');
    await sharp(Buffer.alloc(24 * 20 * 3, 90), { raw: { width: 24, height: 20, channels: 3 } }).png().toFile(file);
    process.env.ANOMALENS_MAX_IMAGE_PIXELS = '480';
    expect((await decodeImage(file)).width).toBe(24);
    process.env.ANOMALENS_MAX_IMAGE_PIXELS = '479';
    await expect(decodeImage(file)).rejects.toMatchObject({ code: 'ERR_TOO_LARGE', message: expect.stringContaining('24x20') });
    process.env.ANOMALENS_MAX_IMAGE_PIXELS = 'lots';
    await expect(decodeImage(file)).rejects.toThrow(RangeError);
  });

  it('a safetensors header claiming terabytes is refused before allocating them', async () => {
    const before = rss();
    const tb = join(dir, 'tb.safetensors');
    writeFileSync(tb, safetensors({ w: { dtype: 'F32', shape: [1 << 20, 1 << 20, 1 << 2], data_offsets: [0, 2 ** 44] } }, 16));
    await expect(readSafetensors(tb)).rejects.toMatchObject({ code: 'ERR_INVALID_FILE', message: expect.stringMatching(/tb\.safetensors.*run past the data section/) });
    const head = join(dir, 'head.safetensors');
    writeFileSync(head, safetensors({}, 0, 1n << 40n));
    await expect(readSafetensors(head)).rejects.toMatchObject({ code: 'ERR_INVALID_FILE', message: expect.stringContaining('exceeds the 100 MB limit') });
    const shape = join(dir, 'shape.safetensors');
    writeFileSync(shape, safetensors({ w: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 16] } }, 16));
    await expect(readSafetensors(shape)).rejects.toMatchObject({ code: 'ERR_INVALID_FILE', message: expect.stringContaining('shape overflows') });
    expect(rss() - before).toBeLessThan(256 * MB);
  });
});
