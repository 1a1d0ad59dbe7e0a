/**
 * anomalens/serve: the HTTP service and the Redis queue (client and worker). A subpath of
 * its own because fastify and BullMQ take about 0.3 s to load, which `import 'anomalens'`
 * should not pay.
 * @example import { createServer, listen, PredictQueue, startWorker } from 'anomalens/serve';
 */
export { createServer, listen, isLoopback } from './http.js';
export type { ServeOptions } from './http.js';
export { PredictQueue, startWorker, redisConnection, DEFAULT_QUEUE } from './queue.js';
export type { EnqueueOptions, PredictJobData, PredictWorker, WorkerOptions } from './queue.js';
export { Batcher } from './batcher.js';
export type { BatcherOptions } from './batcher.js';
export { ServeMetrics } from './metrics.js';
export { decodeImageBytes } from './decode.js';
export { scoreImages } from './scorer.js';
export { encodeResult, decodeMap, MAP_FORMATS } from './result.js';
export type { MapFormat, PredictResult } from './result.js';
