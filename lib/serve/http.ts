/**
 * The HTTP inference service (fastify): POST /predict, GET /healthz, GET /metrics.
 *
 * - /predict takes an image as a multipart upload in the field `image`, as a raw body
 *   (Content-Type image/* or application/octet-stream), or as JSON `{ path }` naming a file
 *   under the allowed root (`root`; without one, paths are refused). `?map=float32|png` (or
 *   `map` in the JSON body) adds the anomaly map, raw or as an overlay (lib/serve/result.ts);
 *   with `Accept: application/octet-stream`, map=float32 answers the map's bytes as the body
 *   (float32 little-endian, height x width) and the scores in X-Anomalens-* headers.
 * - Concurrent requests are batched into one forward pass (lib/serve/batcher.ts), or, with
 *   a `queue`, handed to workers through Redis (lib/serve/queue.ts).
 * - Errors answer `{ error: { code, message } }`: 400 a bad request or image (ERR_INVALID_ARGUMENT,
 *   ERR_INVALID_FILE, ERR_UNSUPPORTED), 401 a missing or wrong token (ERR_UNAUTHORIZED), 403 a
 *   path outside the root (ERR_FORBIDDEN), 404 a missing file (ERR_NOT_FOUND), 413 a body or
 *   image over the limits (ERR_TOO_LARGE), 503 a full queue, with Retry-After (ERR_BUSY), 504 no
 *   result from the workers in time (ERR_TIMEOUT).
 * - With a token, every route except /healthz needs `Authorization: Bearer <token>`.
 *
 * @example
 * const server = await createServer({ detector: await Detector.load('m.anomalens') });
 * const url = await listen(server, { host: '127.0.0.1', port: 8080 });
 */
import { timingSafeEqual } from 'node:crypto';
import { readFile, realpath, stat } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import multipart from '@fastify/multipart';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Detector, Prediction } from '../detector/detector.js';
import { AnomalensError } from '../core/errors.js';
import type { RawImage } from '../image/images.js';
import { expectInteger, expectNumber, expectString } from '../core/validate.js';
import { Batcher } from './batcher.js';
import { decodeImageBytes } from './decode.js';
import { ServeMetrics } from './metrics.js';
import { outsideRoot } from './paths.js';
import type { PredictQueue } from './queue.js';
import { encodeResult, MAP_FORMATS, type MapFormat, type PredictResult } from './result.js';
import { scoreImages } from './scorer.js';

export interface ServeOptions {
  /** Score in this process with this fitted detector... */
  detector?: Detector;
  /** ...or hand the work to workers through this queue (exactly one of the two). */
  queue?: PredictQueue;
  /** Bearer token required on every route but /healthz. */
  token?: string;
  /** The folder JSON `{ path }` requests may read from (symlinks resolved); none: paths refused. */
  root?: string;
  /** Largest request body or image file, bytes (default 32 MiB). */
  maxBodyBytes?: number;
  /** Largest image, pixels (default 40 megapixels). */
  maxPixels?: number;
  /** Images per forward pass (default: the detector's batch size). */
  maxBatch?: number;
  /** How long a request may wait for others to fill a batch, ms (default 5). */
  maxWaitMs?: number;
  /** Most images waiting; beyond, 503 (default 64). */
  maxQueue?: number;
  /** Seconds a client should wait before retrying after a 503 (default 1). */
  retryAfterS?: number;
  /** With a queue: how long to wait for a worker's result, ms (default 60000). */
  resultTimeoutMs?: number;
  /** fastify's logger (default off). */
  logger?: boolean;
}

const STATUS: Record<string, number> = {
  ERR_INVALID_ARGUMENT: 400, ERR_INVALID_FILE: 400, ERR_UNSUPPORTED: 400, ERR_UNAUTHORIZED: 401, ERR_FORBIDDEN: 403,
  ERR_NOT_FOUND: 404, ERR_TOO_LARGE: 413, ERR_BUSY: 503, ERR_TIMEOUT: 504,
};

/** The HTTP status of an error: ours by code, fastify's by its statusCode, else 500. */
function statusOf(err: unknown): number {
  if (err instanceof AnomalensError) return STATUS[err.code] ?? 500;
  // fastify's own errors carry a status (some are RangeErrors: the body limit's is).
  const s = (err as { statusCode?: unknown })?.statusCode;
  if (typeof s === 'number' && s >= 400 && s < 600) return s;
  return err instanceof TypeError || err instanceof RangeError ? 400 : 500;
}

function codeOf(err: unknown, status: number): string {
  if (err instanceof AnomalensError) return err.code;
  if (status === 413) return 'ERR_TOO_LARGE';
  if (err instanceof TypeError || err instanceof RangeError) return 'ERR_INVALID_ARGUMENT';
  if (status === 415 || (status >= 400 && status < 500)) return 'ERR_INVALID_ARGUMENT';
  if (status === 503) return 'ERR_BUSY';
  return 'ERR_INTERNAL';
}

