// kNN: exact search against faiss' IndexFlatL2 (through anomalens' FaissIndex 'Flat', same
// process, same threads) and against faiss-node (the npm binding, built against the same
// Debian faiss by bench/setup-peers.sh); then the greedy coreset of 200k x 1536 down to 10%.
//
//   bash bench/setup-peers.sh               # once: faiss-node into bench/.peers
//   npx tsc -p tsconfig.json && node bench/run.mjs knn
//
// Data: N(0, 1) float32 (seeded). Databases 100k x 256 and 1M x 128; 1k and 10k queries;
// k = 1 and 10. Peers per config, in interleaved rounds (the machine is shared):
//   ours bank   MemoryBank.search: search only (norms and bf16 copy made at add, like faiss' index);
//               bf16-screened exact path where the CPU has AVX512-BF16
//   ours fp32   the same bank with screening 'off': the float32 SGEMM path only
//   ours e2e    knnSearch(Float32Array database, Float32Array queries): everything per call
//   faiss flat  FaissIndex('Flat').search = faiss::IndexFlatL2::search, search only
//   faiss-node  IndexFlatL2.search(number[]): the queries already converted ...
//   faiss-node+conv  ... and with Array.from(Float32Array) included (end to end)
// Environment: BENCH_QUICK=1 (small sizes, 1 round, no RESULTS.md), BENCH_ROUNDS (3),
// BENCH_BIG_ROUNDS (rounds for 1M x 128 with 10k queries; 1), BENCH_THREADS (2),
// BENCH_CONFIGS (substrings of labels like '100000x256 q1000 k10'), BENCH_PEERS (subset of
// bank,fp32,e2e,flat,node,nodeconv), BENCH_CORESET=0 (skip the coreset), BENCH_WRITE=0|1.
import { execSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Bench } from 'tinybench';
import { coresetSubsample, FaissIndex, knnEngineInfo, knnSearch, MemoryBank, setNumThreads } from '../dist/lib/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;
const QUICK = env.BENCH_QUICK === '1';
const int = (v, d) => (v === undefined || v === '' ? d : Number.parseInt(v, 10));
const ROUNDS = int(env.BENCH_ROUNDS, QUICK ? 1 : 3);
const BIG_ROUNDS = int(env.BENCH_BIG_ROUNDS, 1);
const THREADS = int(env.BENCH_THREADS, 2);
const PEERS = (env.BENCH_PEERS ?? 'bank,fp32,e2e,flat,node,nodeconv').split(',');
const ONLY = env.BENCH_CONFIGS ? env.BENCH_CONFIGS.split(',') : null;
const WRITE = env.BENCH_WRITE ? env.BENCH_WRITE === '1' : !QUICK;
const CORESET = env.BENCH_CORESET !== '0';
const SCALE = QUICK ? 0.02 : 1;

const DATABASES = [
  { n: Math.round(100_000 * SCALE), d: 256 },
  { n: Math.round(1_000_000 * SCALE), d: 128 },
];
const QUERIES = QUICK ? [100, 1000] : [1000, 10_000];
const KS = [1, 10];

