/**
 * Dynamic batching, as inference servers do it: requests that arrive while the model is busy,
 * or within `maxWaitMs` of the first waiting one, go through the model together, up to
 * `maxBatch` at a time. One batch runs at a time (the model is one object). A full queue
 * refuses new work at once with ERR_BUSY, so that callers can answer 503 and retry
 * elsewhere instead of piling up latency.
 */
import { AnomalensError } from '../core/errors.js';
import { expectInteger, expectNumber } from '../core/validate.js';

export interface BatcherOptions<I, O> {
  /** Runs one batch; must return one output per input, in order. */
  run: (items: I[]) => Promise<O[]>;
  /** Most items per batch (default 8). */
  maxBatch?: number;
  /** How long the first waiting item may wait for others, in ms (default 5). */
  maxWaitMs?: number;
  /** Most items waiting (not counting the batch running); more are refused with ERR_BUSY (default 64). */
  maxQueue?: number;
  /** Called after each batch with its size and duration in seconds. */
  onBatch?: (size: number, seconds: number) => void;
}

interface Pending<I, O> {
  item: I;
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
}

export class Batcher<I, O> {
  readonly maxBatch: number;
  readonly maxWaitMs: number;
  readonly maxQueue: number;
  readonly #run: (items: I[]) => Promise<O[]>;
  readonly #onBatch?: (size: number, seconds: number) => void;
  #queue: Pending<I, O>[] = [];
  #running = 0;
  #timer: NodeJS.Timeout | undefined;
  #idle: (() => void)[] = [];

  constructor(options: BatcherOptions<I, O>) {
    this.#run = options.run;
    this.#onBatch = options.onBatch;
    this.maxBatch = options.maxBatch === undefined ? 8 : expectInteger(options.maxBatch, 'options.maxBatch', { min: 1, max: 1024 });
    this.maxWaitMs = options.maxWaitMs === undefined ? 5 : expectNumber(options.maxWaitMs, 'options.maxWaitMs', { min: 0, max: 60_000 });
    this.maxQueue = options.maxQueue === undefined ? 64 : expectInteger(options.maxQueue, 'options.maxQueue', { min: 1 });
  }

  /** Items waiting for a batch. */
  get depth(): number {
    return this.#queue.length;
  }

  /** Items in the batch running now. */
  get inFlight(): number {
    return this.#running;
  }

  /**
   * Queues one item; resolves with its output when its batch is done. Rejects at once with
   * ERR_BUSY when `maxQueue` items are already waiting.
   */
  submit(item: I): Promise<O> {
    if (this.#queue.length >= this.maxQueue)
      return Promise.reject(new AnomalensError('ERR_BUSY', `the queue is full (${this.maxQueue} images waiting): retry later`));
    return new Promise<O>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      this.#schedule();
    });
  }

  /** Resolves when nothing is waiting or running (new items may still come). */
  drain(): Promise<void> {
    if (this.#queue.length === 0 && this.#running === 0) return Promise.resolve();
    this.flush();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Starts a batch now without waiting for more items. */
  flush(): void {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#running === 0 && this.#queue.length > 0) void this.#next();
  }

  #schedule(): void {
    if (this.#running > 0) return;  // the running batch's end starts the next one
    if (this.#queue.length >= this.maxBatch || this.maxWaitMs === 0) return this.flush();
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, this.maxWaitMs);
  }

  async #next(): Promise<void> {
    const batch = this.#queue.splice(0, this.maxBatch);
    this.#running = batch.length;
    const start = performance.now();
    try {
      const out = await this.#run(batch.map((p) => p.item));
      if (out.length !== batch.length) throw new AnomalensError('ERR_INTERNAL', `a batch of ${batch.length} gave ${out.length} results`);
      batch.forEach((p, i) => p.resolve(out[i]));
    } catch (err) {
      batch.forEach((p) => p.reject(err));
    } finally {
      this.#running = 0;
      this.#onBatch?.(batch.length, (performance.now() - start) / 1000);
    }
    // Whatever came in meanwhile has waited at least one batch: run it now.
    if (this.#queue.length > 0) void this.#next();
    else for (const resolve of this.#idle.splice(0)) resolve();
  }
}
