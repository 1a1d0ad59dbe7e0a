/**
 * The predict queue on a real redis-server (started here on a free loopback port): results
 * intact, input errors typed and not retried, serve --queue, a fleet of two worker processes
 * of which one is SIGKILLed mid-run, and a Redis restart mid-run.
 */
import { type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Job, QueueEvents } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Prediction } from '../../lib/detector/detector.js';
import { AnomalensError } from '../../lib/core/errors.js';
import { createServer } from '../../lib/serve/http.js';
import { PredictQueue, redisConnection, startWorker, type PredictWorker } from '../../lib/serve/queue.js';
import { decodeMap, type PredictResult } from '../../lib/serve/result.js';
import { ensureDist, exited, fitFixture, multipart, spawnCli, startRedis, waitForLine, type Fixture, type Redis } from './helpers.js';

let fx: Fixture;
let redis: Redis;
const files = ['good_0.png', 'good_1.png', 'good_2.png', 'spot_0.png', 'spot_1.png', 'spot_2.png'];
let reference: Map<string, Prediction>;
const children: ChildProcess[] = [];
const closers: (() => Promise<void>)[] = [];
const bytesOf = (f: string) => readFileSync(join(fx.root, f));

beforeAll(async () => {
  ensureDist();
  fx = await fitFixture();
  redis = await startRedis(fx.dir);
  const preds = await fx.detector.predict(files.map((f) => join(fx.root, f)));
  reference = new Map(files.map((f, i) => [f, preds[i]]));
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(children.map(exited));
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await redis?.stop();
  fx?.detector.dispose();
  fx?.cleanup();
});

