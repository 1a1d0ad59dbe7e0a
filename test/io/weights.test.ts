// Weights resolution: local paths, hf: spec parsing, and the download path against a local
// HTTP server started here (this machine has no network): one download then cache hits,
// redirects with the Hub's SHA-256 header, HTTP errors, a refused connection, a truncated
// body and a stalled transfer, each leaving nothing in the cache; the default weights per arch.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnomalensError } from '../../lib/core/errors.js';
import { Detector } from '../../lib/detector/detector.js';
import { DEFAULT_WEIGHTS, defaultWeights, resolveWeights } from '../../lib/io/weights.js';
import { defaultCacheDir, hfCachePath, hfUrl, parseHfSpec } from '../../lib/internal.js';
import { Backbone, ONNX_V2_ARCHS, TORCHVISION_ARCHS } from '../../lib/nn/backbone.js';
import { writeSeededWeights } from '../helpers/seeded.js';
import { tempDir } from '../helpers/tmp.js';

const { dir: tmp, cleanup } = tempDir('anomalens-weights-');

const payload = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 131 + (i >> 9)) % 256));
const sha = createHash('sha256').update(payload).digest('hex');

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
const routes = new Map<string, Handler>();
const hits: string[] = [];
let server: Server;
let endpoint: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    hits.push(req.url!);
    const h = routes.get(req.url!);
    if (h) h(req, res);
    else {
      res.writeHead(404, 'Not Found');
      res.end('Entry not found');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  cleanup();
});

const serve = (body: Buffer, headers: Record<string, string> = {}): Handler => (_req, res) => {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length), ...headers });
  res.end(body);
};

/** Every file under a folder, recursively (relative paths). */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}

async function rejection(p: Promise<unknown>): Promise<AnomalensError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(AnomalensError);
  expect((err as AnomalensError).code).toBe('ERR_IO');
  return err as AnomalensError;
}

describe('local paths', () => {
  it('returns an existing file as an absolute path and names a missing one', async () => {
    const file = join(tmp, 'w.safetensors');
    writeFileSync(file, 'x');
    expect(await resolveWeights(file)).toBe(file);
    const err = await rejection(resolveWeights(join(tmp, 'nope.safetensors')));
    expect(err.message).toContain(join(tmp, 'nope.safetensors'));
    expect((await rejection(resolveWeights(tmp))).message).toContain('is not a file');
  });
});

