// Metrics: seconds of anomalens' image AUROC, pixel AUROC and AUPRO against sklearn's
// roc_auc_score and the float64 numpy/scipy MVTec AD AUPRO reference
// (test/fixtures/metrics/make_fixtures.py), on the same synthetic test sets of 100 and 1000
// anomaly maps of 256 x 256 with masks, in the same run; the values must agree to 1e-9.
// anomalens runs on 2 threads (and 1 for reference); Python is single-threaded numpy.
// Each figure is the best of several runs (the machine is shared). Results: '## Metrics'
// in bench/RESULTS.md.
//   npx tsc -p tsconfig.json && node bench/run.mjs metrics
//   METRICS_BENCH_SIZES=100 node bench/run.mjs metrics   (sizes to run, comma-separated)
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { aupro, imageAuroc, pixelAuroc, setNumThreads } from '../dist/lib/index.js';
import { hash32 } from './seeded-weights.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const H = 256;
const W = 256;
const SIZES = (process.env.METRICS_BENCH_SIZES ?? '100,1000').split(',').map(Number);
const REPEATS = Number(process.env.METRICS_BENCH_REPEATS ?? 5);

/** Box blur of radius r (clamped edges), src -> dst, both h * w. */
function boxBlur(src, dst, tmp, h, w, r) {
  const norm = 1 / (2 * r + 1);
  for (let y = 0; y < h; y++) {
    const o = y * w;
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let d = -r; d <= r; d++) s += src[o + Math.min(w - 1, Math.max(0, x + d))];
      tmp[o + x] = s * norm;
    }
  }
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let d = -r; d <= r; d++) s += tmp[Math.min(h - 1, Math.max(0, y + d)) * w + x];
      dst[y * w + x] = s * norm;
    }
}

/**
 * n smooth anomaly maps (blurred noise plus a blurred bump over each defect) and masks
 * (0/255): every other image has 1-3 elliptical defects of 3-24 px radius, some touching.
 */
function makeSet(n) {
  const hw = H * W;
  const maps = new Float32Array(n * hw);
  const masks = new Uint8Array(n * hw);
  const noise = new Float32Array(hw);
  const smooth = new Float32Array(hw);
  const bump = new Float32Array(hw);
  const tmp = new Float32Array(hw);
  for (let k = 0; k < n; k++) {
    const mask = masks.subarray(k * hw, (k + 1) * hw);
    if (k % 2 === 1) {
      const blobs = 1 + (hash32(k, 0) % 3);
      for (let j = 0; j < blobs; j++) {
        const cx = hash32(k, 1 + 4 * j) % W;
        const cy = hash32(k, 2 + 4 * j) % H;
        const rx = 3 + (hash32(k, 3 + 4 * j) % 22);
        const ry = 3 + (hash32(k, 4 + 4 * j) % 22);
        for (let y = Math.max(0, cy - ry); y <= Math.min(H - 1, cy + ry); y++)
          for (let x = Math.max(0, cx - rx); x <= Math.min(W - 1, cx + rx); x++)
            if ((x - cx) ** 2 * ry * ry + (y - cy) ** 2 * rx * rx <= rx * rx * ry * ry) mask[y * W + x] = 255;
      }
    }
    for (let i = 0; i < hw; i++) {
      noise[i] = hash32(1_000_000 + k, i) / 2 ** 32;
      bump[i] = mask[i] ? 1 : 0;
    }
    boxBlur(noise, smooth, tmp, H, W, 3);
    boxBlur(bump, bump, tmp, H, W, 6);
    const offset = (hash32(k, 99) % 100) / 1000;
    const gain = 0.2 + (hash32(k, 98) % 50) / 100;
    const map = maps.subarray(k * hw, (k + 1) * hw);
    for (let i = 0; i < hw; i++) map[i] = offset + smooth[i] + gain * bump[i];
  }
  return { maps, masks };
}