function expectResult(r: PredictResult, f: string): void {
  const p = reference.get(f)!;
  expect(Math.abs(r.predScore - p.predScore) / p.predScore, f).toBeLessThan(1e-4);
  expect(r.predLabel, f).toBe(f.startsWith('spot') ? 1 : 0);
  expect([r.width, r.height]).toEqual([72, 64]);
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('PredictQueue and startWorker', () => {
  let q: PredictQueue;
  let w: PredictWorker;
  beforeAll(async () => {
    w = await startWorker({ detector: fx.detector, redis: redis.url, name: 'basic', concurrency: 4, root: fx.root });
    q = await PredictQueue.connect(redis.url, { name: 'basic' });
    closers.push(() => w.close(), () => q.close());
  });

  it('jobs of bytes and of paths come back with the results Detector.predict gives', async () => {
    const ids = await Promise.all(
      Array.from({ length: 12 }, (_, i) => (i % 2 ? q.enqueuePredict({ image: bytesOf(files[i % 6]) }) : q.enqueuePredict({ path: files[i % 6] }))),
    );
    const results = await Promise.all(ids.map((id) => q.waitForResult(id)));
    results.forEach((r, i) => expectResult(r, files[i % 6]));
    const withMap = await q.waitForResult(await q.enqueuePredict({ image: bytesOf('spot_0.png') }, { map: 'float32' }));
    const map = decodeMap(withMap)!;
    const ref = reference.get('spot_0.png')!.anomalyMap!;
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(map[i] - ref[i]) / Math.max(Math.abs(ref[i]), 1e-6));
    expect(worst).toBeLessThan(1e-4);
  });

  it('a bad image, a path outside the root: typed errors from waitForResult, and no retry', async () => {
    const bad = await q.enqueuePredict({ image: Buffer.from('no image here') }, { attempts: 3 });
    const outside = await q.enqueuePredict({ path: '../train/0.png' });
    let err = await q.waitForResult(bad).catch((e) => e);
    expect(err).toBeInstanceOf(AnomalensError);
    expect(err.code).toBe('ERR_INVALID_FILE');
    expect(err.message).toContain(`job ${bad}`);
    expect((await Job.fromId(q.queue, bad))!.attemptsMade).toBe(1);
    err = await q.waitForResult(outside).catch((e) => e);
    expect(err.code).toBe('ERR_FORBIDDEN');
    await expect(q.waitForResult('no-such-job')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
    expect(() => redisConnection('http://127.0.0.1:1')).toThrow(/redis:\/\//);
  });

  it('serve --queue: HTTP requests go to the workers and come back the same', async () => {
    const app = await createServer({ queue: q });
    closers.push(() => app.close());
    const res = await Promise.all(files.map((f) => app.inject({ method: 'POST', url: '/predict', ...multipart('image', f, bytesOf(f)) })));
    res.forEach((r, i) => {
      expect(r.statusCode, r.body).toBe(200);
      expectResult(r.json(), files[i]);
    });
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json()).toMatchObject({ mode: 'queue' });
    const m = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(m).toContain('anomalens_images_total 6');
    expect(m).toContain('anomalens_queue_depth 0');
    const bad = await app.inject({ method: 'POST', url: '/predict', ...multipart('image', 'x.png', Buffer.from('nope')) });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('ERR_INVALID_FILE');
  });
});

describe('serve --queue without workers', () => {
  it('a result that does not come in time is a 504 ERR_TIMEOUT; beyond maxQueue awaited jobs, 503 with Retry-After', async () => {
    const q = await PredictQueue.connect(redis.url, { name: 'idle' });
    const app = await createServer({ queue: q, resultTimeoutMs: 300, maxQueue: 1 });
    closers.push(() => q.close(), () => app.close());
    const [a, b] = await Promise.all(['good_0.png', 'good_1.png'].map((f) => app.inject({ method: 'POST', url: '/predict', ...multipart('image', f, bytesOf(f)) })));
    const codes = [a.statusCode, b.statusCode].sort();
    expect(codes).toEqual([503, 504]);
    const [busy, late] = a.statusCode === 503 ? [a, b] : [b, a];
    expect(busy.headers['retry-after']).toBe('1');
    expect(busy.json().error.code).toBe('ERR_BUSY');
    expect(late.json().error.code).toBe('ERR_TIMEOUT');
    expect(await q.waitingCount()).toBe(1);
    await q.queue.obliterate({ force: true });
  });
});

describe('a fleet of worker processes', () => {
  it('200 jobs on 2 workers, one SIGKILLed mid-job: both took work, every job completes exactly once with its result', async () => {
    const name = 'fleet';
    const spawnWorker = async (tag: string) => {
      const c = spawnCli(['worker', '--model', fx.model, '--redis', redis.url, '--queue-name', name, '--concurrency', '2', '--threads', '1', '--lock-ms', '2000', '--stalled-ms', '500']);
      children.push(c);
      const line = await waitForLine(c, /^worker ready/);
      expect(line, tag).toContain(`pid ${c.pid}, concurrency 2`);
      return c;
    };
    const [a, b] = await Promise.all([spawnWorker('a'), spawnWorker('b')]);
    const q = await PredictQueue.connect(redis.url, { name });
    const events = new QueueEvents(name, { connection: redisConnection(redis.url) });
    closers.push(() => q.close(), () => events.close());
    await events.waitUntilReady();
    const completions = new Map<string, number>();
    events.on('completed', ({ jobId }) => completions.set(jobId, (completions.get(jobId) ?? 0) + 1));

    const n = 200;
    const ids = await Promise.all(Array.from({ length: n }, (_, i) => q.enqueuePredict({ image: bytesOf(files[i % 6]) })));
    const fileOf = new Map(ids.map((id, i) => [id, files[i % 6]]));
    const nameOfA = (job: Job | undefined) => job?.processedBy?.endsWith(`:${a.pid}`);
    // Kill a once it has done some jobs and holds one.
    await until('worker a to be busy after 30 completions', async () =>
      completions.size >= 30 && (await q.queue.getActive()).some((j) => nameOfA(j)));
    a.kill('SIGKILL');
    expect((await exited(a)).signal).toBe('SIGKILL');
    // The jobs a held when it died: listed after its death (a job it finished between a listing
    // and the kill is not one it held), before the 2 s lock lets the stalled check move them.
    const heldByA = (await q.queue.getActive()).filter((j) => nameOfA(j)).map((j) => j.id!);
    await until('all jobs to complete', async () => (await q.queue.getCompletedCount()) === n);
    await until('the completed events', () => completions.size === n, 10_000);

    expect(heldByA.length).toBeGreaterThan(0);
    expect([...completions.values()].every((c) => c === 1)).toBe(true);
    expect(await q.queue.getFailedCount()).toBe(0);
    const jobs = await Promise.all(ids.map((id) => Job.fromId<unknown, PredictResult>(q.queue, id)));
    const by = new Map<string, number>();
    jobs.forEach((job, i) => {
      expectResult(job!.returnvalue, fileOf.get(ids[i])!);
      const who = job!.processedBy!.endsWith(`:${a.pid}`) ? 'a' : job!.processedBy!.endsWith(`:${b.pid}`) ? 'b' : job!.processedBy!;
      by.set(who, (by.get(who) ?? 0) + 1);
    });
    // The jobs a held when it died were taken over by b (BullMQ's stalled-job recovery).
    for (const id of heldByA) {
      const job = jobs[ids.indexOf(id)]!;
      expect(job.processedBy).toBe(jobs.find((j) => j!.processedBy!.endsWith(`:${b.pid}`))!.processedBy);
      expect(job.stalledCounter + job.attemptsStarted).toBeGreaterThan(1);
    }
    expect(by.get('a')).toBeGreaterThan(0);
    expect(by.get('b')).toBeGreaterThan(0);
    expect((by.get('a') ?? 0) + (by.get('b') ?? 0)).toBe(n);
    b.kill('SIGTERM');
    expect(await exited(b)).toEqual({ code: 0, signal: null });
  });

  it('Redis restarted mid-run: the worker reconnects and the queue drains', async () => {
    const persistent = await startRedis(fx.dir, { persist: true });
    closers.push(() => persistent.stop());
    const name = 'restart';
    const w = await startWorker({ detector: fx.detector, redis: persistent.url, name, concurrency: 2, lockDurationMs: 5000, stalledIntervalMs: 1000 });
    const q = await PredictQueue.connect(persistent.url, { name });
    closers.push(() => w.close(), () => q.close());
    const n = 60;
    const ids = await Promise.all(Array.from({ length: n }, (_, i) => q.enqueuePredict({ image: bytesOf(files[i % 6]) })));
    await until('10 completions', async () => (await q.queue.getCompletedCount()) >= 10);
    const doneBefore = await q.queue.getCompletedCount();
    await persistent.stop();
    await new Promise((r) => setTimeout(r, 1000));
    await persistent.start();
    expect(await q.queue.getCompletedCount()).toBeGreaterThanOrEqual(doneBefore);  // nothing lost with the restart
    expect(doneBefore).toBeLessThan(n);
    await until('the queue to drain after the restart', async () => (await q.queue.getCompletedCount()) === n);
    expect(await q.queue.getFailedCount()).toBe(0);
    const jobs = await Promise.all(ids.map((id) => Job.fromId<unknown, PredictResult>(q.queue, id)));
    jobs.forEach((job, i) => expectResult(job!.returnvalue, files[i % 6]));
  });
});