function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given), b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** A file under `root` (after resolving symlinks), else ERR_FORBIDDEN; a missing one ERR_NOT_FOUND. */
async function confinedPath(root: string | undefined, path: string): Promise<string> {
  if (root === undefined)
    throw new AnomalensError('ERR_FORBIDDEN', 'path: reading files is disabled on this server (start it with --root <dir>); upload the image instead');
  const candidate = isAbsolute(path) ? path : resolve(root, path);
  let real: string;
  try {
    real = await realpath(candidate);
  } catch {
    // Do not tell apart "outside the root" from "missing" for paths outside it.
    if (outsideRoot(root, resolve(candidate))) throw new AnomalensError('ERR_FORBIDDEN', `path: '${path}' is outside the allowed root`);
    throw new AnomalensError('ERR_NOT_FOUND', `path: '${path}' does not exist`);
  }
  if (outsideRoot(root, real))
    throw new AnomalensError('ERR_FORBIDDEN', `path: '${path}' is outside the allowed root`);
  return real;
}

function parseMap(value: unknown, name: string): MapFormat {
  if (value === undefined) return 'none';
  if (typeof value !== 'string' || !(MAP_FORMATS as readonly string[]).includes(value))
    throw new AnomalensError('ERR_INVALID_ARGUMENT', `${name} must be one of ${MAP_FORMATS.join(', ')}, received ${JSON.stringify(value)}`);
  return value as MapFormat;
}