describe('hf: specs', () => {
  it('parses owner, repo, revision and a file path with folders', () => {
    expect(parseHfSpec('hf:timm/resnet18.tv_in1k/model.safetensors')).toEqual({ owner: 'timm', repo: 'resnet18.tv_in1k', revision: 'main', file: 'model.safetensors' });
    expect(parseHfSpec('hf:a-b/c_d@v1.2/sub/dir/w.bin')).toEqual({ owner: 'a-b', repo: 'c_d', revision: 'v1.2', file: 'sub/dir/w.bin' });
    const spec = parseHfSpec('hf:o/r@0123abc/my file.safetensors');
    expect(hfUrl(spec, 'https://hub.example/')).toBe('https://hub.example/o/r/resolve/0123abc/my%20file.safetensors');
    expect(hfCachePath(spec, '/c')).toBe('/c/hf/o/r/0123abc/my file.safetensors');
    for (const bad of ['hf:o/r', 'hf:o/r/', 'hf:o/r/../x', 'hf:o/r//x', 'hf:/r/x', 'hf:o/r@/x', 'hf:o/r@a/b/../../x', 'hf:o w/r/x', 'o/r/x'])
      expect(() => parseHfSpec(bad), bad).toThrow(RangeError);
  });

  it('uses $ANOMALENS_CACHE and $ANOMALENS_HF_ENDPOINT when no options are given', async () => {
    const saved = { cache: process.env.ANOMALENS_CACHE, ep: process.env.ANOMALENS_HF_ENDPOINT };
    try {
      process.env.ANOMALENS_CACHE = join(tmp, 'env-cache');
      process.env.ANOMALENS_HF_ENDPOINT = endpoint;
      routes.set('/env/repo/resolve/main/w.bin', serve(payload));
      expect(defaultCacheDir()).toBe(join(tmp, 'env-cache'));
      const path = await resolveWeights('hf:env/repo/w.bin', { progress: false });
      expect(path).toBe(join(tmp, 'env-cache', 'hf', 'env', 'repo', 'main', 'w.bin'));
      expect(readFileSync(path).equals(payload)).toBe(true);
    } finally {
      for (const [k, v] of [['ANOMALENS_CACHE', saved.cache], ['ANOMALENS_HF_ENDPOINT', saved.ep]] as const)
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
  });
});

describe('downloads', () => {
  it('downloads once with progress, then serves the cache without a request', async () => {
    const cacheDir = join(tmp, 'cache1');
    routes.set('/owner/repo/resolve/v2/sub/model.safetensors', serve(payload));
    const events: [number, number | undefined][] = [];
    let drawn = '';
    const stream = { isTTY: true, write: (s: string) => ((drawn += s), true) } as unknown as NodeJS.WriteStream;
    const path = await resolveWeights('hf:owner/repo@v2/sub/model.safetensors', {
      cacheDir, endpoint, onProgress: (r, t) => events.push([r, t]), progress: { stream, enabled: true },
    });
    expect(path).toBe(join(cacheDir, 'hf', 'owner', 'repo', 'v2', 'sub', 'model.safetensors'));
    expect(readFileSync(path).equals(payload)).toBe(true);
    expect(events.length).toBeGreaterThan(0);
    expect(events.at(-1)).toEqual([payload.length, payload.length]);
    for (let i = 1; i < events.length; i++) expect(events[i][0]).toBeGreaterThan(events[i - 1][0]);
    expect(drawn).toContain(`${payload.length}/${payload.length}`);
    expect(drawn).toContain('B/s');
    const before = hits.length;
    expect(await resolveWeights('hf:owner/repo@v2/sub/model.safetensors', { cacheDir, endpoint })).toBe(path);
    expect(hits.length).toBe(before);
    expect(filesUnder(cacheDir)).toEqual([join('hf', 'owner', 'repo', 'v2', 'sub', 'model.safetensors')]);
  });

  it("follows redirects and checks the Hub's X-Linked-Etag SHA-256", async () => {
    const cacheDir = join(tmp, 'cache2');
    routes.set('/o/good/resolve/main/w.bin', (_q, res) => {
      res.writeHead(302, { location: '/cdn/good', 'x-linked-etag': `"${sha}"`, 'x-linked-size': String(payload.length) });
      res.end();
    });
    routes.set('/cdn/good', serve(payload));
    expect(readFileSync(await resolveWeights('hf:o/good/w.bin', { cacheDir, endpoint })).equals(payload)).toBe(true);

    routes.set('/o/bad/resolve/main/w.bin', (_q, res) => {
      res.writeHead(302, { location: `${endpoint}/cdn/good`, 'x-linked-etag': `"${'0'.repeat(64)}"` });
      res.end();
    });
    const err = await rejection(resolveWeights('hf:o/bad/w.bin', { cacheDir, endpoint }));
    expect(err.message).toContain(`SHA-256 is ${sha}`);
    expect(filesUnder(join(cacheDir, 'hf', 'o', 'bad'))).toEqual([]);

    routes.set('/o/loop/resolve/main/w.bin', (_q, res) => {
      res.writeHead(302, { location: '/o/loop/resolve/main/w.bin' });
      res.end();
    });
    expect((await rejection(resolveWeights('hf:o/loop/w.bin', { cacheDir, endpoint }))).message).toContain('redirects');
  });

  it('names the URL, the HTTP status and the manual fix on an HTTP error', async () => {
    const cacheDir = join(tmp, 'cache3');
    const err = await rejection(resolveWeights('hf:o/missing/w.bin', { cacheDir, endpoint }));
    expect(err.message).toContain(`${endpoint}/o/missing/resolve/main/w.bin`);
    expect(err.message).toContain('HTTP 404');
    expect(err.message).toContain(`save it as ${join(cacheDir, 'hf', 'o', 'missing', 'main', 'w.bin')}`);
    routes.set('/o/gated/resolve/main/w.bin', (_q, res) => {
      res.writeHead(401, 'Unauthorized');
      res.end();
    });
    expect((await rejection(resolveWeights('hf:o/gated/w.bin', { cacheDir, endpoint }))).message).toMatch(/HTTP 401 .*private or gated/);
    expect(filesUnder(cacheDir)).toEqual([]);
  });

  it('reports a refused connection (offline) with the URL and the reason', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const cacheDir = join(tmp, 'cache4');
    const err = await rejection(resolveWeights('hf:o/r/w.bin', { cacheDir, endpoint: `http://127.0.0.1:${port}` }));
    expect(err.message).toContain(`http://127.0.0.1:${port}/o/r/resolve/main/w.bin`);
    expect(err.message).toContain('ECONNREFUSED');
    expect(filesUnder(cacheDir)).toEqual([]);
  });

  it('rejects a body shorter than Content-Length and leaves no file in the cache', async () => {
    const cacheDir = join(tmp, 'cache5');
    routes.set('/o/cut/resolve/main/w.bin', (req, res) => {
      res.writeHead(200, { 'content-length': String(payload.length) });
      res.write(payload.subarray(0, 100_000), () => setTimeout(() => req.socket.destroy(), 20));
    });
    const err = await rejection(resolveWeights('hf:o/cut/w.bin', { cacheDir, endpoint, progress: false }));
    expect(err.message).toContain(`${endpoint}/o/cut/resolve/main/w.bin`);
    expect(err.message).toContain(`cut short before the ${payload.length} announced bytes arrived`);
    expect(filesUnder(cacheDir)).toEqual([]);
    // a server that ends the response early and closes the connection
    routes.set('/o/short/resolve/main/w.bin', (_req, res) => {
      res.writeHead(200, { 'content-length': String(payload.length), connection: 'close' });
      res.end(payload.subarray(0, 5000));
    });
    expect((await rejection(resolveWeights('hf:o/short/w.bin', { cacheDir, endpoint, progress: false }))).message).toContain(`cut short before the ${payload.length} announced bytes arrived`);
    expect(filesUnder(cacheDir)).toEqual([]);
  });

  it('gives up on a stalled transfer after idleTimeoutMs', async () => {
    const cacheDir = join(tmp, 'cache6');
    routes.set('/o/stall/resolve/main/w.bin', (_q, res) => {
      res.writeHead(200, { 'content-length': String(payload.length) });
      res.write(payload.subarray(0, 1000));  // and nothing more
    });
    const err = await rejection(resolveWeights('hf:o/stall/w.bin', { cacheDir, endpoint, idleTimeoutMs: 300 }));
    expect(err.message).toContain('no data for 300 ms');
    expect(filesUnder(cacheDir)).toEqual([]);
  });

  it('validates its options', async () => {
    await expect(resolveWeights('', {})).rejects.toThrow(TypeError);
    await expect(resolveWeights('hf:o/r/w', { bogus: 1 } as never)).rejects.toThrow(/unknown option 'bogus'/);
    await expect(resolveWeights('hf:o/r/w', { idleTimeoutMs: 0 })).rejects.toThrow(RangeError);
    await expect(resolveWeights('hf:o/r/w', { onProgress: 3 as never })).rejects.toThrow(TypeError);
  });
});

