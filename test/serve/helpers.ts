/**
 * Shared set-up of the serve tests: a small PatchCore fitted on synthetic tiles with seeded
 * resnet18 weights, a private redis-server on a free loopback port, and the CLI in a child
 * process (from dist/, rebuilt when a lib/ source is newer).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import sharp from 'sharp';
import { Detector } from '../../lib/detector/detector.js';
import { writeSeededWeights } from '../helpers/seeded.js';
import { tempDir } from '../helpers/tmp.js';

const repo = join(import.meta.dirname, '..', '..');
const parity = JSON.parse(readFileSync(join(repo, 'test/fixtures/backbone/parity.json'), 'utf8'));

/** A textured grey tile (72x64); `spot` paints a bright square. */
export async function writeTile(path: string, seed: number, spot = false, format: 'png' | 'jpeg' = 'png'): Promise<void> {
  const w = 72, h = 64;
  const px = Buffer.alloc(w * h);
  for (let i = 0; i < px.length; i++) px[i] = 100 + ((i * 7 + seed * 13 + ((i / w) | 0) * 3) % 40);
  if (spot) for (let y = 20; y < 36; y++) for (let x = 30; x < 46; x++) px[y * w + x] = 250;
  const img = sharp(px, { raw: { width: w, height: h, channels: 1 } });
  await (format === 'png' ? img.png() : img.jpeg({ quality: 90 })).toFile(path);
}

export interface Fixture {
  dir: string;
  weights: string;
  model: string;
  /** Images the server may read (the allowed root): good_*.png and spot_*.png. */
  root: string;
  detector: Detector;
  cleanup: () => void;
}

/**
 * Fits PatchCore (coreset 1: every patch) on 6 tiles at 64x64 and sets thresholds between
 * the good and the spotted test tiles, so that predLabel is meaningful.
 */
export async function fitFixture(): Promise<Fixture> {
  const { dir, cleanup } = tempDir('anomalens-serve-');
  const weights = join(dir, 'r18.safetensors');
  await writeSeededWeights(weights, parity.archs.resnet18.tensors);
  const train = join(dir, 'train');
  const root = join(dir, 'root');
  mkdirSync(train);
  mkdirSync(root);
  const trainPaths: string[] = [];
  for (let i = 0; i < 6; i++) {
    trainPaths.push(join(train, `${i}.png`));
    await writeTile(trainPaths[i], i);
  }
  for (let i = 0; i < 3; i++) {
    await writeTile(join(root, `good_${i}.png`), 10 + i);
    await writeTile(join(root, `spot_${i}.png`), 20 + i, true);
  }
  const detector = await Detector.create({ method: 'patchcore', arch: 'resnet18', weights, size: 64, batchSize: 8, methodOptions: { coreset: 1 } });
  await detector.fit(trainPaths);
  const preds = await detector.predict(readdirSync(root).sort().map((f) => join(root, f)));
  const good = preds.filter((p) => p.path!.includes('good_')).map((p) => p.predScore);
  const spot = preds.filter((p) => p.path!.includes('spot_')).map((p) => p.predScore);
  const image = (Math.max(...good) + Math.min(...spot)) / 2;
  let mapMax = -Infinity, mapMin = Infinity;
  for (const p of preds) for (const v of p.anomalyMap!) (mapMax = Math.max(mapMax, v)), (mapMin = Math.min(mapMin, v));
  detector.thresholds = { version: 1, image, pixel: (mapMin + mapMax) / 2, normalization: { image: { min: Math.min(...good), max: Math.max(...spot) } } };
  const model = join(dir, 'model.anomalens');
  await detector.save(model);
  return { dir, weights, model, root, detector, cleanup };
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Resolves with the first stdout/stderr line of `child` matching `re` (rejects on exit first). */
export function waitForLine(child: ChildProcess, re: RegExp, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      const m = buf.split('\n').find((l) => re.test(l));
      if (m !== undefined) done(() => resolve(m));
    };
    const onExit = (code: number | null) => done(() => reject(new Error(`process exited (${code}) before printing ${re}; output:\n${buf}`)));
    const timer = setTimeout(() => done(() => reject(new Error(`no line matching ${re} within ${timeoutMs} ms; output:\n${buf}`))), timeoutMs);
    const done = (f: () => void) => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      f();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

export interface Redis {
  url: string;
  port: number;
  /** Stops the server (SIGTERM: it writes its append-only file when persistent) and waits. */
  stop(): Promise<void>;
  /** Starts it again on the same port and folder. */
  start(): Promise<void>;
}

/**
 * Starts a private redis-server on a free loopback port in a temporary folder: no
 * snapshots, append-only file only when `persist` (fsync always, so that a restart loses
 * nothing). Fails with a clear message when redis-server is not installed.
 */
export async function startRedis(dir: string, options: { persist?: boolean } = {}): Promise<Redis> {
  if (spawnSync('redis-server', ['--version']).error)
    throw new Error('redis-server is not on PATH: the serve tests need it (Debian: apt-get install redis-server; listed in .ci/debian-test.txt)');
  const port = await freePort();
  const folder = join(dir, `redis-${port}`);
  mkdirSync(folder, { recursive: true });
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', folder, '--daemonize', 'no',
    '--appendonly', options.persist ? 'yes' : 'no', '--appendfsync', 'always', '--maxmemory-policy', 'noeviction',
    '--protected-mode', 'yes', '--loglevel', 'warning',
  ];
  let child: ChildProcess | undefined;
  const redis: Redis = {
    url: `redis://127.0.0.1:${port}`,
    port,
    async start() {
      child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      await waitForPing(port, child);
    },
    async stop() {
      if (!child) return;
      const c = child;
      child = undefined;
      c.kill('SIGTERM');
      await exited(c);
    },
  };
  await redis.start();
  return redis;
}

/** Waits until redis-server answers PING (redis-cli is in the same Debian package). */
async function waitForPing(port: number, child: ChildProcess): Promise<void> {
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}): ${output}`);
    const r = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'ping'], { encoding: 'utf8' });
    if (r.stdout?.trim() === 'PONG') return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server on port ${port} did not answer PING: ${output}`);
}

/** Builds dist/ (tsc) when any lib/ source is newer than its output, so children run the current code. */
export function ensureDist(): string {
  const cli = join(repo, 'dist/lib/cli/cli.js');
  const newest = (d: string): number =>
    Math.max(0, ...readdirSync(d, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(join(d, e.name)) : statSync(join(d, e.name)).mtimeMs)));
  if (!existsSync(cli) || newest(join(repo, 'lib')) > statSync(cli).mtimeMs || !existsSync(join(repo, 'dist/lib/serve/cli.js')))
    execFileSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', join(repo, 'tsconfig.json')], { stdio: 'inherit' });
  return cli;
}

/** Runs `anomalens <args>` from dist/ in a child process (stdout and stderr piped). */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(process.execPath, [ensureDist(), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
}

/** A multipart/form-data body with one file field. */
export function multipart(field: string, filename: string, bytes: Uint8Array, type = 'image/png'): { payload: Buffer; headers: Record<string, string> } {
  const boundary = '----anomalens' + Math.random().toString(16).slice(2);
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\nContent-Type: ${type}\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { payload: Buffer.concat([head, bytes, tail]), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}
