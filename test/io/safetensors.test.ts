import { writeFileSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AnomalensError, readSafetensors, writeSafetensors } from '../../lib/index.js';
import { tempDir } from '../helpers/tmp.js';

const { dir, cleanup } = tempDir();
afterAll(cleanup);

function fileWith(header: unknown, data: Uint8Array, rawHeader?: string): Buffer {
  const json = rawHeader ?? JSON.stringify(header);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([head, Buffer.from(json), data]);
}

async function expectInvalid(bytes: Buffer, pattern: RegExp): Promise<void> {
  const p = join(dir, 'bad.safetensors');
  writeFileSync(p, bytes);
  const err = await readSafetensors(p).catch((e) => e);
  expect(err).toBeInstanceOf(AnomalensError);
  expect(err.code).toBe('ERR_INVALID_FILE');
  expect(err.message).toMatch(pattern);
}

describe('safetensors', () => {
  it('round-trips float32 tensors with metadata and alignment', async () => {
    const a = Float32Array.from({ length: 6 }, (_, i) => i * 0.5 - 1);
    const b = new Float32Array([Math.PI]);
    const p = join(dir, 'ok.safetensors');
    await writeSafetensors(p, { a: { shape: [2, 3], data: a }, b: { shape: [1], data: b } }, { format: 'test' });
    const r = await readSafetensors(p);
    expect(r.metadata).toEqual({ format: 'test' });
    expect(r.tensors.a.shape).toEqual([2, 3]);
    expect(Array.from(r.tensors.a.data!)).toEqual(Array.from(a));
    expect(r.tensors.b.data![0]).toBe(b[0]);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('reads F16, BF16 and F64 as float32 and leaves integer tensors unread', async () => {
    // 1.5 in F16 = 0x3e00, -2 = 0xc000, smallest subnormal 2^-24 = 0x0001
    const f16 = Buffer.from(new Uint16Array([0x3e00, 0xc000, 0x0001]).buffer);
    // BF16 of 3.0 = 0x4040
    const bf16 = Buffer.from(new Uint16Array([0x4040]).buffer);
    const f64 = Buffer.from(new Float64Array([0.25]).buffer);
    const i64 = Buffer.from(new BigInt64Array([7n]).buffer);
    const data = Buffer.concat([f16, bf16, f64, i64]);
    const header = {
      h: { dtype: 'F16', shape: [3], data_offsets: [0, 6] },
      bf: { dtype: 'BF16', shape: [1], data_offsets: [6, 8] },
      d: { dtype: 'F64', shape: [1], data_offsets: [8, 16] },
      n: { dtype: 'I64', shape: [], data_offsets: [16, 24] },
    };
    const p = join(dir, 'dtypes.safetensors');
    writeFileSync(p, fileWith(header, data));
    const r = await readSafetensors(p);
    expect(Array.from(r.tensors.h.data!)).toEqual([1.5, -2, 2 ** -24]);
    expect(r.tensors.bf.data![0]).toBe(3);
    expect(r.tensors.d.data![0]).toBe(0.25);
    expect(r.tensors.n.data).toBeNull();
    expect(r.tensors.n.dtype).toBe('I64');
  });

  it('rejects each kind of malformed file with a message naming the problem', async () => {
    const four = new Uint8Array(16);
    await expectInvalid(Buffer.from([1, 2, 3]), /shorter than the 8-byte header length/);
    await expectInvalid(fileWith(null, four, '{"a":').subarray(0, 10), /runs past the end of the file/);
    await expectInvalid(fileWith(null, four, '{"a": [}'), /not valid JSON/);
    await expectInvalid(fileWith(null, four, '[1,2]'), /not a JSON object/);
    await expectInvalid(fileWith({ a: { dtype: 'Q7', shape: [1], data_offsets: [0, 4] } }, four), /unknown dtype 'Q7'/);
    await expectInvalid(fileWith({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, four), /holds 4 bytes but F32 \[2\] needs 8/);
    await expectInvalid(fileWith({ a: { dtype: 'F32', shape: [8], data_offsets: [0, 32] } }, four), /run past the data section/);
    await expectInvalid(fileWith({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, four), /begin > end/);
    await expectInvalid(
      fileWith({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, four),
      /'a' and 'b' overlap/,
    );
    await expectInvalid(fileWith({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, four), /shape entry/);
    await expectInvalid(fileWith({ a: { dtype: 'F32', data_offsets: [0, 4] } }, four), /no shape array/);
    await expectInvalid(fileWith({ a: { dtype: 'F32', shape: [1] } }, four), /no data_offsets/);
    await expectInvalid(fileWith({ __metadata__: { k: 1 } }, four), /__metadata__ value of 'k'/);
    const huge = Buffer.alloc(16);
    huge.writeBigUInt64LE(1n << 40n);
    await expectInvalid(huge, /exceeds the 100 MB limit/);
  });

  it('refuses duplicated keys and keys that are not keys in JavaScript (__proto__)', async () => {
    const t = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
    const four = new Uint8Array(4);
    await expectInvalid(fileWith(null, four, `{"a":${t},"a":${t}}`), /names 'a' twice/);
    await expectInvalid(fileWith(null, four, `{"__metadata__":{"k":"1","k":"2"},"a":${t}}`), /names 'k' twice/);
    await expectInvalid(fileWith(null, four, `{"__proto__":${t}}`), /tensor named '__proto__'/);
    await expectInvalid(fileWith(null, four, `{"__metadata__":{"__proto__":"x"},"a":${t}}`), /__metadata__ key named '__proto__'/);
    // The same name at different depths is no duplicate.
    const p = join(dir, 'depths.safetensors');
    writeFileSync(p, fileWith(null, four, `{"__metadata__":{"dtype":"x"},"dtype":${t}}`));
    expect(Object.keys((await readSafetensors(p)).tensors)).toEqual(['dtype']);
    await expect(writeSafetensors(join(dir, 'w.safetensors'), { ['__proto__']: { shape: [1], data: new Float32Array(1) } } as never)).rejects.toThrow();
  });

  it('a missing file is ERR_IO naming the path', async () => {
    const err = await readSafetensors(join(dir, 'nope.safetensors')).catch((e) => e);
    expect(err).toBeInstanceOf(AnomalensError);
    expect(err.code).toBe('ERR_IO');
    expect(err.message).toContain('nope.safetensors');
  });

  it('survives several hundred randomly corrupted files: valid result or ERR_INVALID_FILE, never a crash', async () => {
    const base = join(dir, 'fuzz-base.safetensors');
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (let i = 0; i < 5; i++) tensors[`layer${i}.weight`] = { shape: [3, i + 2], data: new Float32Array(3 * (i + 2)).fill(i) };
    await writeSafetensors(base, tensors, { arch: 'fuzz' });
    const original = readFileSync(base);
    let seed = 12345;
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const headerLen = Number(original.readBigUInt64LE(0));
    let rejected = 0;
    let accepted = 0;
    const p = join(dir, 'fuzz.safetensors');
    for (let iter = 0; iter < 400; iter++) {
      let bytes = Buffer.from(original);
      const mode = iter % 5;
      if (mode === 0) bytes = bytes.subarray(0, rand(bytes.length));                 // truncation
      else if (mode === 1) for (let j = 0; j < 1 + rand(8); j++) bytes[8 + rand(headerLen)] = rand(256);  // header bytes
      else if (mode === 2) bytes.writeBigUInt64LE(BigInt(rand(headerLen * 3)), 0);    // header length
      else if (mode === 3) {                                                          // digits in the header
        const s = bytes.toString('latin1', 8, 8 + headerLen).replace(/\d/g, (d) => (rand(4) === 0 ? String(rand(10)) : d));
        bytes.write(s, 8, 'latin1');
      } else for (let j = 0; j < 1 + rand(16); j++) bytes[rand(bytes.length)] = rand(256);  // anywhere
      writeFileSync(p, bytes);
      try {
        const r = await readSafetensors(p);
        for (const t of Object.values(r.tensors))
          if (t.data) expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
        accepted++;
      } catch (err) {
        expect(err).toBeInstanceOf(AnomalensError);
        expect((err as AnomalensError).code).toBe('ERR_INVALID_FILE');
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(200);
    expect(accepted + rejected).toBe(400);
    expect(existsSync(base)).toBe(true);
  });
});
