// Backbone forward (engine): images/s of resnet18@224 and wide_resnet50_2@256 up to layer3,
// batch 1 and 8, 1 and 2 threads, against PyTorch eager, PyTorch best mode
// (torch.jit.optimize_for_inference) and onnxruntime-node, on the same input shapes in the same
// run. The machine is shared, so the peers run in interleaved rounds (ours, eager, best, ort,
// repeated R times) and every figure is reported as the minimum and the median per config.
//
//   bash bench/setup-peers-backbone.sh      # once: onnxruntime-node + ONNX models in bench/.peers
//   npx tsc -p tsconfig.json && node bench/run.mjs backbone
//
// Environment: BENCH_QUICK=1 (2 short rounds, no RESULTS.md), BENCH_ROUNDS (5), BENCH_TIME_MS
// per peer and round (1000), BENCH_MIN_ITERS (3), BENCH_CONFIGS (comma-separated substrings of
// labels like 'resnet18@224 b8 t2'), BENCH_PEERS (subset of ours,eager,best,ort),
// BENCH_WRITE=0|1 (write bench/RESULTS.md; default: only in full runs), BENCH_PEAK_GFLOPS
// (FMA peak per core; default: measured by bench/.peers/fma-peak at start and end, best of
// both, else derived from /proc/cpuinfo).
import { execSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Bench } from 'tinybench';
import { Backbone, setNumThreads } from '../dist/lib/index.js';
import { TorchPeer, loadOrt, onnxModelPath, ortSession, peersDir } from './backbone-peers.mjs';
import { cpuPeak, measureFmaPeak, median, renderReport, writeResultsSection } from './backbone-report.mjs';
import { seededWeights } from './seeded-weights.mjs';

const env = process.env;
const QUICK = env.BENCH_QUICK === '1';
const int = (v, d) => (v === undefined || v === '' ? d : Number.parseInt(v, 10));
const ROUNDS = int(env.BENCH_ROUNDS, QUICK ? 2 : 5);
const TIME_MS = int(env.BENCH_TIME_MS, QUICK ? 0 : 1000);
const MIN_ITERS = int(env.BENCH_MIN_ITERS, QUICK ? 2 : 3);
const WRITE = env.BENCH_WRITE ? env.BENCH_WRITE === '1' : !QUICK;
const PEERS = (env.BENCH_PEERS ?? 'ours,eager,best,ort').split(',');
const ONLY = env.BENCH_CONFIGS ? env.BENCH_CONFIGS.split(',') : null;
const TAP = 'layer3';

const MODELS = [
  { arch: 'resnet18', size: 224 },
  { arch: 'wide_resnet50_2', size: 256 },
];
const configs = [];
for (const m of MODELS)
  for (const batch of [1, 8])
    for (const threads of [1, 2]) {
      const label = `${m.arch}@${m.size} b${batch} t${threads}`;
      if (!ONLY || ONLY.some((s) => label.includes(s))) configs.push({ ...m, batch, threads, label });
    }

const uptime = () => execSync('uptime').toString().trim();
const loadNow = () => loadavg().map((x) => x.toFixed(2)).join(' ');

function randomInput(n) {
  const data = new Float32Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = (s / 4294967296) * 4 - 2;
  }
  return data;
}

// Folds one more profile into per-step minima: a stable picture of where one forward's time
// goes on a busy machine (the profiles are spread over the rounds, like the timings).
async function profileInto(best, bb, input) {
  const { layers } = await bb.profile(input, [TAP]);
  if (!best) return layers.map((l) => ({ ...l }));
  layers.forEach((l, i) => (best[i].ms = Math.min(best[i].ms, l.ms)));
  return best;
}

