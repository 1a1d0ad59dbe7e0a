/**
 * The service's Prometheus metrics (prom-client), one registry per server so that several
 * servers in one process keep their own counts.
 *
 * | metric | type | what |
 * |---|---|---|
 * | anomalens_requests_total{route,status} | counter | HTTP requests answered |
 * | anomalens_request_duration_seconds{route} | histogram | time from request to response |
 * | anomalens_images_total | counter | images scored |
 * | anomalens_images_per_second | gauge | images scored per second over the last 10 s |
 * | anomalens_batches_total | counter | forward passes (one per batch) |
 * | anomalens_batch_size | histogram | images per forward pass |
 * | anomalens_queue_depth | gauge | images waiting for a forward pass (or, with --queue, jobs waiting in Redis) |
 * | anomalens_in_flight | gauge | images in the running batch (or jobs this server awaits) |
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

const WINDOW_S = 10;

export class ServeMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'status'>;
  readonly latency: Histogram<'route'>;
  readonly images: Counter;
  readonly batches: Counter;
  readonly batchSize: Histogram;
  /** Timestamps (ms) and counts of recently scored batches, for images/s. */
  #recent: [number, number][] = [];

  constructor(depth: () => number | Promise<number>, inFlight: () => number) {
    const registers = [this.registry];
    this.requests = new Counter({ name: 'anomalens_requests_total', help: 'HTTP requests answered', labelNames: ['route', 'status'], registers });
    this.latency = new Histogram({
      name: 'anomalens_request_duration_seconds', help: 'Time from request to response, seconds', labelNames: ['route'], registers,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    });
    this.images = new Counter({ name: 'anomalens_images_total', help: 'Images scored', registers });
    this.batches = new Counter({ name: 'anomalens_batches_total', help: 'Forward passes (one per batch)', registers });
    this.batchSize = new Histogram({ name: 'anomalens_batch_size', help: 'Images per forward pass', registers, buckets: [1, 2, 4, 8, 16, 32, 64] });
    const self = this;
    new Gauge({
      name: 'anomalens_images_per_second', help: `Images scored per second over the last ${WINDOW_S} s`, registers,
      collect() {
        this.set(self.imagesPerSecond());
      },
    });
    new Gauge({
      name: 'anomalens_queue_depth', help: 'Images waiting for a forward pass (with --queue: jobs waiting in Redis)', registers,
      async collect() {
        this.set(await depth());
      },
    });
    new Gauge({
      name: 'anomalens_in_flight', help: 'Images in the running batch (with --queue: jobs this server awaits)', registers,
      collect() {
        this.set(inFlight());
      },
    });
  }

  /** Records a scored batch of `n` images. */
  batch(n: number): void {
    this.batches.inc();
    this.batchSize.observe(n);
    this.scored(n);
  }

  /** Records `n` images scored (elsewhere, with --queue). */
  scored(n: number): void {
    this.images.inc(n);
    const now = Date.now();
    this.#recent.push([now, n]);
    this.#prune(now);
  }

  imagesPerSecond(): number {
    const now = Date.now();
    this.#prune(now);
    return this.#recent.reduce((s, [, n]) => s + n, 0) / WINDOW_S;
  }

  #prune(now: number): void {
    let i = 0;
    while (i < this.#recent.length && this.#recent[i][0] < now - WINDOW_S * 1000) i++;
    if (i > 0) this.#recent.splice(0, i);
  }
}
