/**
 * Crash safety of every save: a child process repeats a save (two versions A and B in turn)
 * and is killed with SIGKILL at a random point; the file must then be A or B, whole, and the
 * temporaries a killed writer leaves must be gone after the next run. 50 trials per writer
 * (ANOMALENS_KILL_TRIALS for more), seeded (ANOMALENS_KILL_SEED).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Detector, MemoryBank, readSafetensors } from '../../lib/index.js';
import { forgetSweeps, mulberry32, restoreHalfSwapped, sweepStaleTemps, tempOwner, tempPath, writeFileAtomic } from '../../lib/internal.js';
import { writeSeededWeights } from '../helpers/seeded.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { ensureDist, writeTile } from '../serve/helpers.js';

const TRIALS = Number(process.env.ANOMALENS_KILL_TRIALS ?? 50);
const SEED = Number(process.env.ANOMALENS_KILL_SEED ?? 20261201);
const parity = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures/backbone/parity.json'), 'utf8'));
// Stem to layer3 of the seeded resnet18 (11 MB): enough for PatchCore, quick to load per trial.
const tensors = (parity.archs.resnet18.tensors as [string, number[]][]).filter(([n]) => !n.startsWith('layer4') && !n.startsWith('fc'));
const { dir, cleanup } = tempDir('anomalens-kill-');
const weights = join(dir, 'r18.safetensors');
const TEMP = /\.tmp-\d+-[0-9a-f]{8}$/;

/** A pid that has just exited (and so owns nothing that runs). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

/** Starts the save loop, waits for `ready`, kills it at a random point of one A+B cycle. */
async function killDuringSave(kind: string, cfg: Record<string, unknown>, random: () => number): Promise<{ delay: number; cycle: number }> {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'save-child.mjs'), join(import.meta.dirname, '../../dist'), kind, JSON.stringify(cfg)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, OMP_NUM_THREADS: '1' },
  });
  let err = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const cycle = await new Promise<number>((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      err += d;
      const m = /^ready (\d+)$/m.exec(err);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`the ${kind} child exited (${code}) before it was ready:\n${err}`)));
  });
  const delay = random() * cycle;
  await new Promise((r) => setTimeout(r, delay));
  child.kill('SIGKILL');
  await exited;
  return { delay, cycle };
}

/** Names in `folder` that are neither expected nor temporaries: must never exist. */
function audit(folder: string, expected: string[]): { temps: string[]; strangers: string[] } {
  const names = readdirSync(folder);
  return { temps: names.filter((n) => TEMP.test(n)), strangers: names.filter((n) => !TEMP.test(n) && !expected.includes(n)) };
}

function sameBytes(path: string, refs: Buffer[]): boolean {
  const b = readFileSync(path);
  return refs.some((r) => r.equals(b));
}

interface Tally { trials: number; leftTemps: number; sawA: number; sawB: number }

/**
 * Runs the trials of one writer: after each kill every expected file is one of its two
 * versions, byte for byte; then `nextRun` (the same write, in this process) must leave no
 * temporary behind.
 */
async function trials(kind: string, cfg: Record<string, unknown>, folder: string, refs: Record<string, [Buffer, Buffer]>, nextRun: () => Promise<void>): Promise<Tally> {
  // mulberry32: the kill delays of a run are reproducible from SEED.
  const random = mulberry32(SEED ^ [...kind].reduce((h, c) => Math.imul(h ^ c.charCodeAt(0), 16777619), 2166136261));
  const expected = Object.keys(refs);
  const tally: Tally = { trials: 0, leftTemps: 0, sawA: 0, sawB: 0 };
  for (let t = 0; t < TRIALS; t++) {
    const { delay, cycle } = await killDuringSave(kind, cfg, random);
    cfg = { ...cfg, cycle };
    const { temps, strangers } = audit(folder, expected);
    expect(strangers, `${kind} trial ${t} (kill after ${delay.toFixed(1)} ms)`).toEqual([]);
    if (temps.length) tally.leftTemps++;
    for (const name of expected) {
      const [a, b] = refs[name];
      const bytes = readFileSync(join(folder, name));
      const which = bytes.equals(a) ? 'A' : bytes.equals(b) ? 'B' : 'torn';
      expect(which, `${kind} trial ${t}: ${name} after a kill at ${delay.toFixed(1)} ms`).not.toBe('torn');
      if (name === expected[0]) which === 'A' ? tally.sawA++ : tally.sawB++;
    }
    tally.trials++;
  }
  // The next run: a new process would start with nothing swept.
  forgetSweeps();
  await nextRun();
  expect(audit(folder, expected)).toEqual({ temps: [], strangers: [] });
  return tally;
}