async function main() {
  const fmaBefore = measureFmaPeak();
  const started = new Date();
  const loadBefore = uptime();
  console.log(`backbone bench: ${configs.length} configs, ${ROUNDS} rounds, >= ${TIME_MS} ms and >= ${MIN_ITERS} iterations per peer and round${QUICK ? ' (quick)' : ''}`);
  if (fmaBefore) console.log(`FMA peak probe: ${fmaBefore.toFixed(1)} GFLOP/s on one core`);
  console.log(`load before: ${loadBefore}`);

  const { ort, version: ortVersion, why: ortWhy } = PEERS.includes('ort') ? await loadOrt() : { ort: null, why: 'not requested' };
  if (!ort) console.log(`onnxruntime: skipped (${ortWhy})`);
  const torch = PEERS.includes('eager') || PEERS.includes('best') ? new TorchPeer() : null;
  const weights = {};
  const results = [];
  const profiles = {};
  try {
    for (const cfg of configs) {
      const { arch, size, batch, threads, label } = cfg;
      const shape = [batch, 3, size, size];
      const input = { data: randomInput(batch * 3 * size * size), shape };
      const row = { ...cfg, loadStart: loadNow(), peers: {} };
      console.log(`\n${label}: load ${row.loadStart}`);

      weights[arch] ??= await seededWeights(arch, 3);
      setNumThreads(threads);
      const bb = await Backbone.load({ arch, weights: weights[arch] });
      const tasks = [];
      if (PEERS.includes('ours')) {
        await bb.extract(input, [TAP]);  // builds the plan, reorders weights
        const prof = await profileInto(null, bb, input);
        row.gflop = prof.reduce((a, l) => a + l.gflop, 0);
        if (threads === 2 && batch === 8) profiles[`${arch}@${size}`] = { label, layers: prof, runs: 1 };
        tasks.push(['ours', () => bb.extract(input, [TAP])]);
      }
      if (torch) {
        const t = await torch.load({ arch, size, batch, threads, tap: TAP });
        console.log(`  torch models ready in ${t.seconds.toFixed(1)} s (output ${t.shape.join('x')}, ${t.threads} threads)`);
        for (const mode of ['eager', 'best'])
          if (PEERS.includes(mode)) tasks.push([mode, async () => ({ overriddenDuration: await torch.run(mode) })]);
      }
      let session = null;
      if (ort) {
        session = await ortSession(ort, onnxModelPath(arch, size, batch, TAP), threads);
        const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', input.data, shape) };
        await session.run(feeds);
        tasks.push(['ort', () => session.run(feeds)]);
      }

      const samples = Object.fromEntries(tasks.map(([name]) => [name, []]));
      const roundMedians = Object.fromEntries(tasks.map(([name]) => [name, []]));
      for (let r = 0; r < ROUNDS; r++) {
        for (const [name, fn] of tasks) {
          await sleep(100);  // let the previous peer's spinning pool threads go to sleep
          const bench = new Bench({
            name: `${label} ${name}`, time: TIME_MS, iterations: MIN_ITERS, throws: true, retainSamples: true,
            warmup: !QUICK, warmupIterations: 1, warmupTime: 0,
          });
          bench.add(name, fn);
          await bench.run();
          const s = [...bench.tasks[0].result.latency.samples];
          samples[name].push(...s);
          roundMedians[name].push(median(s));
        }
        const prof = profiles[`${arch}@${size}`];
        if (prof?.label === label && tasks.some(([name]) => name === 'ours')) {
          await profileInto(prof.layers, bb, input);
          prof.runs += 1;
        }
        const line = tasks.map(([name]) => `${name} ${(roundMedians[name][r] / batch).toFixed(1)}`).join(', ');
        console.log(`  round ${r + 1}/${ROUNDS} ms/image (median): ${line}`);
      }
      for (const [name] of tasks) {
        const s = samples[name];
        row.peers[name] = {
          minMs: Math.min(...s) / batch, medianMs: median(s) / batch, iterations: s.length,
          roundMedians: roundMedians[name].map((x) => x / batch),
        };
      }
      row.loadEnd = loadNow();
      results.push(row);
      bb.dispose();
      if (session) await session.release();
    }
  } finally {
    if (torch) await torch.close();
  }

  const fmaAfter = measureFmaPeak();
  const peak = cpuPeak(fmaBefore || fmaAfter ? Math.max(fmaBefore ?? 0, fmaAfter ?? 0) : null, env.BENCH_PEAK_GFLOPS);
  console.log(`CPU: ${peak.description}`);
  const run = {
    started: started.toISOString(), quick: QUICK, rounds: ROUNDS, timeMs: TIME_MS, minIters: MIN_ITERS,
    loadBefore, loadAfter: uptime(), peak, ortVersion, torch: torchVersion(), node: process.version,
  };
  console.log(`\nload after: ${run.loadAfter}`);
  const report = renderReport(run, results, profiles);
  console.log(`\n${report}`);
  writeFileSync(`${peersDir}/backbone-results.json`, JSON.stringify({ run, results, profiles }, null, 1));
  if (WRITE) {
    writeResultsSection(report);
    console.log('bench/RESULTS.md: "Backbone forward (engine)" updated');
  }
}

function torchVersion() {
  try {
    return execSync(`${env.BENCH_PYTHON ?? '/usr/bin/python3'} -c "import torch; print(torch.__version__)"`).toString().trim();
  } catch {
    return 'unknown';
  }
}

await main();
