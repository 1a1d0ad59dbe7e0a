// Maps: anomalens' map kernels against their Python references in the same run, on the same
// data, with the same thread counts (1 and 2):
//   resize 28 x 28 -> 256 x 256, batch 32: [32, 1, 28, 28] (anomaly maps) and [32, 3, 28, 28]
//     vs torch F.interpolate(bilinear, align_corners=False)
//   blur sigma 4 of [32, 256, 256] vs scipy.ndimage.gaussian_filter per map (thread pool for 2)
//   cosine distance of [32, 256, 64, 64] vs 1 - torch F.cosine_similarity(dim=1)
//   L2 distance of [32, 256, 64, 64] vs torch.linalg.vector_norm(a - b, dim=1)
// anomalens is timed with tinybench (new output array per call, as torch), the peer with
// time.perf_counter (bench/peers/maps_peer.py); each figure is the best over ROUNDS interleaved
// rounds (the machine is shared), per round the fastest call. The outputs are compared with
// the peer's. Results: '## Maps' in bench/RESULTS.md.
//   npx tsc -p tsconfig.json && node bench/run.mjs maps
//   MAPS_BENCH_ROUNDS=3 MAPS_BENCH_SECONDS=1 node bench/run.mjs maps
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import { cosineDistanceMap, gaussianBlur, l2DistanceMap, numThreads, resizeBilinear, setNumThreads } from '../dist/lib/index.js';
import { hashed } from './seeded-weights.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ROUNDS = Number(process.env.MAPS_BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.MAPS_BENCH_SECONDS ?? 1);
const PEER_REPEATS = Number(process.env.MAPS_BENCH_PEER_REPEATS ?? 5);
const THREADS = [1, 2];

const data = {
  c1: hashed(32 * 28 * 28, 1),
  c3: hashed(32 * 3 * 28 * 28, 2),
  maps: hashed(32 * 256 * 256, 3).map((v) => v + 1), // anomaly scores are >= 0
  a: hashed(32 * 256 * 64 * 64, 4),
  b: hashed(32 * 256 * 64 * 64, 5),
};
const ops = {
  resizeC1: {
    label: 'resize [32, 1, 28, 28] -> 256 x 256',
    peer: 'torch F.interpolate',
    run: () => resizeBilinear(data.c1, [32, 1, 28, 28], [256, 256]),
  },
  resizeC3: {
    label: 'resize [32, 3, 28, 28] -> 256 x 256',
    peer: 'torch F.interpolate',
    run: () => resizeBilinear(data.c3, [32, 3, 28, 28], [256, 256]),
  },
  blur: {
    label: 'blur sigma 4, [32, 256, 256]',
    peer: 'scipy gaussian_filter',
    run: () => gaussianBlur(data.maps, [32, 256, 256], 4),
  },
  cosine: {
    label: 'cosine distance [32, 256, 64, 64]',
    peer: '1 - torch F.cosine_similarity',
    run: () => cosineDistanceMap(data.a, data.b, [32, 256, 64, 64]),
  },
  l2: {
    label: 'L2 distance [32, 256, 64, 64]',
    peer: 'torch.linalg.vector_norm(a - b)',
    run: () => l2DistanceMap(data.a, data.b, [32, 256, 64, 64]),
  },
};

async function measureOurs() {
  const bench = new Bench({ time: SECONDS * 1000, warmupTime: 200 });
  for (const [name, op] of Object.entries(ops)) bench.add(name, op.run);
  await bench.run();
  return Object.fromEntries(bench.tasks.map((t) => [t.name, t.result.latency.min / 1000]));
}

const dir = mkdtempSync(join(tmpdir(), 'anomalens-maps-bench-'));
const initialThreads = numThreads();
const load = [loadavg()[0].toFixed(1)];
const best = {};
const keep = (key, seconds) => (best[key] = Math.min(best[key] ?? Infinity, seconds));
try {
  writeFileSync(join(dir, 'resize_c1.f32'), data.c1);
  writeFileSync(join(dir, 'resize_c3.f32'), data.c3);
  writeFileSync(join(dir, 'blur.f32'), data.maps);
  writeFileSync(join(dir, 'a.f32'), data.a);
  writeFileSync(join(dir, 'b.f32'), data.b);
  for (let round = 0; round < ROUNDS; round++)
    for (const t of THREADS) {
      setNumThreads(t);
      for (const [name, s] of Object.entries(await measureOurs())) keep(`ours ${name} ${t}`, s);
      const out = execFileSync('/usr/bin/python3', [join('bench', 'peers', 'maps_peer.py'), dir, String(t), String(PEER_REPEATS)], {
        cwd: root,
        encoding: 'utf8',
        env: { ...process.env, OMP_NUM_THREADS: String(t) },
      });
      const peer = JSON.parse(out.trim().split('\n').pop());
      for (const [name, s] of Object.entries(peer.seconds)) keep(`peer ${name} ${t}`, s);
    }
  load.push(loadavg()[0].toFixed(1));

  // Agreement with the peer's outputs (its 1-thread run; torch's last bits depend on threads).
  setNumThreads(2);
  const agreement = {};
  for (const [name, op] of Object.entries(ops)) {
    const ours = await op.run();
    const raw = readFileSync(join(dir, `peer-${name}-1.f32`));
    const peer = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
    let maxAbs = 0;
    let maxRef = 0;
    let differ = 0;
    for (let i = 0; i < peer.length; i++) {
      const d = Math.abs(ours[i] - peer[i]);
      if (d > 0) differ++;
      maxAbs = Math.max(maxAbs, d);
      maxRef = Math.max(maxRef, Math.abs(peer[i]));
    }
    agreement[name] = differ === 0 ? 'bit-identical' : `max |diff| ${(maxAbs / maxRef).toExponential(1)} x max |ref| (${differ} of ${peer.length} differ)`;
  }

  const fmt = (s) => (s >= 1 ? `${s.toFixed(2)} s` : `${(s * 1e3).toFixed(2)} ms`);
  console.log(
    `\nbest of ${ROUNDS} rounds (tinybench ${SECONDS} s per op per round / peer best of ${PEER_REPEATS}); load average ${load.join(' -> ')}`,
  );
  console.log('| op | peer | threads | anomalens | peer time | speed-up | maps/s (anomalens) | outputs vs peer (1 thread) |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const [name, op] of Object.entries(ops))
    for (const t of THREADS) {
      const o = best[`ours ${name} ${t}`];
      const p = best[`peer ${name} ${t}`];
      console.log(`| ${op.label} | ${op.peer} | ${t} | ${fmt(o)} | ${fmt(p)} | ${(p / o).toFixed(1)}x | ${(32 / o).toFixed(0)} | ${t === 1 ? agreement[name] : ''} |`);
    }
} finally {
  setNumThreads(initialThreads);
  rmSync(dir, { recursive: true, force: true });
}
