// Training engine: convolution forward + backward (dx and dw, as a trainable layer with a
// trainable input needs) at ResNet-50 / PANDA shapes, anomalens (oneDNN primitives through
// lib/train) against torch 1.13 F.conv2d + autograd backward (bench/peers/train_peer.py), in
// the same run, with the same thread counts (1 and 2), interleaved rounds; each figure is the
// best over ROUNDS rounds (the machine is shared) of tinybench's fastest call (anomalens) /
// the peer's best of PEER_REPEATS. Correctness is the tests' (test/train/ops.test.ts).
// Results: '## Training engine' in bench/RESULTS.md.
//   npx tsc -p tsconfig.json && node bench/run.mjs train
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import { conv2dBackward, conv2dForward, setNumThreads } from '../dist/lib/index.js';
import { hashed } from './seeded-weights.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ROUNDS = Number(process.env.TRAIN_BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.TRAIN_BENCH_SECONDS ?? 2);
const PEER_REPEATS = Number(process.env.TRAIN_BENCH_PEER_REPEATS ?? 5);
const THREADS = [1, 2];
const N = Number(process.env.TRAIN_BENCH_BATCH ?? 16);

const shapes = {
  l3conv3x3: { label: `layer3 3x3 256->256, [${N}, 256, 14, 14]`, n: N, c: 256, h: 14, w: 14, k: 256, kh: 3, kw: 3, stride: 1, padding: 1 },
  l3conv1x1: { label: `layer3 1x1 1024->256, [${N}, 1024, 14, 14]`, n: N, c: 1024, h: 14, w: 14, k: 256, kh: 1, kw: 1, stride: 1, padding: 0 },
  l4conv3x3: { label: `layer4 3x3 512->512, [${N}, 512, 7, 7]`, n: N, c: 512, h: 7, w: 7, k: 512, kh: 3, kw: 3, stride: 1, padding: 1 },
};

const data = {};
for (const [name, s] of Object.entries(shapes)) {
  const oh = Math.floor((s.h + 2 * s.padding - s.kh) / s.stride) + 1;
  const ow = Math.floor((s.w + 2 * s.padding - s.kw) / s.stride) + 1;
  data[name] = {
    x: hashed(s.n * s.c * s.h * s.w, 1),
    w: hashed(s.k * s.c * s.kh * s.kw, 2),
    dy: hashed(s.n * s.k * oh * ow, 3),
  };
}

const best = {};
const keep = (key, s) => (best[key] = Math.min(best[key] ?? Infinity, s));
const load = [loadavg()[0].toFixed(2)];
const peerShapes = Object.fromEntries(Object.entries(shapes).map(([k, s]) => [k, { ...s, label: undefined }]));
for (let r = 0; r < ROUNDS; r++) {
  for (const t of THREADS) {
    setNumThreads(t);
    const bench = new Bench({ time: SECONDS * 1000, warmupIterations: 1, iterations: 3 });
    for (const [name, s] of Object.entries(shapes)) {
      const d = data[name];
      bench.add(name, async () => {
        await conv2dForward(d.x, d.w, null, s);
        await conv2dBackward(d.x, d.w, d.dy, s, { db: false });
      });
    }
    await bench.run();
    for (const task of bench.tasks) keep(`ours ${task.name} ${t}`, task.result.latency.min / 1000);
    const out = execFileSync('/usr/bin/python3', [join('bench', 'peers', 'train_peer.py'), String(t), String(PEER_REPEATS), JSON.stringify(peerShapes)], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, OMP_NUM_THREADS: String(t) },
    });
    const peer = JSON.parse(out.trim().split('\n').pop());
    for (const [name, s] of Object.entries(peer.seconds)) keep(`peer ${name} ${t}`, s);
  }
  load.push(loadavg()[0].toFixed(2));
}

const fmt = (s) => (s < 1 ? `${(s * 1000).toFixed(1)} ms` : `${s.toFixed(2)} s`);
console.log(`\nconv2d forward + backward (dx, dw); best of ${ROUNDS} rounds; load average ${load.join(' -> ')}`);
console.log('| shape | threads | anomalens | torch 1.13 | speed-up | GFLOP/s (anomalens) |');
console.log('|---|---|---|---|---|---|');
for (const [name, s] of Object.entries(shapes)) {
  const oh = Math.floor((s.h + 2 * s.padding - s.kh) / s.stride) + 1;
  const ow = Math.floor((s.w + 2 * s.padding - s.kw) / s.stride) + 1;
  const flops = 3 * 2 * s.n * s.k * oh * ow * s.c * s.kh * s.kw; // forward, backward data, backward weights
  for (const t of THREADS) {
    const o = best[`ours ${name} ${t}`];
    const p = best[`peer ${name} ${t}`];
    console.log(`| ${s.label} | ${t} | ${fmt(o)} | ${fmt(p)} | ${(p / o).toFixed(2)}x | ${(flops / o / 1e9).toFixed(0)} |`);
  }
}
