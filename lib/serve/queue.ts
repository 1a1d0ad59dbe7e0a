/**
 * Predict jobs on a BullMQ queue in Redis: a client (PredictQueue: enqueuePredict /
 * waitForResult) and a worker (startWorker). Delivery, retries and the recovery of jobs
 * whose worker died (stalled jobs: their lock expires and another worker takes them) are
 * BullMQ's; a job completes once, whoever ran it, because completing needs its lock.
 *
 * A job's data is `{ image: base64 bytes } | { path }` and `map`; its return value is the
 * PredictResult of lib/serve/result.ts. A job that fails on its input (a bad image, a path
 * outside the worker's root) is not retried, and its error keeps its code.
 *
 * @example
 * const q = await PredictQueue.connect('redis://127.0.0.1:6379');
 * const id = await q.enqueuePredict({ image: await readFile('part.png') });
 * const { predScore } = await q.waitForResult(id);
 * await q.close();
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { Queue, QueueEvents, UnrecoverableError, Worker, Job, type ConnectionOptions } from 'bullmq';
import type { Detector, Prediction } from '../detector/detector.js';
import { AnomalensError } from '../core/errors.js';
import type { RawImage } from '../image/images.js';
import { expectInteger, expectString } from '../core/validate.js';
import { Batcher } from './batcher.js';
import { decodeImageBytes } from './decode.js';
import { outsideRoot } from './paths.js';
import { encodeResult, MAP_FORMATS, type MapFormat, type PredictResult } from './result.js';
import { scoreImages } from './scorer.js';

/** The queue's name unless told otherwise. */
export const DEFAULT_QUEUE = 'anomalens-predict';

export interface PredictJobData {
  image?: string;
  path?: string;
  map: MapFormat;
}