/** Best wall-clock seconds of `repeats` runs of an async fn, and its last value. */
async function bestOf(repeats, fn) {
  let best = Infinity;
  let value;
  for (let r = 0; r < repeats; r++) {
    const t0 = process.hrtime.bigint();
    value = await fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return { seconds: best, value };
}

const dir = mkdtempSync(join(tmpdir(), 'anomalens-metrics-bench-'));
const rows = [];
const loadStart = loadavg()[0].toFixed(1);
try {
  for (const n of SIZES) {
    const { maps, masks } = makeSet(n);
    const hw = H * W;
    const mapList = { data: maps, shape: [n, H, W] };
    const maskList = { data: masks, shape: [n, H, W] };
    const scores = new Float32Array(n);
    const labels = new Uint8Array(n);
    for (let k = 0; k < n; k++) {
      let m = -Infinity;
      let any = 0;
      for (let i = k * hw; i < (k + 1) * hw; i++) {
        if (maps[i] > m) m = maps[i];
        if (masks[i]) any = 1;
      }
      scores[k] = m;
      labels[k] = any;
    }
    const ours = {};
    for (const threads of [2, 1]) {
      setNumThreads(threads);
      ours[threads] = {
        image: await bestOf(REPEATS * 4, () => imageAuroc(scores, labels)),
        pixel: await bestOf(REPEATS, () => pixelAuroc(mapList, maskList)),
        aupro: await bestOf(REPEATS, () => aupro(mapList, maskList, { fprLimit: 0.3 })),
      };
    }
    writeFileSync(join(dir, 'maps.f32'), new Uint8Array(maps.buffer));
    writeFileSync(join(dir, 'masks.u8'), masks);
    const peerRepeats = n >= 1000 ? 1 : 3;
    const out = execFileSync(
      '/usr/bin/python3',
      [join('bench', 'peers', 'metrics_peer.py'), join(dir, 'maps.f32'), join(dir, 'masks.u8'), String(n), String(H), String(W), String(peerRepeats)],
      { cwd: root, encoding: 'utf8', maxBuffer: 1 << 24 },
    );
    const peer = JSON.parse(out.trim().split('\n').pop());
    const agree = (a, b) => (Math.abs(a - b) <= 1e-9 ? 'yes' : `NO (${a} vs ${b})`);
    rows.push(
      [n, 'image AUROC', ours[2].image, ours[1].image, peer.imageAurocSeconds, 'sklearn roc_auc_score', agree(ours[2].image.value, peer.imageAuroc)],
      [n, 'pixel AUROC', ours[2].pixel, ours[1].pixel, peer.pixelAurocSeconds, 'sklearn roc_auc_score', agree(ours[2].pixel.value, peer.pixelAuroc)],
      [n, 'AUPRO (0.3)', ours[2].aupro, ours[1].aupro, peer.auproSeconds, 'numpy/scipy MVTec reference (float64)', agree(ours[2].aupro.value, peer.aupro)],
    );
    console.log(`${n} maps: ${JSON.stringify({ ours: { pixel: ours[2].pixel.value, aupro: ours[2].aupro.value }, peer })}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const fmt = (s) => (s >= 1 ? `${s.toFixed(2)} s` : s >= 1e-3 ? `${(s * 1e3).toFixed(1)} ms` : `${(s * 1e6).toFixed(0)} µs`);
console.log(`\nmaps of ${H} x ${W}, every other image with 1-3 defects; best of ${REPEATS} runs (anomalens), 3 or 1 (peer, 100 / 1000 maps); load average ${loadStart} at start, ${loadavg()[0].toFixed(1)} at end`);
console.log('| maps | metric | anomalens 2 threads | anomalens 1 thread | peer | peer time | ratio (2 threads) | values agree to 1e-9 |');
console.log('|---|---|---|---|---|---|---|---|');
for (const [n, metric, a2, a1, p, peerName, agree] of rows)
  console.log(`| ${n} | ${metric} | ${fmt(a2.seconds)} | ${fmt(a1.seconds)} | ${peerName} | ${fmt(p)} | ${(p / a2.seconds).toFixed(1)}x | ${agree} |`);