describe('default weights', () => {
  const parity = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures/backbone/parity.json'), 'utf8'));
  const r18 = join(tmp, 'r18-hub.safetensors');
  const hubPath = '/timm/resnet18.tv_in1k/resolve/main/model.safetensors';

  /** Runs `fn` with the Hub endpoint and the cache redirected by environment variables. */
  async function withHub<T>(cache: string, ep: string, fn: () => Promise<T>): Promise<T> {
    const saved = { cache: process.env.ANOMALENS_CACHE, ep: process.env.ANOMALENS_HF_ENDPOINT };
    process.env.ANOMALENS_CACHE = cache;
    process.env.ANOMALENS_HF_ENDPOINT = ep;
    try {
      return await fn();
    } finally {
      for (const [k, v] of [['ANOMALENS_CACHE', saved.cache], ['ANOMALENS_HF_ENDPOINT', saved.ep]] as const)
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
  }

  it("names timm's tv_in1k model.safetensors for every torchvision arch, and none for v2", () => {
    expect(Object.keys(DEFAULT_WEIGHTS).sort()).toEqual([...TORCHVISION_ARCHS].sort());
    for (const arch of TORCHVISION_ARCHS) {
      expect(defaultWeights(arch)).toBe(DEFAULT_WEIGHTS[arch]);
      expect(parseHfSpec(defaultWeights(arch))).toEqual({ owner: 'timm', repo: `${arch}.tv_in1k`, revision: 'main', file: 'model.safetensors' });
    }
    for (const arch of ONNX_V2_ARCHS) {
      expect(() => defaultWeights(arch)).toThrow(TypeError);
      expect(() => defaultWeights(arch)).toThrow(new RegExp(`options.weights is required for arch '${arch}'`));
      expect(() => defaultWeights(arch, '--weights')).toThrow(/Pass --weights a local safetensors file with ONNX Model Zoo initializer names/);
    }
    expect(() => defaultWeights('__proto__')).toThrow(TypeError);
  });

  it('Backbone.load and Detector.create download the default once through the hf: cache', async () => {
    await writeSeededWeights(r18, parity.archs.resnet18.tensors);
    const body = readFileSync(r18);
    routes.set(hubPath, serve(body));
    const cache = join(tmp, 'default-cache');
    await withHub(cache, endpoint, async () => {
      const before = hits.length;
      const bb = await Backbone.load({ arch: 'resnet18' });
      const cached = join(cache, 'hf', 'timm', 'resnet18.tv_in1k', 'main', 'model.safetensors');
      expect(bb.weights).toBe(cached);
      expect(readFileSync(cached).equals(body)).toBe(true);
      expect(hits.slice(before)).toEqual([hubPath]);
      // the same features as from the local file
      const x = { data: new Float32Array(2 * 3 * 32 * 32).map((_, i) => Math.sin(i)), shape: [2, 3, 32, 32] as [number, number, number, number] };
      const local = await Backbone.load({ arch: 'resnet18', weights: r18 });
      expect((await bb.extract(x, ['layer1'])).layer1.data).toEqual((await local.extract(x, ['layer1'])).layer1.data);
      await bb.dispose();
      await local.dispose();
      // an hf: spec resolves too, and a second use of the default makes no request
      const det = await Detector.create({ method: 'dn2', arch: 'resnet18' });
      const bb2 = await Backbone.load({ arch: 'resnet18', weights: DEFAULT_WEIGHTS.resnet18 });
      expect(det.backbone.weights).toBe(cached);
      expect(bb2.weights).toBe(cached);
      expect(hits.length).toBe(before + 1);
      await bb2.dispose();
    });
  });

  it('offline: ERR_IO naming the URL and where to put the file by hand; v2 without weights says how to pass them', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const dead = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((r) => closed.close(r));
    const cache = join(tmp, 'offline-cache');
    await withHub(cache, dead, async () => {
      const err = await rejection(Backbone.load({ arch: 'wide_resnet50_2' }));
      expect(err.message).toContain(`${dead}/timm/wide_resnet50_2.tv_in1k/resolve/main/model.safetensors`);
      expect(err.message).toContain(join(cache, 'hf', 'timm', 'wide_resnet50_2.tv_in1k', 'main', 'model.safetensors'));
      await expect(Detector.create({ method: 'patchcore' })).rejects.toThrow(/wide_resnet50_2\.tv_in1k/);
      await expect(Detector.create({ method: 'dn2', arch: 'resnet50_v2' })).rejects.toThrow(/options.weights is required for arch 'resnet50_v2'/);
    });
    expect(filesUnder(cache)).toEqual([]);
  });
});
