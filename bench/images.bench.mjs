// Images: images/s of anomalens' decode + preprocess (loadBatch) and preprocess only
// (preprocessImages on decoded images) against Pillow + torchvision transforms, on 64
// magnetic-tile JPEGs (grey, about 200-400 px), batches of 32, in the same run.
// 1-core rows pin each side to CPU 0 with taskset (anomalens with 1 OpenMP thread, 1 libvips
// thread, 1 libuv thread); 2-core rows give anomalens both cores and Pillow a DataLoader with
// 2 worker processes. Results: '## Images' in bench/RESULTS.md.
//   npx tsc -p tsconfig.json && node bench/run.mjs images
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { Bench } from 'tinybench';
import { IMAGENET_PREPROCESS, decodeImageRaw, loadBatch, preprocessImages, setNumThreads, squareResize } from '../dist/lib/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const tiles = join(root, '..', 'shared', 'data', 'magnetic-tile', 'train', 'good');
const PRESETS = { imagenet: IMAGENET_PREPROCESS, square256: squareResize(256) };
const BATCH = 32;
const SECONDS = Number(process.env.IMAGES_BENCH_SECONDS ?? 3);
const ROUNDS = Number(process.env.IMAGES_BENCH_ROUNDS ?? 3);
const isChild = process.env.ANOMALENS_IMAGES_BENCH_CHILD === '1';

/** images/s of anomalens on `files` for every preset and stage, in this process. */
async function measureAnomalens(files) {
  const decoded = await Promise.all(files.map((f) => decodeImageRaw(f)));
  const bench = new Bench({ time: SECONDS * 1000, warmupTime: 300 });
  for (const [name, pre] of Object.entries(PRESETS)) {
    bench.add(`full ${name}`, async () => {
      for (let i = 0; i < files.length; i += BATCH) await loadBatch(files.slice(i, i + BATCH), pre);
    });
    bench.add(`pre ${name}`, async () => {
      for (let i = 0; i < decoded.length; i += BATCH) await preprocessImages(decoded.slice(i, i + BATCH), pre);
    });
  }
  await bench.run();
  return Object.fromEntries(bench.tasks.map((t) => [t.name, files.length / (t.result.latency.p50 / 1000)]));
}

function python(args, pin) {
  const cmd = pin ? ['taskset', ['-c', '0', '/usr/bin/python3', ...args]] : ['/usr/bin/python3', args];
  return JSON.parse(execFileSync(cmd[0], cmd[1], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 24 }).trim().split('\n').pop()).imagesPerSecond;
}

if (isChild) {
  setNumThreads(1);
  sharp.concurrency(1);
  process.stdout.write(`${JSON.stringify(await measureAnomalens(JSON.parse(process.env.ANOMALENS_IMAGES_BENCH_FILES)))}\n`);
} else if (!existsSync(tiles)) {
  console.log(`images bench skipped: ${tiles} is absent`);
} else {
  const files = readdirSync(tiles).filter((f) => f.endsWith('.jpg')).sort().slice(0, 64).map((f) => join(tiles, f));
  const load = loadavg()[0].toFixed(1);
  const peer = join('bench', 'peers', 'pil_images.py');
  // The machine is shared: every figure is the best of ROUNDS interleaved rounds.
  const best = {};
  const keep = (key, v) => (best[key] = Math.max(best[key] ?? 0, v));
  for (let round = 0; round < ROUNDS; round++) {
    const child = execFileSync('taskset', ['-c', '0', process.execPath, fileURLToPath(import.meta.url)], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, ANOMALENS_IMAGES_BENCH_CHILD: '1', UV_THREADPOOL_SIZE: '1', ANOMALENS_IMAGES_BENCH_FILES: JSON.stringify(files) },
    });
    for (const [k, v] of Object.entries(JSON.parse(child.trim().split('\n').pop()))) keep(`a1 ${k}`, v);
    for (const [k, v] of Object.entries(await measureAnomalens(files))) keep(`a2 ${k}`, v);
    for (const name of Object.keys(PRESETS)) {
      const py = (mode, workers, pin) => python([peer, mode, name, String(workers), String(BATCH), String(SECONDS), ...files], pin);
      keep(`p1 full ${name}`, py('full', 0, true));
      keep(`p2 full ${name}`, py('full', 2, false));
      keep(`p1 pre ${name}`, py('pre', 0, true));
    }
  }
  const rows = [];
  for (const name of Object.keys(PRESETS)) {
    rows.push([name, 'decode + preprocess', 1, best[`a1 full ${name}`], best[`p1 full ${name}`], 'in-process']);
    rows.push([name, 'decode + preprocess', 2, best[`a2 full ${name}`], best[`p2 full ${name}`], 'DataLoader, 2 workers']);
    rows.push([name, 'preprocess only', 1, best[`a1 pre ${name}`], best[`p1 pre ${name}`], 'in-process']);
    rows.push([name, 'preprocess only', 2, best[`a2 pre ${name}`], null, '']);
  }
  console.log(`\n${files.length} magnetic-tile JPEGs (train/good, first 64 by name), batches of ${BATCH}; best of ${ROUNDS} rounds; load average ${load} at start, ${loadavg()[0].toFixed(1)} at end`);
  console.log('| preset | stage | cores | anomalens img/s | Pillow + torchvision img/s | ratio | peer mode |');
  console.log('|---|---|---|---|---|---|---|');
  for (const [preset, stage, cores, a, p, mode] of rows)
    console.log(`| ${preset} | ${stage} | ${cores} | ${a.toFixed(0)} | ${p ? p.toFixed(0) : '-'} | ${p ? (a / p).toFixed(2) : '-'} | ${mode} |`);
}
