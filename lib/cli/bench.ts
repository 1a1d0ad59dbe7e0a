/**
 * `anomalens bench`: tinybench microbenchmarks of this machine's forward pass, exact kNN and
 * map kernels, printed as throughput. Synthetic inputs; the forward pass needs --weights.
 */
import type { Command } from 'commander';
import { Bench } from 'tinybench';
import { ARCHS, Backbone, type Arch } from '../nn/backbone.js';
import { applyRuntime, positiveInt } from './detect.js';
import { knnSearch } from '../knn/exact.js';
import { cosineDistanceMap, gaussianBlur, resizeBilinear } from '../maps/maps.js';
import { numThreads } from '../core/runtime.js';

function noise(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = (x >>> 0) / 4294967296 - 0.5;
  }
  return out;
}

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('Microbenchmarks on this machine: backbone forward (with --weights), exact kNN, map kernels')
    .option('--arch <arch>', `backbone for the forward pass: ${ARCHS.join(', ')}`)
    .option('--weights <file>', 'weights for the forward pass (skipped without)')
    .option('--size <n>', 'forward input size', positiveInt('--size'), 224)
    .option('--batch <n>', 'forward batch', positiveInt('--batch'), 8)
    .option('--time <ms>', 'time per task in ms', positiveInt('--time'), 2000)
    .option('--threads <n>', 'native threads (default: all cores)', positiveInt('--threads'))
    .option('--device <device>', 'auto, cpu or cuda', 'auto')
    .option('--json', 'print the results as JSON')
    .action(async (o) => {
      applyRuntime(o);
      const bench = new Bench({ time: o.time, iterations: 5, warmupTime: Math.min(500, o.time / 4), warmupIterations: 1 });
      const units: Record<string, [number, string]> = {};
      if (o.weights) {
        const bb = await Backbone.load({ arch: (o.arch ?? 'resnet50_v2') as Arch, weights: o.weights });
        const tap = bb.availableTaps.includes('avgpool') ? bb.availableTaps[bb.availableTaps.length - 2] : bb.deepestTap;
        const input = { data: noise(o.batch * 3 * o.size * o.size, 1), shape: [o.batch, 3, o.size, o.size] as [number, number, number, number] };
        const name = `forward ${bb.arch}@${o.size} to ${tap}, batch ${o.batch}`;
        bench.add(name, async () => void (await bb.extract(input, [tap])));
        units[name] = [o.batch, 'images/s'];
      }
      const db = noise(20000 * 256, 2);
      const q = noise(1000 * 256, 3);
      for (const k of [1, 10]) {
        const name = `knn exact 20000x256, 1000 queries, k=${k}`;
        bench.add(name, async () => void (await knnSearch({ data: db, shape: [20000, 256] }, { data: q, shape: [1000, 256] }, { k })));
        units[name] = [1000, 'queries/s'];
      }
      const small = noise(16 * 28 * 28, 4);
      const big = noise(16 * 224 * 224, 5);
      const a = noise(8 * 256 * 56 * 56, 6);
      const b = noise(8 * 256 * 56 * 56, 7);
      bench.add('resize 28x28 -> 224x224, 16 maps', async () => void (await resizeBilinear(small, [16, 1, 28, 28], [224, 224])));
      bench.add('gaussian blur sigma 4, 16 maps of 224x224', async () => void (await gaussianBlur(big, [16, 224, 224], 4)));
      bench.add('cosine distance map [8, 256, 56, 56]', async () => void (await cosineDistanceMap(a, b, [8, 256, 56, 56])));
      units['resize 28x28 -> 224x224, 16 maps'] = [16, 'maps/s'];
      units['gaussian blur sigma 4, 16 maps of 224x224'] = [16, 'maps/s'];
      units['cosine distance map [8, 256, 56, 56]'] = [8, 'maps/s'];
      if (!o.weights && !o.json) console.log('forward pass skipped: give --weights (and --arch) to time it');
      await bench.run();
      const rows = bench.tasks.map((t) => {
        const r = t.result as { latency?: { mean: number }; period?: number } | undefined;
        const ms = r?.latency?.mean ?? r?.period ?? NaN;
        const [per, unit] = units[t.name];
        return { task: t.name, msPerRun: ms, throughput: (per * 1000) / ms, unit };
      });
      if (o.json) console.log(JSON.stringify({ threads: numThreads(), results: rows }));
      else {
        console.log(`threads: ${numThreads()}`);
        for (const r of rows) console.log(`  ${r.task.padEnd(48)} ${r.msPerRun.toFixed(2).padStart(9)} ms  ${r.throughput.toFixed(1).padStart(10)} ${r.unit}`);
      }
    });
}
