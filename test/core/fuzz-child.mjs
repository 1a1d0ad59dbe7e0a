// Child process of fuzz.test.ts: reads mutants of one format in-process and classifies what
// each read gives. A crash or a hang kills only this process; the parent then names the
// mutant from the progress file (written synchronously before each mutant).
// Usage: node fuzz-child.mjs <dist> <json: { format, base, work, weights, seed, count, only?, progress }>
// Prints one JSON line: { counts: { ok, typed }, failures: [{ i, how, error }] }.
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dist, json] = process.argv.slice(2);
const cfg = JSON.parse(json);
const lib = await import(pathToFileURL(join(dist, 'lib/index.js')).href);
const { binariseMask, mulberry32 } = await import(pathToFileURL(join(dist, 'lib/internal.js')).href);

// ---- XXH64, to re-seal mutated container headers so the parser behind the checksum is reached
const M64 = (1n << 64n) - 1n;
const P1 = 11400714785074694791n, P2 = 14029467366897019727n, P3 = 1609587929392839161n, P4 = 9650029242287828579n, P5 = 2870177450012600261n;
const rotl = (x, r) => ((x << BigInt(r)) | (x >> BigInt(64 - r))) & M64;
const round = (acc, v) => (rotl((acc + v * P2) & M64, 31) * P1) & M64;
const merge = (acc, v) => (((acc ^ round(0n, v)) * P1 + P4) & M64);
function xxh64(b) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = 0, h;
  const n = b.length;
  if (n >= 32) {
    let v1 = (P1 + P2) & M64, v2 = P2, v3 = 0n, v4 = (M64 + 1n - P1) & M64;
    for (; p + 32 <= n; p += 32) {
      v1 = round(v1, dv.getBigUint64(p, true)); v2 = round(v2, dv.getBigUint64(p + 8, true));
      v3 = round(v3, dv.getBigUint64(p + 16, true)); v4 = round(v4, dv.getBigUint64(p + 24, true));
    }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) & M64;
    h = merge(merge(merge(merge(h, v1), v2), v3), v4);
  } else h = P5;
  h = (h + BigInt(n)) & M64;
  for (; p + 8 <= n; p += 8) h = ((rotl(h ^ round(0n, dv.getBigUint64(p, true)), 27) * P1) + P4) & M64;
  if (p + 4 <= n) { h = ((rotl(h ^ ((BigInt(dv.getUint32(p, true)) * P1) & M64), 23) * P2) + P3) & M64; p += 4; }
  for (; p < n; p++) h = (rotl(h ^ ((BigInt(b[p]) * P5) & M64), 11) * P1) & M64;
  h ^= h >> 33n; h = (h * P2) & M64; h ^= h >> 29n; h = (h * P3) & M64; h ^= h >> 32n;
  return h;
}
/** Recomputes the payload and header checksums of an anomalens container (knn/file.h). */
function reseal(b) {
  if (b.length < 64) return b;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  dv.setBigUint64(24, xxh64(b.subarray(64)), true);
  dv.setBigUint64(56, xxh64(b.subarray(0, 56)), true);
  return b;
}

// ---- mutators ---------------------------------------------------------------------------
const int = (r, n) => Math.floor(r() * n);
const HUGE = [0xffffffff, 0x7fffffff, 0x80000000, 0, 1, 0xffff, 65536, 30000, 1 << 30];
const generic = {
  bitflip: (b, r) => { for (let k = 1 + int(r, 8); k > 0; k--) b[int(r, b.length)] ^= 1 << int(r, 8); return b; },
  truncate: (b, r) => b.subarray(0, int(r, b.length)),
  truncateTail: (b, r) => b.subarray(0, Math.max(0, b.length - 1 - int(r, 64))),
  overwrite: (b, r) => { const at = int(r, b.length); const len = 1 + int(r, 16); for (let i = at; i < Math.min(b.length, at + len); i++) b[i] = r() < 0.5 ? 0xff : int(r, 256); return b; },
  magic: (b, r) => { for (let i = 0; i < Math.min(8, b.length); i++) b[i] = int(r, 256); return b; },
  u32: (b, r) => { if (b.length >= 4) new DataView(b.buffer, b.byteOffset).setUint32(int(r, b.length - 3), HUGE[int(r, HUGE.length)], r() < 0.5); return b; },
  splice: (b, r) => { const at = int(r, b.length); const len = int(r, 256); return Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + len))]); },
  duplicate: (b, r) => { const at = int(r, b.length); return Buffer.concat([b.subarray(0, at), b.subarray(at, at + int(r, 512)), b.subarray(at)]); },
};