const uptime = () => execSync('uptime').toString().trim().replace(/^.*load average/, 'load average');
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function gaussian(count, seed) {
  const out = new Float32Array(count);
  let s = seed >>> 0 || 1;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  for (let i = 0; i < count; i += 2) {
    const r = Math.sqrt(-2 * Math.log(next()));
    const a = 2 * Math.PI * next();
    out[i] = r * Math.cos(a);
    if (i + 1 < count) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

function loadFaissNode() {
  const pkg = join(here, '.peers', 'node_modules', 'faiss-node');
  if (!existsSync(join(pkg, 'build', 'Release', 'faiss-node.node'))) {
    console.log('faiss-node: not built (run bash bench/setup-peers.sh); skipped');
    return null;
  }
  return createRequire(import.meta.url)(pkg);
}

/** Times `fn` with tinybench: `iterations` runs after one warm-up run; returns the samples (ms). */
async function time(name, fn, iterations) {
  await sleep(50); // let the previous peer's spinning OpenMP threads go to sleep
  const bench = new Bench({ name, time: 0, iterations, warmup: false, throws: true, retainSamples: true });
  bench.add(name, fn);
  await bench.run();
  return [...bench.tasks[0].result.latency.samples];
}

async function knnPart(faissNode) {
  const rows = [];
  for (const { n, d } of DATABASES) {
    const labels = [];
    for (const m of QUERIES) for (const k of KS) labels.push({ m, k, label: `${n}x${d} q${m} k${k}` });
    const wanted = labels.filter((l) => !ONLY || ONLY.some((s) => l.label.includes(s)));
    if (!wanted.length) continue;
    console.log(`\ndatabase ${n} x ${d}: generating ...`);
    const database = gaussian(n * d, 1);
    const bank = new MemoryBank(d);
    await bank.add(database);
    const plain = new MemoryBank(d, { screening: 'off' });
    if (PEERS.includes('fp32')) await plain.add(database);
    const flat = new FaissIndex(d, 'Flat');
    await flat.add(database);
    let fnIndex = null;
    if (faissNode && (PEERS.includes('node') || PEERS.includes('nodeconv'))) {
      fnIndex = new faissNode.IndexFlatL2(d);
      const chunk = 50_000;
      for (let r = 0; r < n; r += chunk) fnIndex.add(Array.from(database.subarray(r * d, Math.min(n, r + chunk) * d)));
    }
    for (const { m, k, label } of wanted) {
      const queries = gaussian(m * d, 2 + m);
      const queryArray = Array.from(queries);
      const big = n * d * m >= 1e12;
      const rounds = big ? BIG_ROUNDS : ROUNDS;
      const iterations = n * d * m > 2e11 ? 1 : 3;
      const tasks = [];
      // async functions: tinybench calls a plain function once, unawaited, to find out whether it
      // returns a promise, which would leave an extra search running under the timed ones.
      if (PEERS.includes('bank')) tasks.push(['ours bank', async () => { await bank.search(queries, k); }]);
      if (PEERS.includes('fp32')) tasks.push(['ours fp32', async () => { await plain.search(queries, k); }]);
      if (PEERS.includes('e2e')) tasks.push(['ours e2e', async () => { await knnSearch(database, queries, { k, dim: d }); }]);
      if (PEERS.includes('flat')) tasks.push(['faiss flat', async () => { await flat.search(queries, k); }]);
      if (fnIndex && PEERS.includes('node')) tasks.push(['faiss-node', async () => { fnIndex.search(queryArray, k); }]);
      if (fnIndex && PEERS.includes('nodeconv')) tasks.push(['faiss-node+conv', async () => { fnIndex.search(Array.from(queries), k); }]);

      // Same answers (up to float rounding at near-ties) before timing.
      const ref = await bank.search(queries, k);
      const theirs = await flat.search(queries, k);
      let same = 0;
      for (let i = 0; i < ref.indices.length; i++) if (ref.indices[i] === theirs.indices[i]) same++;

      const samples = Object.fromEntries(tasks.map(([name]) => [name, []]));
      console.log(`${label}: ${rounds} round(s) x ${iterations} run(s); index agreement with faiss ${((100 * same) / ref.indices.length).toFixed(3)}%; ${uptime()}`);
      for (let r = 0; r < rounds; r++) {
        // Rotate the order each round so no peer always runs right after another.
        const order = tasks.map((_, i) => tasks[(i + r) % tasks.length]);
        for (const [name, fn] of order) samples[name].push(...(await time(`${label} ${name}`, fn, iterations)));
        console.log(`  round ${r + 1}: ${tasks.map(([name]) => `${name} ${median(samples[name].slice(-iterations)).toFixed(0)} ms`).join(', ')}`);
      }
      const row = { label, n, d, m, k, rounds, iterations, agreement: same / ref.indices.length, load: uptime(), peers: {} };
      for (const [name] of tasks) row.peers[name] = { medianMs: median(samples[name]), minMs: Math.min(...samples[name]), runs: samples[name].length };
      rows.push(row);
    }
    bank.dispose();
    plain.dispose();
    flat.dispose();
  }
  return rows;
}

async function coresetPart() {
  const n = Math.round(200_000 * SCALE), d = 1536;
  console.log(`\ncoreset ${n} x ${d} -> 10%: generating ...`);
  const features = gaussian(n * d, 3);
  const out = [];
  for (const precision of ['float16', 'float32']) {
    const loadBefore = uptime();
    const t0 = performance.now();
    let last = t0;
    const idx = await coresetSubsample(features, {
      dim: d, ratio: 0.1, seed: 1, precision,
      onProgress: (i, total) => {
        const now = performance.now();
        if (now - last > 10_000 || i === total) {
          console.log(`  ${precision}: ${i}/${total} after ${((now - t0) / 1000).toFixed(1)} s`);
          last = now;
        }
      },
    });
    const seconds = (performance.now() - t0) / 1000;
    out.push({ n, d, count: idx.length, precision, seconds, loadBefore, loadAfter: uptime() });
    console.log(`coreset ${precision}: ${idx.length} of ${n} rows in ${seconds.toFixed(1)} s`);
  }
  return out;
}

const fmt = (ms) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(ms < 10 ? 2 : 0)} ms`);
const qps = (m, ms) => `${Math.round((m * 1000) / ms).toLocaleString('en-US')}`;

function render(run, rows, coreset) {
  const lines = [];
  lines.push(`Run ${run.started} (${run.quick ? 'quick' : 'full'}), ${run.threads} threads, Node ${run.node}; ${run.cpu}; top-k scan ${run.engine.scanKernel}, bf16 screening ${run.engine.bf16Screening ? 'available' : 'unavailable'}.`);
  lines.push(`Load before: ${run.loadBefore}; after: ${run.loadAfter}. Other agents were compiling and testing on the same 2 cores, so`);
  lines.push('every figure is the median of interleaved runs (the JSON in bench/.peers has the minima); ratios are medians of ours vs theirs (> 1: anomalens faster).');
  lines.push('Data: N(0, 1) float32. "search only": index built beforehand; "e2e": from Float32Array database + queries per call.');
  lines.push('');
  lines.push('| database | queries | k | ours bank (search only) | ours fp32 path (search only) | ours e2e (knnSearch) | faiss IndexFlatL2 | faiss-node | faiss-node + conversion | bank vs faiss flat | fp32 vs faiss flat | e2e vs faiss-node + conv | runs |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const p = r.peers;
    const cell = (name) => (p[name] ? `${fmt(p[name].medianMs)} (${qps(r.m, p[name].medianMs)} q/s)` : 'n/a');
    const ratio = (a, b) => (p[a] && p[b] ? `${(p[b].medianMs / p[a].medianMs).toFixed(2)}x` : 'n/a');
    lines.push(`| ${r.n.toLocaleString('en-US')} x ${r.d} | ${r.m.toLocaleString('en-US')} | ${r.k} | ${cell('ours bank')} | ${cell('ours fp32')} | ${cell('ours e2e')} | ${cell('faiss flat')} | ${cell('faiss-node')} | ${cell('faiss-node+conv')} | ${ratio('ours bank', 'faiss flat')} | ${ratio('ours fp32', 'faiss flat')} | ${ratio('ours e2e', 'faiss-node+conv')} | ${r.rounds}x${r.iterations} |`);
  }
  if (coreset.length) {
    lines.push('');
    lines.push('Greedy coreset (PatchCore approximate greedy k-center: projection to 128, 10 starts), one run each:');
    lines.push('');
    lines.push('| features | kept | precision | time | load before -> after |');
    lines.push('|---|---|---|---|---|');
    for (const c of coreset)
      lines.push(`| ${c.n.toLocaleString('en-US')} x ${c.d} | ${c.count.toLocaleString('en-US')} (10%) | ${c.precision} | ${c.seconds.toFixed(1)} s | ${c.loadBefore.replace('load average: ', '')} -> ${c.loadAfter.replace('load average: ', '')} |`);
  }
  return lines.join('\n');
}

const BEGIN = '<!-- knn.bench.mjs: generated -->';
const END = '<!-- /knn.bench.mjs -->';
function writeSection(report) {
  const path = join(here, 'RESULTS.md');
  const text = readFileSync(path, 'utf8');
  const head = '## kNN';
  const start = text.indexOf(`\n${head}\n`);
  if (start < 0) throw new Error(`${path} has no '${head}' section`);
  const bodyStart = start + head.length + 2;
  const next = text.indexOf('\n## ', bodyStart);
  const bodyEnd = next < 0 ? text.length : next + 1;
  let body = text.slice(bodyStart, bodyEnd);
  const generated = `${BEGIN}\n${report}\n${END}`;
  const b = body.indexOf(BEGIN), e = body.indexOf(END);
  if (b >= 0 && e > b) body = body.slice(0, b) + generated + body.slice(e + END.length);
  else body = `\n${generated}\n\n`;
  writeFileSync(path, text.slice(0, bodyStart) + body + text.slice(bodyEnd));
}

setNumThreads(THREADS);
const run = {
  started: new Date().toISOString(), quick: QUICK, threads: THREADS, node: process.version,
  cpu: (readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [, 'unknown CPU'])[1].trim(),
  loadBefore: uptime(), engine: knnEngineInfo(),
};
const faissNode = PEERS.some((p) => p.startsWith('node')) ? loadFaissNode() : null;
const rows = await knnPart(faissNode);
const coreset = CORESET ? await coresetPart() : [];
run.loadAfter = uptime();
const report = render(run, rows, coreset);
console.log(`\n${report}`);
writeFileSync(join(here, '.peers', 'knn-results.json'), JSON.stringify({ run, rows, coreset }, null, 1));
if (WRITE) {
  writeSection(report);
  console.log('bench/RESULTS.md: "kNN" updated');
}
