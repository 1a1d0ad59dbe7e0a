/**
 * CLI verbs `serve` (the HTTP service) and `worker` (a queue consumer). Registered on the
 * program by lib/cli/cli.ts. Both run until SIGTERM or SIGINT, then finish the work in flight
 * and exit 0.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { Detector } from '../detector/detector.js';
import { applyRuntime, positiveInt } from '../cli/detect.js';

// fastify and BullMQ cost about 0.3 s to load: only these two verbs pay it (imports in the actions).
const DEFAULT_QUEUE = 'anomalens-predict';

function nonNegativeInt(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer, received '${value}'`);
    return n;
  };
}

/** Resolves on the first SIGTERM or SIGINT. */
function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string) => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      resolve(sig);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

export function registerServeCommands(program: Command): void {
  program
    .command('serve')
    .description('Serve predictions over HTTP: POST /predict, GET /healthz, GET /metrics (binds to 127.0.0.1 by default)')
    .option('--model <file>', 'detector file to score with in this process')
    .option('--queue <redis-url>', 'hand the work to workers through this Redis instead (anomalens worker)')
    .option('--queue-name <name>', 'BullMQ queue name', DEFAULT_QUEUE)
    .option('--weights <file>', 'backbone weights, when not at the path recorded in the model')
    .option('--host <host>', 'address to bind; beyond loopback needs --token or --insecure', '127.0.0.1')
    .option('--port <n>', 'TCP port (0: any free one)', nonNegativeInt('--port'), 8080)
    .addOption(new Option('--token <token>', 'require Authorization: Bearer <token> on every route but /healthz').env('ANOMALENS_TOKEN'))
    .option('--insecure', 'allow a non-loopback --host without a token')
    .option('--root <dir>', 'folder that JSON { "path" } requests may read from (default: none, paths refused)')
    .option('--max-body <bytes>', 'largest request body or image file', positiveInt('--max-body'), 32 << 20)
    .option('--max-pixels <n>', 'largest image in pixels', positiveInt('--max-pixels'), 40_000_000)
    .option('--batch <n>', 'images per forward pass (default: the model batch size)', positiveInt('--batch'))
    .option('--batch-wait-ms <ms>', 'how long a request waits for others to fill a batch', nonNegativeInt('--batch-wait-ms'), 5)
    .option('--max-queue <n>', 'images waiting before requests get 503', positiveInt('--max-queue'), 64)
    .option('--threads <n>', 'native threads (default: all cores)', positiveInt('--threads'))
    .addOption(new Option('--device <device>', 'compute device').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .action(async (o) => {
      if (Boolean(o.model) === Boolean(o.queue)) throw new InvalidArgumentError('give exactly one of --model or --queue');
      applyRuntime(o);
      const [{ createServer, listen }, { PredictQueue }] = await Promise.all([import('./http.js'), import('./queue.js')]);
      const stop = untilSignal();
      if (o.token === '') o.token = undefined;  // ANOMALENS_TOKEN= (set but empty) means no token
      const detector = o.model ? await Detector.load(o.model, { weights: o.weights }) : undefined;
      const queue = o.queue ? await PredictQueue.connect(o.queue, { name: o.queueName }) : undefined;
      const app = await createServer({
        detector, queue, token: o.token, root: o.root, maxBodyBytes: o.maxBody, maxPixels: o.maxPixels,
        maxBatch: o.batch, maxWaitMs: o.batchWaitMs, maxQueue: o.maxQueue,
      });
      try {
        const url = await listen(app, { host: o.host, port: o.port, token: o.token, insecure: o.insecure });
        console.log(`listening on ${url}${o.token ? ' (bearer token required)' : ''}`);
        const sig = await stop;
        process.stderr.write(`anomalens serve: ${sig}: finishing the requests in flight\n`);
      } finally {
        await app.close();
        await queue?.close();
        detector?.dispose();
      }
    });

  program
    .command('worker')
    .description('Consume predict jobs from a BullMQ queue on Redis (see serve --queue and PredictQueue)')
    .requiredOption('--model <file>', 'detector file')
    .requiredOption('--redis <url>', 'redis://host:port')
    .option('--queue-name <name>', 'BullMQ queue name', DEFAULT_QUEUE)
    .option('--weights <file>', 'backbone weights, when not at the path recorded in the model')
    .option('--concurrency <n>', 'jobs at once, batched into forward passes (default: the model batch size)', positiveInt('--concurrency'))
    .option('--root <dir>', 'folder that path jobs may read from (default: none, path jobs fail)')
    .option('--max-pixels <n>', 'largest image in pixels', positiveInt('--max-pixels'), 40_000_000)
    .option('--lock-ms <ms>', "job lock duration: a dead worker's jobs are taken over after about this long", positiveInt('--lock-ms'), 30_000)
    .option('--stalled-ms <ms>', 'how often to look for stalled jobs', positiveInt('--stalled-ms'), 30_000)
    .option('--threads <n>', 'native threads (default: all cores)', positiveInt('--threads'))
    .addOption(new Option('--device <device>', 'compute device').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .option('--verbose', 'print a line per job')
    .action(async (o) => {
      applyRuntime(o);
      const { startWorker } = await import('./queue.js');
      const stop = untilSignal();
      const detector = await Detector.load(o.model, { weights: o.weights });
      let lastError = '';
      const w = await startWorker({
        detector, redis: o.redis, name: o.queueName, concurrency: o.concurrency, root: o.root, maxPixels: o.maxPixels,
        lockDurationMs: o.lockMs, stalledIntervalMs: o.stalledMs,
        onJob: o.verbose ? (e) => console.log(`${e.ok ? 'done' : 'failed'} ${e.id}${e.error ? `: ${e.error}` : ''}`) : undefined,
        onError: (err) => {
          // One line per distinct error, not one per reconnect attempt.
          if (err.message !== lastError) process.stderr.write(`anomalens worker: ${err.message}\n`);
          lastError = err.message;
        },
      });
      try {
        console.log(`worker ready on ${o.queueName} (pid ${process.pid}, concurrency ${w.worker.concurrency})`);
        const sig = await stop;
        process.stderr.write(`anomalens worker: ${sig}: finishing the jobs in flight\n`);
      } finally {
        await w.close();
        detector.dispose();
      }
    });
}
