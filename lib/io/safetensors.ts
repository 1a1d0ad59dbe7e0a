/**
 * safetensors files: the native reader (validates every malformed case) and an atomic writer.
 */
import { open, rename, rm } from 'node:fs/promises';
import { sweepOnce, tempPath } from '../core/atomic.js';
import { AnomalensError, callNative } from '../core/errors.js';
import { native } from '../core/native.js';
import { expectFloat32Array, expectObject, expectShape, expectString } from '../core/validate.js';

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
  return callNative(() => native().readSafetensors(path));
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
  const entries = Object.entries(tensors).map(([name, t]) => {
    const shape = expectShape(t?.shape, `tensors['${name}'].shape`);
    const data = expectFloat32Array(t.data, `tensors['${name}'].data`, shape.reduce((a, b) => a * b, 1));
    return { name, shape, data };
  });
  const writer = await SafetensorsWriter.create(path, entries, metadata);
  try {
    for (const e of entries) await writer.write(e.name, 0, e.data);
  } catch (err) {
    await writer.abort();
    throw err;
  }
  await writer.commit();
}

/**
 * Streams float32 tensors of known shapes into a safetensors file: the header is written
 * first, then slices of each tensor at any element offset, so a large output (features of a
 * whole image folder) never has to sit in memory at once. Written to a temporary file and
 * renamed by commit(); abort() (or a failed commit) removes it, so no half-written file is
 * ever left at `path`.
 * @example
 * const w = await SafetensorsWriter.create('f.safetensors', [{ name: 'layer2', shape: [100, 512, 28, 28] }]);
 * await w.write('layer2', 0, firstBatch); await w.commit();
 */
export class SafetensorsWriter {
  readonly path: string;
  readonly #tmp: string;
  readonly #fh: import('node:fs/promises').FileHandle;
  readonly #layout: Map<string, { offset: number; count: number }>;
  #done = false;

  private constructor(path: string, tmp: string, fh: import('node:fs/promises').FileHandle, layout: Map<string, { offset: number; count: number }>) {
    this.path = path;
    this.#tmp = tmp;
    this.#fh = fh;
    this.#layout = layout;
  }

  static async create(
    path: string,
    tensors: { name: string; shape: number[] }[],
    metadata: Record<string, string> = {},
  ): Promise<SafetensorsWriter> {
    expectString(path, 'path');
    const header: Record<string, unknown> = Object.create(null);
    if (Object.keys(metadata).length) header.__metadata__ = metadata;
    const layout = new Map<string, { offset: number; count: number }>();
    let offset = 0;
    for (const t of tensors) {
      if (t.name === '__proto__' || t.name === '__metadata__' || layout.has(t.name))
        throw new RangeError(`tensor names must be unique and neither '__proto__' nor '__metadata__', received '${t.name}'`);
      const shape = expectShape(t.shape, `shape of '${t.name}'`);
      const count = shape.reduce((a, b) => a * b, 1);
      header[t.name] = { dtype: 'F32', shape, data_offsets: [offset, offset + count * 4] };
      layout.set(t.name, { offset, count });
      offset += count * 4;
    }
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
    const head = Buffer.alloc(8 + Buffer.byteLength(json));
    head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
    head.write(json, 8);
    await sweepOnce(path);
    const tmp = tempPath(path);
    const fh = await open(tmp, 'w');
    try {
      await fh.write(head, 0, head.length, 0);
    } catch (err) {
      await fh.close().catch(() => {});
      await rm(tmp, { force: true });
      throw err;
    }
    for (const v of layout.values()) v.offset += head.length;
    return new SafetensorsWriter(path, tmp, fh, layout);
  }

  /** Writes `data` into tensor `name` starting at element `start`. */
  async write(name: string, start: number, data: Float32Array): Promise<void> {
    const t = this.#layout.get(name);
    if (!t) throw new RangeError(`name must be one of the tensors given to create(), received '${name}'`);
    if (this.#done) throw new AnomalensError('ERR_INVALID_ARGUMENT', `the writer of '${this.path}' is already closed`);
    if (!Number.isInteger(start) || start < 0 || start + data.length > t.count)
      throw new RangeError(`slice [${start}, ${start + data.length}) is outside tensor '${name}' of ${t.count} elements`);
    await this.#fh.write(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 0, data.byteLength, t.offset + start * 4);
  }

  /** Flushes, closes and renames the file into place. */
  async commit(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    try {
      await this.#fh.sync();
      await this.#fh.close();
      await rename(this.#tmp, this.path);
    } catch (err) {
      await this.#fh.close().catch(() => {});
      await rm(this.#tmp, { force: true });
      throw err;
    }
  }

  /** Discards the temporary file. */
  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#fh.close().catch(() => {});
    await rm(this.#tmp, { force: true });
  }
}
