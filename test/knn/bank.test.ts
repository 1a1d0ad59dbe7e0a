// MemoryBank: searches equal knnSearch over the same rows, the file format (round trip,
// header, checksums against an XXH64 twin, corrupt files) and the busy / disposed states.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AnomalensError } from '../../lib/core/errors.js';
import { MemoryBank } from '../../lib/knn/bank.js';
import { KNN_METRICS, knnSearch, type KnnMetric } from '../../lib/knn/exact.js';
import { gaussian, rejection, xxh64 } from '../helpers/knn-reference.js';
import { tempDir } from '../helpers/tmp.js';

const { dir, cleanup } = tempDir('anomalens-knn-bank-');
afterAll(cleanup);

describe('MemoryBank', () => {
  const d = 37;
  const a = gaussian(300 * d, 20);
  const b = gaussian(211 * d, 21);
  const q = gaussian(50 * d, 22);
  const both = new Float32Array(a.length + b.length);
  both.set(a);
  both.set(b, a.length);

  it('adds in batches and searches like knnSearch over all rows, for every metric', async () => {
    for (const metric of KNN_METRICS) {
      const bank = new MemoryBank(d, { metric });
      expect(bank.size).toBe(0);
      await bank.add(a);
      await bank.add({ data: b, shape: [211, d] });
      expect(bank.size).toBe(511);
      expect(bank.dim).toBe(d);
      expect(bank.metric).toBe(metric);
      const got = await bank.search(q, 9);
      const want = await knnSearch(both, q, { k: 9, dim: d, metric });
      expect(got.indices).toEqual(want.indices);
      expect(got.distances).toEqual(want.distances);
      const out = { distances: new Float32Array(450), indices: new Int32Array(450) };
      expect((await bank.search(q, 9, out)).indices).toBe(out.indices);
      bank.dispose();
    }
  });

  it('validates its arguments', async () => {
    expect(() => new MemoryBank(0)).toThrow(new RangeError('dim must be >= 1, received 0'));
    expect(() => new MemoryBank(4, { metric: 'x' as KnnMetric })).toThrow(RangeError);
    const bank = new MemoryBank(d);
    await expect(bank.search(q, 1)).rejects.toThrow(/k must be <= the number of database rows \(0\)/);
    await expect(bank.add(a.subarray(1))).rejects.toThrow(/rows must hold whole rows of 37 values/);
    const bad = a.slice();
    bad[d * 5 + 3] = NaN;
    await expect(bank.add(bad)).rejects.toThrow(new RangeError(`rows[${d * 5 + 3}] is NaN (row 5, column 3); all values must be finite`));
    expect(bank.size).toBe(0);
    await bank.add(a);
    await expect(bank.search(q, 301)).rejects.toThrow(/k must be <= the number of database rows \(300\), received 301/);
  });

  it('save / load round trip, atomically, with the documented header', async () => {
    const bank = new MemoryBank(d, { metric: 'cosine' });
    await bank.add(both);
    const path = join(dir, 'round.bank');
    await bank.save(path);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const loaded = await MemoryBank.load(path);
    expect(loaded.size).toBe(511);
    expect(loaded.dim).toBe(d);
    expect(loaded.metric).toBe('cosine');
    const want = await bank.search(q, 4);
    const got = await loaded.search(q, 4);
    expect(got.indices).toEqual(want.indices);
    expect(got.distances).toEqual(want.distances);

    const bytes = readFileSync(path);
    expect(bytes.length).toBe(64 + both.byteLength);
    expect(bytes.subarray(0, 8).toString('latin1')).toBe('ANMLBANK');
    expect(bytes.readUInt32LE(8)).toBe(1);
    expect(bytes.readBigUInt64LE(16)).toBe(BigInt(both.byteLength));
    expect(bytes.readBigUInt64LE(40)).toBe(511n);
    expect(bytes.readBigUInt64LE(48)).toBe(BigInt(d));
    expect(bytes.readBigUInt64LE(24)).toBe(xxh64(bytes.subarray(64)));
    expect(bytes.readBigUInt64LE(56)).toBe(xxh64(bytes.subarray(0, 56)));
    expect(new Float32Array(bytes.buffer.slice(bytes.byteOffset + 64, bytes.byteOffset + bytes.length))).toEqual(both);

    // Saving over an existing file replaces it.
    const small = new MemoryBank(d);
    await small.add(a.subarray(0, 2 * d));
    await small.save(path);
    expect((await MemoryBank.load(path)).size).toBe(2);
  });

  it('XXH64 twin agrees with the published test vectors', () => {
    expect(xxh64(new Uint8Array(0))).toBe(0xef46db3751d8e999n);
    expect(xxh64(new TextEncoder().encode('abc'))).toBe(0x44bc2cf5ad770999n);
  });

  it('rejects truncated, corrupted and foreign files with ERR_INVALID_FILE', async () => {
    const bank = new MemoryBank(d);
    await bank.add(a);
    const path = join(dir, 'good.bank');
    await bank.save(path);
    const good = readFileSync(path);
    const bad = join(dir, 'bad.bank');
    const expectInvalid = async (bytes: Uint8Array, pattern: RegExp) => {
      writeFileSync(bad, bytes);
      const err = await rejection(MemoryBank.load(bad));
      expect(err).toBeInstanceOf(AnomalensError);
      expect(err.code).toBe('ERR_INVALID_FILE');
      expect(err.message).toMatch(pattern);
      expect(err.message).toContain(bad);
    };
    await expectInvalid(good.subarray(0, good.length - 10), /truncated: the header announces \d+ bytes but the file has \d+/);
    await expectInvalid(good.subarray(0, 20), /truncated: the file has 20 bytes, less than the 64-byte header/);
    const flipped = Buffer.from(good);
    flipped[64 + 1000] ^= 0x10;
    await expectInvalid(flipped, /corrupted: the payload checksum does not match/);
    const header = Buffer.from(good);
    header[41] ^= 1;
    await expectInvalid(header, /corrupted: the header checksum does not match/);
    await expectInvalid(Buffer.concat([good, Buffer.from([1, 2, 3])]), /3 unexpected bytes after the payload/);
    await expectInvalid(Buffer.from('not a bank at all, just some text of more than sixty-four bytes......'), /bad magic/);
    const future = Buffer.from(good);
    future.writeUInt32LE(2, 8);
    future.writeBigUInt64LE(xxh64(future.subarray(0, 56)), 56);
    await expectInvalid(future, /format version 2 is not supported \(this build reads version 1\)/);
    const err = await rejection(MemoryBank.load(join(dir, 'missing.bank')));
    expect(err.code).toBe('ERR_IO');
  });

  it('refuses dispose() and add() while a search runs, then disposes', async () => {
    const big = new MemoryBank(64);
    await big.add(gaussian(200_000 * 64, 30));
    const queries = gaussian(400 * 64, 31);
    const search = big.search(queries, 10);
    const busy = (() => {
      try {
        big.dispose();
      } catch (e) {
        return e as AnomalensError;
      }
    })();
    expect(busy).toBeInstanceOf(AnomalensError);
    expect(busy?.code).toBe('ERR_BUSY');
    expect((await rejection(big.add(queries))).code).toBe('ERR_BUSY');
    // Concurrent readers are fine.
    const [r1, r2] = await Promise.all([search, big.search(queries.subarray(0, 64), 10)]);
    expect(r2.indices).toEqual(r1.indices.subarray(0, 10));
    big.dispose();
    expect(big.disposed).toBe(true);
    expect(big.size).toBe(0);
    expect((await rejection(big.search(queries, 1))).code).toBe('ERR_DISPOSED');
    expect((await rejection(big.add(queries))).code).toBe('ERR_DISPOSED');
    expect((await rejection(big.save(join(dir, 'x.bank')))).code).toBe('ERR_DISPOSED');
    big.dispose(); // idempotent
  });
});
