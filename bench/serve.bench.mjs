// Serving overhead: the HTTP service (anomalens serve, autocannon on 127.0.0.1) at 1, 4 and 16
// concurrent clients, the queue (serve --queue + BullMQ workers on a private redis-server) with
// 1 and 2 workers, against in-process Detector.predict on the same images in the same run.
//
//   npm run build && node bench/run.mjs serve
//   env: SERVE_SECONDS=8 (per configuration)  SERVE_TRAIN=20  SERVE_CLIENTS=1,4,16
//        SERVE_MODEL=small (the seeded resnet18 at 64x64 even where ../shared/data exists)
//
// Model: PatchCore, ResNet-50 v2 stages 2+3 (../shared/data/weights), 224x224, coreset 0.1,
// fitted on the first SERVE_TRAIN magnetic-tile train/good images; requests cycle over the
// first 16 test/good images (multipart uploads). Without ../shared/data: seeded resnet18 at
// 64x64 on synthetic tiles (figures then say so). Every server and worker binds or connects to
// 127.0.0.1 only; redis-server runs without persistence in a temporary folder.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { Detector, setNumThreads } from '../dist/lib/index.js';
import { PredictQueue } from '../dist/lib/serve/index.js';
import { seededWeights } from './seeded-weights.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'dist', 'lib', 'cli.js');
const data = join(here, '..', '..', 'shared', 'data', 'magnetic-tile');
const realWeights = join(here, '..', '..', 'shared', 'data', 'weights', 'resnet50v2-onnxzoo-stages1-3.safetensors');
const seconds = Number(process.env.SERVE_SECONDS ?? 8);
const nTrain = Number(process.env.SERVE_TRAIN ?? 20);
const clientList = (process.env.SERVE_CLIENTS ?? '1,4,16').split(',').map(Number);
const tmp = mkdtempSync(join(tmpdir(), 'anomalens-serve-bench-'));
const children = [];

function files(d) {
  return readdirSync(d).filter((f) => /\.(jpe?g|png|bmp)$/i.test(f)).sort().map((f) => join(d, f));
}

async function makeModel() {
  if (process.env.SERVE_MODEL !== 'small' && existsSync(data) && existsSync(realWeights)) {
    const det = await Detector.create({ method: 'patchcore', arch: 'resnet50_v2', weights: realWeights, size: 224, batchSize: 8, methodOptions: { coreset: 0.1 } });
    await det.fit(files(join(data, 'train', 'good')).slice(0, nTrain));
    return { det, images: files(join(data, 'test', 'good')).slice(0, 16), what: `PatchCore resnet50_v2 224x224 on magnetic-tile (${nTrain} train images)` };
  }
  const sharp = (await import('sharp')).default;
  mkdirSync(join(tmp, 'img'));
  const paths = [];
  for (let s = 0; s < 24; s++) {
    const w = 72, h = 64, px = Buffer.alloc(w * h);
    for (let i = 0; i < px.length; i++) px[i] = 100 + ((i * 7 + s * 13 + ((i / w) | 0) * 3) % 40);
    paths.push(join(tmp, 'img', `${s}.png`));
    await sharp(px, { raw: { width: w, height: h, channels: 1 } }).png().toFile(paths[s]);
  }
  const det = await Detector.create({ method: 'patchcore', arch: 'resnet18', weights: await seededWeights('resnet18', 3), size: 64, batchSize: 8, methodOptions: { coreset: 1 } });
  await det.fit(paths.slice(0, 8));
  return { det, images: paths.slice(8), what: 'PatchCore seeded resnet18 stages 1-3, 64x64, coreset 1, on synthetic 72x64 tiles' };
}

function start(args, ready) {
  const c = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(c);
  return new Promise((resolve, reject) => {
    let out = '';
    const on = (d) => {
      out += d;
      const m = ready.exec(out);
      if (m) resolve({ child: c, match: m });
    };
    c.stdout.on('data', on);
    c.stderr.on('data', on);
    c.once('exit', (code) => reject(new Error(`${args[0]} exited ${code}: ${out}`)));
  });
}

async function stop(c, signal = 'SIGTERM') {
  if (c.exitCode !== null || c.signalCode !== null) return;
  c.kill(signal);
  await new Promise((r) => c.once('exit', r));
}