/** redis:// or rediss:// URL -> BullMQ connection options (commands wait through reconnects). */
export function redisConnection(url: string, name = 'redis'): ConnectionOptions {
  expectString(url, name);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new RangeError(`${name} must be a redis://host:port URL, received '${url}'`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new RangeError(`${name} must be a redis:// or rediss:// URL, received '${url}'`);
  // maxRetriesPerRequest null: BullMQ's workers need commands to wait for a reconnect rather
  // than fail after a number of retries.
  return { url, maxRetriesPerRequest: null };
}

/** An error a worker reports as "CODE: message" turned back into an AnomalensError. */
function jobError(id: string, reason: string): AnomalensError {
  const m = /^(ERR_[A-Z_]+): ([\s\S]*)$/.exec(reason);
  return m ? new AnomalensError(m[1], m[2]) : new AnomalensError('ERR_INTERNAL', `job ${id} failed: ${reason}`);
}

export interface EnqueueOptions {
  map?: MapFormat;
  /** Tries when the worker throws (not counting stalled-job recovery; default 2). */
  attempts?: number;
}

/** The client side: puts predict jobs on the queue and waits for their results. */
export class PredictQueue {
  readonly name: string;
  readonly #queue: Queue<PredictJobData, PredictResult>;
  readonly #events: QueueEvents;

  private constructor(queue: Queue<PredictJobData, PredictResult>, events: QueueEvents) {
    this.name = queue.name;
    this.#queue = queue;
    this.#events = events;
  }

  /** Connects to `redis` (a redis:// URL) and the queue `name` (default 'anomalens-predict'). */
  static async connect(redis: string, options: { name?: string } = {}): Promise<PredictQueue> {
    const connection = redisConnection(redis);
    const name = options.name === undefined ? DEFAULT_QUEUE : expectString(options.name, 'options.name');
    const queue = new Queue<PredictJobData, PredictResult>(name, {
      connection,
      defaultJobOptions: { removeOnComplete: { age: 3600, count: 100_000 }, removeOnFail: { age: 24 * 3600 } },
    });
    const events = new QueueEvents(name, { connection });
    try {
      await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    } catch (err) {
      await Promise.allSettled([queue.close(), events.close()]);
      throw new AnomalensError('ERR_IO', `cannot reach Redis at ${redis}: ${(err as Error).message}`, { cause: err });
    }
    return new PredictQueue(queue, events);
  }

  /**
   * Queues one image, as bytes or as a path the workers can read (under their --root);
   * returns the job id.
   */
  async enqueuePredict(input: { image: Uint8Array } | { path: string }, options: EnqueueOptions = {}): Promise<string> {
    const map = options.map ?? 'none';
    if (!(MAP_FORMATS as readonly string[]).includes(map)) throw new RangeError(`options.map must be one of ${MAP_FORMATS.join(', ')}, received '${map}'`);
    const attempts = options.attempts === undefined ? 2 : expectInteger(options.attempts, 'options.attempts', { min: 1, max: 100 });
    let data: PredictJobData;
    if ('image' in input) {
      if (!(input.image instanceof Uint8Array)) throw new TypeError('input.image must be a Uint8Array of image bytes');
      data = { image: Buffer.from(input.image.buffer, input.image.byteOffset, input.image.byteLength).toString('base64'), map };
    } else {
      data = { path: expectString(input.path, 'input.path'), map };
    }
    const job = await this.#queue.add('predict', data, { attempts, backoff: { type: 'fixed', delay: 500 } });
    return job.id!;
  }

  /** Waits for job `id` and returns its result; a failed job rejects with its error, a timeout with ERR_TIMEOUT. */
  async waitForResult(id: string, options: { timeoutMs?: number } = {}): Promise<PredictResult> {
    const timeoutMs = options.timeoutMs ?? 60_000;
    const job = await Job.fromId<PredictJobData, PredictResult>(this.#queue, expectString(id, 'id'));
    if (!job) throw new AnomalensError('ERR_NOT_FOUND', `job ${id} is not on the queue ${this.name} (removed or never added)`);
    try {
      return await job.waitUntilFinished(this.#events, timeoutMs);
    } catch (err) {
      const message = (err as Error).message ?? String(err);
      if (/timed out before finishing/.test(message)) throw new AnomalensError('ERR_TIMEOUT', `job ${id}: no result within ${timeoutMs} ms`);
      throw jobError(id, message);
    }
  }

  /** Jobs waiting for a worker. */
  waitingCount(): Promise<number> {
    return this.#queue.getWaitingCount();
  }

  /** The BullMQ queue, for what this class does not wrap (counts, cleaning, pausing). */
  get queue(): Queue<PredictJobData, PredictResult> {
    return this.#queue;
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.#events.close(), this.#queue.close()]);
  }
}

export interface WorkerOptions {
  detector: Detector;
  /** redis:// URL. */
  redis: string;
  /** Queue name (default 'anomalens-predict'). */
  name?: string;
  /** Jobs run at once by this worker, batched into forward passes (default: the detector's batch size). */
  concurrency?: number;
  /** The folder path jobs may read from; none: path jobs fail. */
  root?: string;
  maxPixels?: number;
  maxBytes?: number;
  /** How long the first job may wait for others to fill a batch, ms (default 5). */
  maxWaitMs?: number;
  /** Job lock duration, ms: a dead worker's job is taken over after about this long (BullMQ default 30000). */
  lockDurationMs?: number;
  /** How often this worker looks for stalled jobs, ms (BullMQ default 30000). */
  stalledIntervalMs?: number;
  /** This worker's name, recorded on the jobs it runs as job.processedBy (default host:pid). */
  workerName?: string;
  /** Called when a job completes or fails on this worker. */
  onJob?: (event: { id: string; ok: boolean; error?: string }) => void;
  /** Called on connection errors (ioredis retries them; default: ignored). */
  onError?: (err: Error) => void;
}

export interface PredictWorker {
  readonly worker: Worker<PredictJobData, PredictResult>;
  /** Stops taking jobs, finishes the running ones, disconnects. */
  close(): Promise<void>;
}

/** Marks an input error so that BullMQ does not retry it; keeps the code in the message. */
function unrecoverable(err: unknown): never {
  if (err instanceof AnomalensError && err.code !== 'ERR_INTERNAL' && err.code !== 'ERR_OUT_OF_MEMORY')
    throw new UnrecoverableError(`${err.code}: ${err.message}`);
  if (err instanceof TypeError || err instanceof RangeError) throw new UnrecoverableError(`ERR_INVALID_ARGUMENT: ${err.message}`);
  throw err;
}

async function jobPath(root: string | undefined, path: string, maxBytes: number): Promise<Uint8Array> {
  if (root === undefined) throw new AnomalensError('ERR_FORBIDDEN', 'path jobs are disabled on this worker (start it with --root <dir>)');
  const real = await realpath(isAbsolute(path) ? path : resolve(root, path)).catch(() => {
    throw new AnomalensError('ERR_NOT_FOUND', `path '${path}' does not exist on this worker`);
  });
  if (outsideRoot(root, real)) throw new AnomalensError('ERR_FORBIDDEN', `path '${path}' is outside the worker's root`);
  const s = await stat(real);
  if (s.size > maxBytes) throw new AnomalensError('ERR_TOO_LARGE', `path '${path}' has ${s.size} bytes, more than the limit of ${maxBytes}`);
  return readFile(real);
}

/**
 * Consumes predict jobs with `detector` until closed. Concurrent jobs share forward passes.
 * @example const w = await startWorker({ detector, redis: 'redis://127.0.0.1:6379', concurrency: 4 });
 */
export async function startWorker(o: WorkerOptions): Promise<PredictWorker> {
  const det = o.detector;
  if (!det?.fitted) throw new AnomalensError('ERR_INVALID_ARGUMENT', 'options.detector must be a fitted Detector');
  const connection = redisConnection(o.redis, 'options.redis');
  const concurrency = o.concurrency === undefined ? det.batchSize : expectInteger(o.concurrency, 'options.concurrency', { min: 1, max: 1024 });
  const maxPixels = o.maxPixels ?? 40_000_000;
  const maxBytes = o.maxBytes ?? 32 << 20;
  const root = o.root === undefined ? undefined : await realpath(o.root).catch(() => {
    throw new AnomalensError('ERR_IO', `options.root: folder '${o.root}' does not exist`);
  });
  const batcher = new Batcher<{ image: RawImage; name: string }, Prediction>({
    run: (items) => scoreImages(det, items.map((i) => i.image), items.map((i) => i.name)),
    maxBatch: Math.min(concurrency, det.batchSize),
    maxWaitMs: o.maxWaitMs,
    maxQueue: concurrency,
  });
  const worker = new Worker<PredictJobData, PredictResult>(
    o.name ?? DEFAULT_QUEUE,
    async (job) => {
      try {
        const d = job.data;
        if (!(MAP_FORMATS as readonly string[]).includes(d.map)) throw new AnomalensError('ERR_INVALID_ARGUMENT', `job ${job.id}: map must be one of ${MAP_FORMATS.join(', ')}`);
        const name = `job ${job.id}`;
        const bytes = typeof d.image === 'string' ? Buffer.from(d.image, 'base64')
          : typeof d.path === 'string' ? await jobPath(root, d.path, maxBytes)
          : (() => { throw new AnomalensError('ERR_INVALID_ARGUMENT', `${name}: expected image bytes or a path`); })();
        const image = await decodeImageBytes(bytes, name, { maxPixels });
        return await encodeResult(await batcher.submit({ image, name }), image, d.map);
      } catch (err) {
        unrecoverable(err);
      }
    },
    {
      connection, concurrency, autorun: false, name: o.workerName ?? `${hostname()}:${process.pid}`,
      lockDuration: o.lockDurationMs ?? 30_000, stalledInterval: o.stalledIntervalMs ?? 30_000,
    },
  );
  worker.on('completed', (job) => o.onJob?.({ id: job.id!, ok: true }));
  worker.on('failed', (job, err) => o.onJob?.({ id: job?.id ?? '?', ok: false, error: err.message }));
  // Connection errors are retried by ioredis; without a listener they would be thrown.
  worker.on('error', (err) => o.onError?.(err));
  void worker.run();
  await worker.waitUntilReady();
  return {
    worker,
    async close() {
      await worker.close();
      await batcher.drain();
    },
  };
}