/** Builds the service (not listening yet: see listen()). Closing it finishes the requests in flight. */
export async function createServer(options: ServeOptions): Promise<FastifyInstance> {
  const o = options;
  if (Boolean(o.detector) === Boolean(o.queue)) throw new TypeError('options: give exactly one of detector or queue');
  if (o.detector && !o.detector.fitted) throw new AnomalensError('ERR_INVALID_ARGUMENT', 'options.detector is not fitted');
  const token = o.token === undefined ? undefined : expectString(o.token, 'options.token');
  if (token !== undefined && token.length < 8) throw new RangeError(`options.token must have at least 8 characters, received ${token.length}`);
  const maxBodyBytes = o.maxBodyBytes === undefined ? 32 << 20 : expectInteger(o.maxBodyBytes, 'options.maxBodyBytes', { min: 1 });
  const maxPixels = o.maxPixels === undefined ? 40_000_000 : expectInteger(o.maxPixels, 'options.maxPixels', { min: 1 });
  const retryAfter = String(o.retryAfterS === undefined ? 1 : expectInteger(o.retryAfterS, 'options.retryAfterS', { min: 0 }));
  const resultTimeoutMs = o.resultTimeoutMs === undefined ? 60_000 : expectNumber(o.resultTimeoutMs, 'options.resultTimeoutMs', { min: 1 });
  const root = o.root === undefined ? undefined : await realpath(expectString(o.root, 'options.root')).catch(() => {
    throw new AnomalensError('ERR_IO', `options.root: folder '${o.root}' does not exist`);
  });

  // Local scoring: a batcher in front of the detector. Queued scoring: a bound on the jobs
  // this server awaits, so that a stalled fleet turns into 503s, not unbounded memory.
  const det = o.detector;
  let awaiting = 0;
  const maxQueue = o.maxQueue === undefined ? 64 : expectInteger(o.maxQueue, 'options.maxQueue', { min: 1 });
  let metrics: ServeMetrics;
  const batcher = det
    ? new Batcher<{ image: RawImage; name: string }, Prediction>({
        run: (items) => scoreImages(det, items.map((i) => i.image), items.map((i) => i.name)),
        maxBatch: o.maxBatch ?? det.batchSize,
        maxWaitMs: o.maxWaitMs,
        maxQueue,
        onBatch: (n) => metrics.batch(n),
      })
    : undefined;
  metrics = new ServeMetrics(
    () => (batcher ? batcher.depth : o.queue!.waitingCount()),
    () => (batcher ? batcher.inFlight : awaiting),
  );

  async function predict(bytes: Uint8Array, name: string, map: MapFormat): Promise<PredictResult> {
    if (batcher) {
      // Refuse before decoding when the queue is already full (submit checks again after).
      if (batcher.depth >= batcher.maxQueue) throw new AnomalensError('ERR_BUSY', `the queue is full (${batcher.maxQueue} images waiting): retry later`);
      const image = await decodeImageBytes(bytes, name, { maxPixels });
      const p = await batcher.submit({ image, name });
      return encodeResult(p, image, map);
    }
    if (awaiting >= maxQueue) throw new AnomalensError('ERR_BUSY', `${awaiting} images are already waiting for workers: retry later`);
    awaiting++;
    try {
      const id = await o.queue!.enqueuePredict({ image: bytes }, { map });
      const r = await o.queue!.waitForResult(id, { timeoutMs: resultTimeoutMs });
      metrics.scored(1);
      return r;
    } finally {
      awaiting--;
    }
  }

  const app = Fastify({ logger: o.logger ?? false, bodyLimit: maxBodyBytes, return503OnClosing: true });
  await app.register(multipart, { limits: { fileSize: maxBodyBytes, files: 1, fields: 4, fieldSize: 64 } });
  for (const type of ['application/octet-stream', /^image\/.*/])
    app.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit: maxBodyBytes }, (_req, body, done) => done(null, body));

  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    if (token === undefined || req.url === '/healthz') return;
    const h = req.headers.authorization;
    const given = typeof h === 'string' && h.startsWith('Bearer ') ? h.slice(7) : undefined;
    if (given === undefined || !sameToken(given, token)) {
      reply.header('WWW-Authenticate', 'Bearer');
      throw new AnomalensError('ERR_UNAUTHORIZED', given === undefined ? 'this server needs Authorization: Bearer <token>' : 'the bearer token is wrong');
    }
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unknown';
    metrics.requests.inc({ route, status: String(reply.statusCode) });
    metrics.latency.observe({ route }, reply.elapsedTime / 1000);
  });
  app.setErrorHandler(async (err, _req, reply) => {
    const status = statusOf(err);
    if (status === 503) reply.header('Retry-After', retryAfter);
    reply.code(status).send({ error: { code: codeOf(err, status), message: (err as Error).message } });
  });
  app.setNotFoundHandler(async (req, reply) => {
    reply.code(404).send({ error: { code: 'ERR_NOT_FOUND', message: `no route ${req.method} ${req.url}` } });
  });

  app.get('/healthz', async () => ({ status: 'ok', mode: batcher ? 'local' : 'queue', method: det?.method }));
  app.get('/metrics', async (_req, reply) => {
    reply.header('Content-Type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  app.post('/predict', async (req, reply) => {
    const query = req.query as Record<string, unknown>;
    let map = parseMap(query.map, 'map');
    let bytes: Uint8Array;
    let name: string;
    if (req.isMultipart()) {
      const file = await req.file();
      if (!file || file.fieldname !== 'image')
        throw new AnomalensError('ERR_INVALID_ARGUMENT', `multipart: expected a file in the field 'image', received ${file ? `the field '${file.fieldname}'` : 'no file'}`);
      bytes = await file.toBuffer();  // throws a 413 past limits.fileSize
      name = file.filename ? `upload '${file.filename}'` : 'upload';
    } else if (Buffer.isBuffer(req.body)) {
      bytes = req.body;
      name = 'request body';
    } else {
      const body = req.body as Record<string, unknown> | undefined;
      if (!body || typeof body !== 'object' || typeof body.path !== 'string')
        throw new AnomalensError('ERR_INVALID_ARGUMENT', "expected a multipart upload in the field 'image', an image body, or JSON { \"path\": \"...\" }");
      if (body.map !== undefined) map = parseMap(body.map, 'map');
      const file = await confinedPath(root, body.path);
      const s = await stat(file);
      if (!s.isFile()) throw new AnomalensError('ERR_INVALID_ARGUMENT', `path: '${body.path}' is not a file`);
      if (s.size > maxBodyBytes) throw new AnomalensError('ERR_TOO_LARGE', `path: '${body.path}' has ${s.size} bytes, more than the limit of ${maxBodyBytes}`);
      bytes = await readFile(file);
      name = `'${body.path}'`;
    }
    const result = await predict(bytes, name, map);
    // map=float32 with Accept: application/octet-stream: the map itself as the body, the
    // scores in headers, for clients that would rather not decode base64.
    if (map === 'float32' && result.anomalyMap && /application\/octet-stream/.test(req.headers.accept ?? '')) {
      reply.header('Content-Type', 'application/octet-stream');
      reply.header('X-Anomalens-Pred-Score', String(result.predScore));
      reply.header('X-Anomalens-Pred-Label', String(result.predLabel));
      reply.header('X-Anomalens-Normalized-Score', String(result.normalizedScore));
      reply.header('X-Anomalens-Width', String(result.width));
      reply.header('X-Anomalens-Height', String(result.height));
      return reply.send(Buffer.from(result.anomalyMap.data, 'base64'));
    }
    return result;
  });

  // On close, fastify stops accepting and waits for the requests in flight; those waiting for
  // a batch to fill need not wait out maxWaitMs.
  // Responses sent while closing also close their connection: node's server.close() ends only
  // the connections idle at that moment, and a keep-alive one would hold the process for
  // keepAliveTimeout (72 s) after its last response.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
    batcher?.flush();
  });
  app.addHook('onSend', async (_req, reply) => {
    if (closing) reply.header('Connection', 'close');
  });
  app.addHook('onClose', async () => {
    await batcher?.drain();
  });
  return app;
}

/** Loopback addresses, which need no token. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * Listens on `host:port` (default 127.0.0.1:8080) and returns the URL. A host other than a
 * loopback address without a token is refused unless `insecure`.
 */
export async function listen(app: FastifyInstance, o: { host?: string; port?: number; token?: string; insecure?: boolean } = {}): Promise<string> {
  const host = o.host ?? '127.0.0.1';
  if (!isLoopback(host) && !o.token && !o.insecure)
    throw new AnomalensError(
      'ERR_INVALID_ARGUMENT',
      `--host ${host} would expose the service beyond this machine without authentication: give --token (or ANOMALENS_TOKEN), or --insecure to accept that`,
    );
  return app.listen({ host, port: o.port ?? 8080 });
}
