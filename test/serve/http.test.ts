import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Prediction } from '../../lib/detector/detector.js';
import { AnomalensError } from '../../lib/core/errors.js';
import { createServer, listen } from '../../lib/serve/http.js';
import { decodeMap, type PredictResult } from '../../lib/serve/result.js';
import { fitFixture, multipart, type Fixture } from './helpers.js';

let fx: Fixture;
let reference: Map<string, Prediction>;
const files = ['good_0.png', 'good_1.png', 'spot_0.png', 'spot_1.png'];
const bytesOf = (f: string) => readFileSync(join(fx.root, f));

beforeAll(async () => {
  fx = await fitFixture();
  const preds = await fx.detector.predict(files.map((f) => join(fx.root, f)));
  reference = new Map(files.map((f, i) => [f, preds[i]]));
});
afterAll(() => {
  fx?.detector.dispose();
  fx?.cleanup();
});

function relErr(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
}

/** The served record agrees with Detector.predict on the same file. */
function expectSameAsPredict(r: PredictResult, f: string): void {
  const p = reference.get(f)!;
  // Float32 compute in batches of other sizes: within the project's 1e-4.
  expect(relErr(r.predScore, p.predScore), f).toBeLessThan(1e-4);
  expect(r.predLabel).toBe(p.predLabel);
  expect(r.predLabel).toBe(f.startsWith('spot') ? 1 : 0);
  expect(r.normalizedScore).toBeCloseTo(p.normalizedScore!, 5);
  expect([r.width, r.height]).toEqual([72, 64]);
}

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  if (!line) throw new Error(`metric ${name} not in:\n${text}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('POST /predict', () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = await createServer({ detector: fx.detector, root: fx.root, maxWaitMs: 2 });
  });
  afterAll(() => app.close());

  it('a multipart upload in the field image gives the scores Detector.predict gives', async () => {
    for (const f of files) {
      const res = await app.inject({ method: 'POST', url: '/predict', ...multipart('image', f, bytesOf(f)) });
      expect(res.statusCode, res.body).toBe(200);
      const r = res.json() as PredictResult;
      expectSameAsPredict(r, f);
      expect(r.anomalyMap).toBeUndefined();
      expect(r.overlay).toBeUndefined();
    }
  });

  it('a raw image body (image/png) and JSON { path } under the root give the same', async () => {
    let res = await app.inject({ method: 'POST', url: '/predict', payload: bytesOf('spot_1.png'), headers: { 'content-type': 'image/png' } });
    expect(res.statusCode, res.body).toBe(200);
    expectSameAsPredict(res.json(), 'spot_1.png');
    res = await app.inject({ method: 'POST', url: '/predict', payload: { path: 'good_1.png' } });
    expect(res.statusCode, res.body).toBe(200);
    expectSameAsPredict(res.json(), 'good_1.png');
    res = await app.inject({ method: 'POST', url: '/predict', payload: { path: join(fx.root, 'spot_0.png') } });
    expect(res.statusCode, res.body).toBe(200);
    expectSameAsPredict(res.json(), 'spot_0.png');
  });

  it('?map=float32 returns the anomaly map; map png an overlay PNG at the image size', async () => {
    let res = await app.inject({ method: 'POST', url: '/predict?map=float32', ...multipart('image', 'spot_0.png', bytesOf('spot_0.png')) });
    expect(res.statusCode, res.body).toBe(200);
    const r = res.json() as PredictResult;
    const map = decodeMap(r)!;
    const ref = reference.get('spot_0.png')!.anomalyMap!;
    expect(map.length).toBe(72 * 64);
    let worst = 0;
    for (let i = 0; i < map.length; i++) worst = Math.max(worst, Math.abs(map[i] - ref[i]) / Math.max(Math.abs(ref[i]), 1e-6));
    expect(worst).toBeLessThan(1e-4);
    // The same map as the raw body, with Accept: application/octet-stream.
    const u = multipart('image', 'spot_0.png', bytesOf('spot_0.png'));
    res = await app.inject({ method: 'POST', url: '/predict?map=float32', payload: u.payload, headers: { ...u.headers, accept: 'application/octet-stream' } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/octet-stream');
    expect(res.rawPayload.equals(Buffer.from(r.anomalyMap!.data, 'base64'))).toBe(true);
    expect(Number(res.headers['x-anomalens-pred-score'])).toBe(r.predScore);
    expect([res.headers['x-anomalens-pred-label'], res.headers['x-anomalens-width'], res.headers['x-anomalens-height']]).toEqual(['1', '72', '64']);
    res = await app.inject({ method: 'POST', url: '/predict', payload: { path: 'spot_0.png', map: 'png' } });
    expect(res.statusCode, res.body).toBe(200);
    const png = Buffer.from((res.json() as PredictResult).overlay!.data, 'base64');
    const meta = await sharp(png).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 72, 64]);
    // The bright square is where the map is hot: jet's red end (R high, B low) in the middle of it.
    const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    const at = (x: number, y: number) => [...data.subarray((y * 72 + x) * 3, (y * 72 + x) * 3 + 3)];
    expect(at(38, 28)[0]).toBeGreaterThan(at(38, 28)[2]);
  });

  it('JSON paths outside the root are refused (403), traversal and symlinks included; a missing file is 404', async () => {
    symlinkSync(join(fx.dir, 'train', '0.png'), join(fx.root, 'escape.png'));
    for (const path of ['../train/0.png', join(fx.dir, 'train', '0.png'), 'escape.png', '/etc/passwd', '..', '.']) {
      const res = await app.inject({ method: 'POST', url: '/predict', payload: { path } });
      expect(res.statusCode, `${path}: ${res.body}`).toBe(403);
      expect(res.json().error.code).toBe('ERR_FORBIDDEN');
    }
    const res = await app.inject({ method: 'POST', url: '/predict', payload: { path: 'nope.png' } });
    expect(res.statusCode).toBe(404);
    expect(res.json().error.code).toBe('ERR_NOT_FOUND');
  });

  it('bad requests: a bad image, a wrong field, a bad map value, a body without image -> 400 with the typed error', async () => {
    const cases = [
      [multipart('image', 'x.png', Buffer.from('definitely not a png')), 'ERR_INVALID_FILE', "upload 'x.png'"],
      [multipart('picture', 'x.png', bytesOf('good_0.png')), 'ERR_INVALID_ARGUMENT', "field 'image'"],
      [{ payload: { path: 'good_0.png', map: 'jpeg' } }, 'ERR_INVALID_ARGUMENT', 'map must be one of none, float32, png'],
      [{ payload: { nothing: 1 } }, 'ERR_INVALID_ARGUMENT', 'expected a multipart upload'],
    ] as const;
    for (const [req, code, text] of cases) {
      const res = await app.inject({ method: 'POST', url: '/predict', ...req });
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().error.code).toBe(code);
      expect(res.json().error.message).toContain(text);
    }
  });

  it('without a root, JSON paths are refused', async () => {
    const bare = await createServer({ detector: fx.detector });
    const res = await bare.inject({ method: 'POST', url: '/predict', payload: { path: 'good_0.png' } });
    expect(res.statusCode).toBe(403);
    expect(res.json().error.message).toContain('--root');
    await bare.close();
  });
});

describe('limits', () => {
  it('a body over maxBodyBytes is 413 (multipart, raw and path); an image over maxPixels is 413', async () => {
    const big = Buffer.alloc(5000, 1);
    writeFileSync(join(fx.root, 'big.bin'), big);
    const app = await createServer({ detector: fx.detector, root: fx.root, maxBodyBytes: 4096, maxPixels: 72 * 64 - 1 });
    const reqs = [
      { ...multipart('image', 'big.png', big) },
      { payload: big, headers: { 'content-type': 'application/octet-stream' } },
      { payload: { path: 'big.bin' } },
    ];
    for (const [i, req] of reqs.entries()) {
      const res = await app.inject({ method: 'POST', url: '/predict', ...req });
      expect(res.statusCode, `${i}: ${res.body}`).toBe(413);
      expect(res.json().error.code).toBe('ERR_TOO_LARGE');
    }
    const res = await app.inject({ method: 'POST', url: '/predict', ...multipart('image', 'good_0.png', bytesOf('good_0.png')) });
    expect(res.statusCode, res.body).toBe(413);
    expect(res.json().error).toMatchObject({ code: 'ERR_TOO_LARGE' });
    expect(res.json().error.message).toContain('72x64 = 4608 pixels');
    await app.close();
  });

  it('a full queue answers 503 with Retry-After; the queued request still completes', async () => {
    const app = await createServer({ detector: fx.detector, maxQueue: 1, maxBatch: 8, maxWaitMs: 60_000, retryAfterS: 3 });
    const first = app.inject({ method: 'POST', url: '/predict', ...multipart('image', 'a.png', bytesOf('good_0.png')) });
    const second = app.inject({ method: 'POST', url: '/predict', ...multipart('image', 'b.png', bytesOf('good_1.png')) });
    // One of the two waits for a batch (maxWaitMs is a minute); the other finds the queue full.
    const busy = await Promise.race([first, second]);
    expect(busy.statusCode, busy.body).toBe(503);
    expect(busy.headers['retry-after']).toBe('3');
    expect(busy.json().error.code).toBe('ERR_BUSY');
    // Closing flushes the waiting batch instead of waiting out maxWaitMs.
    const closing = app.close();
    const done = await (busy === (await first) ? second : first);
    expect(done.statusCode, done.body).toBe(200);
    await closing;
  });
});

describe('batching and metrics', () => {
  it('N concurrent requests go through in fewer forward passes; /metrics counts requests, latency, images, batches, queue depth', async () => {
    const app = await createServer({ detector: fx.detector, maxBatch: 8, maxWaitMs: 1000 });
    const n = 16;
    const res = await Promise.all(
      Array.from({ length: n }, (_, i) => app.inject({ method: 'POST', url: '/predict', ...multipart('image', `${i}.png`, bytesOf(files[i % 4])) })),
    );
    res.forEach((r, i) => {
      expect(r.statusCode, r.body).toBe(200);
      expectSameAsPredict(r.json(), files[i % 4]);
    });
    const m = await app.inject({ method: 'GET', url: '/metrics' });
    expect(m.statusCode).toBe(200);
    expect(m.headers['content-type']).toContain('text/plain');
    const text = m.body;
    expect(metric(text, 'anomalens_images_total')).toBe(n);
    const batches = metric(text, 'anomalens_batches_total');
    expect(batches).toBeGreaterThanOrEqual(n / 8);
    expect(batches).toBeLessThan(n);
    expect(text).toContain(`anomalens_requests_total{route="/predict",status="200"} ${n}`);
    expect(text).toContain(`anomalens_request_duration_seconds_count{route="/predict"} ${n}`);
    expect(text).toMatch(/anomalens_request_duration_seconds_bucket\{le="\+Inf",route="\/predict"\} 16/);
    expect(text).toContain(`anomalens_batch_size_sum ${n}`);
    expect(metric(text, 'anomalens_images_per_second')).toBeCloseTo(n / 10, 9);
    expect(metric(text, 'anomalens_queue_depth')).toBe(0);
    const h = await app.inject({ method: 'GET', url: '/healthz' });
    expect(h.json()).toEqual({ status: 'ok', mode: 'local', method: 'patchcore' });
    await app.close();
  });
});

describe('authentication and binding', () => {
  it('with a token, every route but /healthz needs Authorization: Bearer <token>', async () => {
    const token = 'correct-horse-battery';
    const app = await createServer({ detector: fx.detector, token });
    const upload = () => multipart('image', 'a.png', bytesOf('good_0.png'));
    for (const headers of [{}, { authorization: 'Bearer wrong-token-here' }, { authorization: `Basic ${token}` }]) {
      const u = upload();
      let res = await app.inject({ method: 'POST', url: '/predict', payload: u.payload, headers: { ...u.headers, ...headers } });
      expect(res.statusCode).toBe(401);
      expect(res.json().error.code).toBe('ERR_UNAUTHORIZED');
      expect(res.headers['www-authenticate']).toBe('Bearer');
      res = await app.inject({ method: 'GET', url: '/metrics', headers });
      expect(res.statusCode).toBe(401);
    }
    const u = upload();
    let res = await app.inject({ method: 'POST', url: '/predict', payload: u.payload, headers: { ...u.headers, authorization: `Bearer ${token}` } });
    expect(res.statusCode, res.body).toBe(200);
    expectSameAsPredict(res.json(), 'good_0.png');
    res = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } });
    expect(res.statusCode).toBe(200);
    expect(metric(res.body, 'anomalens_requests_total{route="/predict",status="401"}')).toBe(3);
    res = await app.inject({ method: 'GET', url: '/healthz' });
    expect(res.statusCode).toBe(200);
    await app.close();
  });

  it('listen refuses a non-loopback host without a token (nothing is bound); tokens shorter than 8 are refused', async () => {
    const app = await createServer({ detector: fx.detector });
    for (const host of ['0.0.0.0', '::', '192.168.1.10']) {
      const err = await listen(app, { host, port: 0 }).catch((e) => e);
      expect(err, host).toBeInstanceOf(AnomalensError);
      expect(err.message).toContain(`--host ${host}`);
      expect(err.message).toContain('--insecure');
    }
    expect(app.server.listening).toBe(false);
    await app.close();
    // With a token or --insecure the check lets it through to fastify's listen (a stand-in
    // here, so that nothing binds beyond loopback).
    const standIn = { listen: async (o: { host: string; port: number }) => `bound ${o.host}:${o.port}` } as unknown as FastifyInstance;
    expect(await listen(standIn, { host: '0.0.0.0', port: 9, insecure: true })).toBe('bound 0.0.0.0:9');
    expect(await listen(standIn, { host: '0.0.0.0', port: 9, token: 'a-long-token' })).toBe('bound 0.0.0.0:9');
    expect(await listen(standIn)).toBe('bound 127.0.0.1:8080');
    await expect(createServer({ detector: fx.detector, token: 'short' })).rejects.toThrow(RangeError);
    await expect(createServer({} as never)).rejects.toThrow(/exactly one of detector or queue/);
  });
});