const tallies: Record<string, Tally> = {};

beforeAll(async () => {
  ensureDist();
  await writeSeededWeights(weights, tensors);
  for (const d of ['train', 'test', 'featA', 'featB']) mkdirSync(join(dir, d));
  for (let i = 0; i < 6; i++) await writeTile(join(dir, 'train', `${i}.png`), i);
  for (let i = 0; i < 3; i++) await writeTile(join(dir, 'test', `${i}.png`), 20 + i, i > 0);
  for (let i = 0; i < 2; i++) await writeTile(join(dir, 'featA', `${i}.png`), 30 + i);
  for (let i = 0; i < 3; i++) await writeTile(join(dir, 'featB', `${i}.png`), 40 + i);
});
afterAll(() => {
  console.log(`kill trials (seed ${SEED}): ${JSON.stringify(tallies)}`);
  cleanup();
});

describe('temporary names and the sweep', () => {
  it('tempPath() names an owner; the sweep removes the temporaries of dead processes only', async () => {
    const d = join(dir, 'sweep');
    mkdirSync(d);
    const mine = tempPath(join(d, 'a.bin'));
    expect(tempOwner(mine)).toBe(process.pid);
    const dead = deadPid();
    const stale = join(d, `a.bin.tmp-${dead}-0badf00d`);
    const staleDir = join(d, `report.tmp-${dead}-00c0ffee`);
    const live = join(d, `b.bin.tmp-${process.ppid}-12345678`);
    const user = join(d, 'c.tmp-notes');
    for (const f of [mine, stale, live, user]) writeFileSync(f, 'x');
    mkdirSync(staleDir);
    writeFileSync(join(staleDir, 'index.html'), 'x');
    const removed = await sweepStaleTemps(d);
    expect(removed.sort()).toEqual([`a.bin.tmp-${dead}-0badf00d`, `report.tmp-${dead}-00c0ffee`]);
    expect([mine, live, user].every((f) => existsSync(f))).toBe(true);
  });

  it('writeFileAtomic() sweeps the folder it writes into (once per process)', async () => {
    const d = join(dir, 'sweep2');
    mkdirSync(d);
    const stale = join(d, `x.csv.tmp-${deadPid()}-deadbeef`);
    writeFileSync(stale, 'half');
    forgetSweeps();
    await writeFileAtomic(join(d, 'y.csv'), 'whole');
    expect(readdirSync(d)).toEqual(['y.csv']);
  });

  it('a report folder swap killed between its two renames is completed on the next run (or undone)', async () => {
    const d = join(dir, 'swap');
    mkdirSync(d);
    const dead = deadPid();
    const target = join(d, 'report');
    const put = (name: string, text: string) => (mkdirSync(join(d, name)), writeFileSync(join(d, name, 'index.html'), text));
    put(`report.old-${dead}-0000000a`, 'old');
    put(`report.tmp-${dead}-0000000b`, 'new');
    await restoreHalfSwapped(target);
    await sweepStaleTemps(d);
    expect(readdirSync(d)).toEqual(['report']);
    expect(readFileSync(join(target, 'index.html'), 'utf8')).toBe('new');
    // Killed before the new folder was complete enough to swap: only the old one is out.
    const other = join(d, 'other');
    put(`other.old-${dead}-0000000c`, 'old');
    await restoreHalfSwapped(other);
    expect(readFileSync(join(other, 'index.html'), 'utf8')).toBe('old');
    // A live writer's half swap is left alone.
    put(`third.old-${process.pid}-0000000d`, 'old');
    await restoreHalfSwapped(join(d, 'third'));
    expect(existsSync(join(d, 'third'))).toBe(false);
  });
});