function multipartBody(bytes) {
  const boundary = '----anomalensbench';
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: application/octet-stream\r\n\r\n`),
    bytes, Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

/** autocannon against url/predict with `connections` clients for `seconds`, cycling the images. */
async function load(url, images, connections) {
  const requests = images.map((p) => ({ method: 'POST', path: '/predict', ...multipartBody(readFileSync(p)) }));
  await autocannon({ url, connections, amount: connections * 2, requests });  // warm-up
  const r = await autocannon({ url, connections, duration: seconds, requests });
  if (r.non2xx || r.errors) throw new Error(`${r.non2xx} non-2xx, ${r.errors} errors`);
  return { rps: r.requests.total / r.duration, p50: r.latency.p50, p99: r.latency.p99, n: r.requests.total };
}

async function inProcess(det, images, threads) {
  setNumThreads(threads);
  await det.predict(images.slice(0, 8));
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) n += (await det.predict(images)).length;
  return n / ((performance.now() - t0) / 1000);
}

async function startRedis() {
  if (spawnSync('redis-server', ['--version']).error) return undefined;
  const port = 20000 + Math.floor(Math.random() * 20000);
  const dir = join(tmp, 'redis');
  mkdirSync(dir);
  const c = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--maxmemory-policy', 'noeviction'], { stdio: 'ignore' });
  children.push(c);
  for (let i = 0; i < 100; i++) {
    if (spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout?.trim() === 'PONG') return { url: `redis://127.0.0.1:${port}`, child: c };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('redis-server did not start');
}

const fmt = (x, d = 1) => x.toFixed(d);
try {
  const threads = cpus().length;
  const load0 = loadavg().map((x) => x.toFixed(1)).join(' ');
  const { det, images, what } = await makeModel();
  const model = join(tmp, 'model.anomalens');
  await det.save(model);
  console.log(`${what}; ${threads} cores, load average ${load0}; ${seconds} s per configuration`);

  const rows = [];
  const ref = await inProcess(det, images, threads);
  rows.push([`in-process Detector.predict, batch 8, ${threads} threads`, ref, undefined, undefined, 1]);

  // Mean images per forward pass since the last call, from the server's own counters.
  const batchCounter = (url) => {
    let last = [0, 0];
    return async () => {
      const text = await (await fetch(`${url}/metrics`)).text();
      const v = (name) => Number(text.split('\n').find((l) => l.startsWith(name + ' ')).split(' ')[1]);
      const now = [v('anomalens_batch_size_sum'), v('anomalens_batch_size_count')];
      const mean = (now[0] - last[0]) / (now[1] - last[1]);
      last = now;
      return mean;
    };
  };
  for (const batch of [undefined, 1]) {
    const { child: server, match } = await start(['serve', '--model', model, '--port', '0', ...(batch ? ['--batch', String(batch)] : [])], /listening on (http:\/\/127\.0\.0\.1:\d+)/);
    const meanBatch = batchCounter(match[1]);
    for (const c of batch ? clientList.filter((c) => c > 1) : clientList) {
      await meanBatch();
      const r = await load(match[1], images, c);
      const label = batch ? 'no batching (--batch 1)' : `batching, mean ${fmt(await meanBatch())} images per pass`;
      rows.push([`HTTP serve, ${c} client${c > 1 ? 's' : ''}, ${label}`, r.rps, r.p50, r.p99, r.rps / ref]);
    }
    await stop(server);
  }

  const redis = await startRedis();
  if (!redis) console.log('queue: skipped (redis-server not installed)');
  else {
    const ref1 = await inProcess(det, images, 1);
    rows.push(['in-process Detector.predict, batch 8, 1 thread', ref1, undefined, undefined, 1]);
    const { child: front, match: m } = await start(['serve', '--queue', redis.url, '--port', '0'], /listening on (http:\/\/127\.0\.0\.1:\d+)/);
    const workers = [];
    let one;
    for (const count of [1, 2]) {
      while (workers.length < count)
        workers.push((await start(['worker', '--model', model, '--redis', redis.url, '--threads', '1', '--concurrency', '4'], /worker ready/)).child);
      const r = await load(m[1], images, 8);
      one ??= r.rps;
      rows.push([`HTTP serve --queue, 8 clients, ${count} worker${count > 1 ? 's' : ''} (1 thread each)`, r.rps, r.p50, r.p99, r.rps / ref1]);
      if (count === 2) console.log(`2 workers / 1 worker: ${fmt(r.rps / one, 2)}x`);
    }
    for (const w of workers) await stop(w);
    await stop(front);
    const q = await PredictQueue.connect(redis.url);
    await q.queue.obliterate({ force: true });
    await q.close();
  }
  console.log('\n| configuration | images/s | p50 ms | p99 ms | vs in-process |\n|---|---|---|---|---|');
  for (const [name, rps, p50, p99, ratio] of rows)
    console.log(`| ${name} | ${fmt(rps)} | ${p50 === undefined ? '' : fmt(p50, 0)} | ${p99 === undefined ? '' : fmt(p99, 0)} | ${fmt(ratio, 2)} |`);
  console.log(`load average at the end: ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  det.dispose();
} finally {
  for (const c of children) await stop(c, 'SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
}