/** safetensors: the header as JSON, rewritten (hostile keys, absurd shapes and offsets). */
function safetensorsMutators() {
  const split = (b) => { const n = Number(b.readBigUInt64LE(0)); return { head: b.subarray(8, 8 + n).toString('utf8'), data: b.subarray(8 + n) }; };
  const join2 = (head, data) => { const h = Buffer.from(head, 'utf8'); const l = Buffer.alloc(8); l.writeBigUInt64LE(BigInt(h.length)); return Buffer.concat([l, h, data]); };
  const firstTensor = (o) => Object.keys(o).find((k) => k !== '__metadata__');
  const edit = (f) => (b, r) => { const { head, data } = split(b); return join2(f(head, r), data); };
  const editObj = (f) => edit((head, r) => { const o = JSON.parse(head); f(o, r); return JSON.stringify(o); });
  return {
    ...generic,
    lengthField: (b, r) => { b.writeBigUInt64LE([0n, 7n, 1n << 40n, (1n << 64n) - 1n, BigInt(b.length), BigInt(b.length - 7), BigInt(int(r, b.length))][int(r, 7)], 0); return b; },
    protoTensor: edit((h) => h.replace(/^\{/, '{"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},')),
    protoMeta: edit((h) => h.includes('"__metadata__":{') ? h.replace('"__metadata__":{', '"__metadata__":{"__proto__":"x",') : h.replace(/^\{/, '{"__metadata__":{"__proto__":"x"},')),
    constructorKeys: edit((h) => h.replace(/^\{/, '{"constructor":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"__metadata__x":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},')),
    duplicateTensor: edit((h) => { const o = JSON.parse(h); const k = firstTensor(o); return k ? h.replace(/^\{/, `{${JSON.stringify(k)}:${JSON.stringify(o[k])},`) : h; }),
    duplicateMeta: edit((h) => h.replace('"__metadata__":{', '"__metadata__":{"format":"anomalens-detector","format":"x",')),
    metaTypes: editObj((o, r) => { o.__metadata__ = [null, 1, [], 'x', { a: 1 }, { format: 7 }][int(r, 6)]; }),
    hugeShape: editObj((o, r) => { const k = firstTensor(o); if (k) o[k].shape = [[1 << 30, 1 << 30, 1 << 30], [2 ** 53, 2], [-1], [1.5], ['4'], [], [0]][int(r, 7)]; }),
    terabytes: editObj((o) => { const k = firstTensor(o); if (k) { o[k].shape = [1 << 20, 1 << 20, 1 << 2]; o[k].data_offsets = [0, 2 ** 44]; } }),
    offsets: editObj((o, r) => { const k = firstTensor(o); if (k) o[k].data_offsets = [[4, 0], [0, 2 ** 60], [-4, 0], [0], 'x', [0, 1.5], [2 ** 64, 2 ** 64 + 4]][int(r, 7)]; }),
    dtype: editObj((o, r) => { const k = firstTensor(o); if (k) o[k].dtype = ['F33', '', 'I64', 'BOOL', 7, null, 'F16'][int(r, 7)]; }),
    notObject: edit((h, r) => ['[]', 'null', '"x"', '{', '{"a":', '{"a":1}', '\u0000'][int(r, 7)]),
    deepJson: edit(() => '['.repeat(100000)),
    metaString: editObj((o, r) => { if (o.__metadata__) for (const k of Object.keys(o.__metadata__)) if (r() < 0.3) o.__metadata__[k] = ['', '{', 'null', '[1e999]', '"x"', '{"__proto__":{"polluted":1}}', 'NaN'][int(r, 7)]; }),
  };
}

function containerMutators() {
  return {
    ...generic,
    sealedBitflip: (b, r) => reseal(generic.bitflip(b, r)),
    sealedOverwrite: (b, r) => reseal(generic.overwrite(b, r)),
    sealedTruncate: (b, r) => reseal(b.subarray(0, 64 + int(r, b.length - 64))),
    sealedField: (b, r) => {
      const dv = new DataView(b.buffer, b.byteOffset);
      const at = [8, 12, 16, 32, 36, 40, 48][int(r, 7)];
      if (at === 16 || at >= 40) dv.setBigUint64(at, [0n, 1n, 1n << 40n, (1n << 64n) - 1n, BigInt(int(r, 1 << 20))][int(r, 5)], true);
      else dv.setUint32(at, HUGE[int(r, HUGE.length)], true);
      return reseal(b);
    },
  };
}

function imageMutators(format) {
  const dims = {
    png: (b, r) => { b.writeUInt32BE(HUGE[int(r, HUGE.length)], 16); b.writeUInt32BE(HUGE[int(r, HUGE.length)], 20); if (r() < 0.7) b.writeUInt32BE(crc32(b.subarray(12, 29)), 29); return b; },
    jpeg: (b, r) => { const at = b.indexOf(Buffer.from([0xff, 0xc0])); if (at > 0) { b.writeUInt16BE(int(r, 65536), at + 5); b.writeUInt16BE(int(r, 65536), at + 7); } return b; },
    bmp: (b, r) => { b.writeInt32LE([0x7fffffff, -0x7fffffff, 30000, 0, -1, 1 << 20][int(r, 6)], 18); b.writeInt32LE([0x7fffffff, -0x80000000, 30000, 0, -30000, 1][int(r, 6)], 22); if (r() < 0.5) b.writeUInt16LE([0, 1, 2, 7, 33, 64, 0xffff][int(r, 7)], 28); return b; },
    tiff: (b, r) => { const i = b.indexOf(Buffer.from([0x00, 0x01, 0x04, 0x00])); if (i >= 0) b.writeUInt32LE(HUGE[int(r, HUGE.length)], i + 4); return b; },
  };
  return { ...generic, dims: dims[format === 'mask' ? 'png' : format], dims2: dims[format === 'mask' ? 'png' : format] };
}

const CRC = Array.from({ length: 256 }, (_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c >>> 0; });
function crc32(b) { let c = 0xffffffff; for (const x of b) c = CRC[(c ^ x) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; }

// ---- readers ----------------------------------------------------------------------------
const readers = {
  weights: async (p) => { await lib.readSafetensors(p); const b = await lib.Backbone.load({ arch: 'resnet18', weights: p }); b.dispose(); },
  detector: async (p) => { const d = await lib.Detector.load(p, { weights: cfg.weights }); d.dispose(); },
  bank: async (p) => { const b = await lib.MemoryBank.load(p); if (b.size) await b.search(new Float32Array(b.dim), 1); b.dispose(); },
  faiss: async (p) => { const b = await lib.FaissIndex.load(p); if (b.size) await b.search(new Float32Array(b.dim), 1); b.dispose(); },
  image: async (p) => { await lib.decodeImage(p); },
  mask: async (p) => { binariseMask(await lib.decodeImageRaw(p)); },
};
const kind = ['png', 'jpeg', 'bmp', 'tiff', 'mask'].includes(cfg.format) ? (cfg.format === 'mask' ? 'mask' : 'image') : cfg.format;
const mutators = kind === 'weights' || kind === 'detector' ? safetensorsMutators() : kind === 'bank' || kind === 'faiss' ? containerMutators() : imageMutators(cfg.format);
const names = Object.keys(mutators);
const base = readFileSync(cfg.base);
const progress = openSync(cfg.progress, 'w');
const counts = { ok: 0, typed: 0 };
const protoKeys = Object.getOwnPropertyNames(Object.prototype).length;
const failures = [];
const indices = cfg.only !== undefined ? [cfg.only] : Array.from({ length: cfg.count }, (_, i) => i);
for (const i of indices) {
  const r = mulberry32(cfg.seed * 100003 + i);
  const how = names[int(r, names.length)];
  writeSync(progress, `${i} ${how}\n`);
  let bytes;
  try {
    bytes = mutators[how](Buffer.from(base), r);
  } catch {
    bytes = generic.bitflip(Buffer.from(base), r);  // a mutator that does not apply to this file
  }
  const file = join(cfg.work, `m${i}.${cfg.ext}`);
  writeFileSync(file, bytes);
  try {
    await readers[kind](file);
    counts.ok++;
  } catch (err) {
    const typed = err instanceof lib.AnomalensError || err instanceof TypeError || err instanceof RangeError;
    if (typed && String(err.message).includes(file)) counts.typed++;
    else failures.push({ i, how, error: `${err?.constructor?.name}${err?.code ? ` ${err.code}` : ''}: ${String(err?.message).slice(0, 300)}` });
  }
  if ({}.polluted !== undefined || Object.getOwnPropertyNames(Object.prototype).length !== protoKeys) failures.push({ i, how, error: 'Object.prototype was modified' });
}
closeSync(progress);
process.stdout.write(`${JSON.stringify({ counts, failures })}\n`);
