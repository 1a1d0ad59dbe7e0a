/**
 * safetensors files: the native reader (validates every malformed case) and an atomic writer.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { callNative } from './errors.js';
import { native } from './native.js';
import { expectFloat32Array, expectObject, expectShape, expectString } from './validate.js';

export interface NamedTensor {
  shape: number[];
  data: Float32Array;
}

export interface SafetensorsContent {
  /** Float tensors (F32/F16/BF16/F64 read as float32); other dtypes have `data: null`. */
  tensors: Record<string, { dtype: string; shape: number[]; data: Float32Array | null }>;
  metadata: Record<string, string>;
}

/**
 * Reads a safetensors file. A malformed file rejects with code ERR_INVALID_FILE naming the
 * problem; a missing one with ERR_IO.
 * @example const { tensors } = await readSafetensors('features.safetensors')
 */
export async function readSafetensors(path: string): Promise<SafetensorsContent> {
  expectString(path, 'path');
  return callNative(() => native().readSafetensors(path) as Promise<SafetensorsContent>);
}

/**
 * Writes float32 tensors to a safetensors file atomically (temporary file + rename), so a
 * failure never leaves a half-written file at `path`.
 * @example await writeSafetensors('out.safetensors', { layer2: { shape: [1, 512, 28, 28], data } })
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, NamedTensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  expectString(path, 'path');
  expectObject(tensors, 'tensors');
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Float32Array[] = [];
  for (const [name, t] of Object.entries(tensors)) {
    const shape = expectShape(t?.shape, `tensors['${name}'].shape`);
    const count = shape.reduce((a, b) => a * b, 1);
    const data = expectFloat32Array(t.data, `tensors['${name}'].data`, count);
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
    parts.push(data);
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);  // align data to 8 bytes
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8);
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.write(head);
    for (const p of parts) await fh.write(new Uint8Array(p.buffer, p.byteOffset, p.byteLength));
    await fh.sync();
    await fh.close();
    await rename(tmp, path);
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
}