describe(`SIGKILL during a save, ${TRIALS} trials each: the file is the old or the new one, whole; no temporary survives the next run`, () => {
  it('Detector.save', async () => {
    const d = join(dir, 'det');
    mkdirSync(d);
    const train = readdirSync(join(dir, 'train')).sort().map((f) => join(dir, 'train', f));
    const files: string[] = [];
    for (const [i, part] of [train.slice(0, 3), train.slice(3)].entries()) {
      const det = await Detector.create({ method: 'patchcore', arch: 'resnet18', weights, size: 64, methodOptions: { coreset: 1 } });
      await det.fit(part);
      files.push(join(d, `${'ab'[i]}.anomalens`));
      await det.save(files[i]);
      det.dispose();
    }
    // What the child writes: a loaded detector saved again (byte-identical to the file it came from).
    const refs = files.map((f) => readFileSync(f)) as [Buffer, Buffer];
    const again = await Detector.load(files[0]);
    const target = join(d, 'model.anomalens');
    await again.save(target);
    expect(readFileSync(target).equals(refs[0])).toBe(true);
    tallies.detector = await trials('detector', { a: files[0], b: files[1], target }, d, { 'model.anomalens': refs, 'a.anomalens': [refs[0], refs[0]], 'b.anomalens': [refs[1], refs[1]] }, () => again.save(target));
    again.dispose();
  });

  it('MemoryBank.save (the native writer)', async () => {
    const d = join(dir, 'bank');
    mkdirSync(d);
    const random = mulberry32(7);
    const files: string[] = [];
    for (const [i, rows] of [20000, 24000].entries()) {
      const bank = new MemoryBank(32);
      await bank.add(Float32Array.from({ length: rows * 32 }, random));
      files.push(join(d, `${'ab'[i]}.anb`));
      await bank.save(files[i]);
      if (i === 0) await bank.save(join(d, 'bank.anb'));
      bank.dispose();
    }
    const refs = files.map((f) => readFileSync(f)) as [Buffer, Buffer];
    const next = await MemoryBank.load(files[1]);
    tallies.bank = await trials('bank', { a: files[0], b: files[1], target: join(d, 'bank.anb') }, d, { 'bank.anb': refs, 'a.anb': [refs[0], refs[0]], 'b.anb': [refs[1], refs[1]] }, () => next.save(join(d, 'bank.anb')));
    next.dispose();
  });

  it('anomalens features --out', async () => {
    const d = join(dir, 'features');
    mkdirSync(d);
    const out = join(d, 'f.safetensors');
    const args = (images: string) => ['features', '--arch', 'resnet18', '--weights', weights, '--taps', 'layer1,layer2', '--images', join(dir, images), '--size', '64', '--crop', 'none', '--out', out];
    const refs: Buffer[] = [];
    for (const v of ['featA', 'featB', 'featA']) {
      const r = await runCli(...args(v));
      expect(r.code, r.stderr).toBe(0);
      refs.push(readFileSync(out));
    }
    // Run to run, the bytes are the same: a byte comparison after a kill is exact.
    expect(refs[2].equals(refs[0])).toBe(true);
    expect(Object.keys((await readSafetensors(out)).tensors).sort()).toEqual(['layer1', 'layer2']);
    tallies.features = await trials('cli', { a: args('featA'), b: args('featB') }, d, { 'f.safetensors': [refs[0], refs[1]] }, async () => {
      expect((await runCli(...args('featA'))).code).toBe(0);
    });
  });

  it('anomalens predict --out (overlays and scores.csv)', async () => {
    const d = join(dir, 'predict');
    const out = join(d, 'out');
    mkdirSync(d);
    const models = ['a', 'b'].map((v) => join(dir, 'det', `${v}.anomalens`));
    const args = (m: string) => ['predict', '--model', m, '--data', join(dir, 'test'), '--out', out, '--overlay-scale', 'image'];
    const names = ['0_overlay.png', '1_overlay.png', '2_overlay.png', 'scores.csv'];
    const versions: Buffer[][] = [];
    for (const m of [models[1], models[0]]) {
      const r = await runCli(...args(m));
      expect(r.code, r.stderr).toBe(0);
      versions.unshift(names.map((n) => readFileSync(join(out, n))));
    }
    expect(versions[0][3].equals(versions[1][3])).toBe(false);
    const refs = Object.fromEntries(names.map((n, i) => [n, [versions[0][i], versions[1][i]] as [Buffer, Buffer]]));
    tallies.predict = await trials('cli', { a: args(models[0]), b: args(models[1]) }, out, refs, async () => {
      expect((await runCli(...args(models[0]))).code).toBe(0);
    });
    expect(sameBytes(join(out, 'scores.csv'), [versions[0][3]])).toBe(true);
    await sharp(join(out, '0_overlay.png')).raw().toBuffer();
  });
});
