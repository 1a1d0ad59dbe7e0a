// PatchCore end to end on magnetic-tile: anomalens' Detector against a PyTorch float32 eager
// implementation of the same pipeline (bench/peers/patchcore_torch.py, Debian python3-torch),
// same subset, same thread count, in the same run (interleaved: anomalens, torch, per round).
//
//   npx tsc -p tsconfig.json && ANOMALENS_NATIVE=... node bench/run.mjs patchcore
//   env: PC_THREADS=2,1  PC_TRAIN=40  PC_TEST=40  PC_CORESET=0.1  PC_ROUNDS=1
//
// Subset: the first PC_TRAIN files of train/good (sorted by name); test: the first PC_TEST of
// test/good plus PC_TEST defective, taken evenly across the defect types (sorted type names,
// the first ceil/floor share of each type's sorted files). Resize to 224x224 (no crop),
// ResNet-50 v2 stages 2+3, coreset PC_CORESET, batch 8. fit s = features + embedding +
// coreset (decode included); predict img/s includes decode and maps at the original size.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Backbone, Detector, coresetSubsample, gaussianBlur, imageAuroc, knnSearch, loadBatch, resizeBilinear, setNumThreads, squareResize,
} from '../dist/lib/index.js';
import { native } from '../dist/lib/core/native.js';

const here = dirname(fileURLToPath(import.meta.url));
const data = process.env.PC_DATA ?? join(here, '..', '..', 'shared', 'data', 'magnetic-tile');
const weights = process.env.PC_WEIGHTS ?? join(here, '..', '..', 'shared', 'data', 'weights', 'resnet50v2-onnxzoo-stages1-3.safetensors');
const threadList = (process.env.PC_THREADS ?? '2').split(',').map(Number);
const nTrain = Number(process.env.PC_TRAIN ?? 40);
const nTest = Number(process.env.PC_TEST ?? 40);
const coreset = Number(process.env.PC_CORESET ?? 0.1);
const rounds = Number(process.env.PC_ROUNDS ?? 1);
const python = '/usr/bin/python3';

if (!existsSync(data) || !existsSync(weights) || !existsSync(python)) {
  console.log(`skipped: needs ${data}, ${weights} and ${python}`);
} else {
  const files = (d) => readdirSync(d).filter((f) => /\.(jpe?g|png|bmp)$/i.test(f)).sort().map((f) => join(d, f));
  const train = files(join(data, 'train', 'good')).slice(0, nTrain);
  const good = files(join(data, 'test', 'good')).slice(0, nTest);
  const types = readdirSync(join(data, 'test')).filter((t) => t !== 'good').sort();
  const bad = types.flatMap((t, i) => files(join(data, 'test', t)).slice(0, Math.floor(nTest / types.length) + (i < nTest % types.length ? 1 : 0)));
  const test = [...good, ...bad];
  const labels = test.map((_, i) => (i < good.length ? 0 : 1));
  const subsetFile = join(mkdtempSync(join(tmpdir(), 'pcbench-')), 'subset.json');
  writeFileSync(subsetFile, JSON.stringify({ train, test, labels }));
  console.log(`subset: ${train.length} train/good (first sorted), test ${good.length} good + ${bad.length} defective ` +
    `(${types.map((t) => `${t} ${bad.filter((p) => p.includes(`/test/${t}/`)).length}`).join(', ')}), coreset ${coreset}`);

  const load = () => execFileSync('uptime', { encoding: 'utf8' }).trim().replace(/.*load average: /, '');

  async function runAnomalens(threads) {
    setNumThreads(threads);
    const det = await Detector.create({ method: 'patchcore', arch: 'resnet50_v2', weights, size: 224, methodOptions: { coreset } });
    let featuresDone = 0;
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    det.onProgress = (e) => {
      if (e.phase === 'fit' && e.done === e.total) featuresDone = performance.now();
    };
    await det.fit(train);
    const fitEnd = performance.now();
    const cpu1 = process.cpuUsage();
    const p0 = performance.now();
    const preds = await det.predict(test);
    const predictSeconds = (performance.now() - p0) / 1000;
    const cpu2 = process.cpuUsage();
    const cpuSec = (a, b) => (b.user + b.system - a.user - a.system) / 1e6;
    const auroc = await imageAuroc(Float32Array.from(preds.map((p) => p.predScore)), Uint8Array.from(labels));
    return {
      fitSeconds: det.fitSeconds, predictImagesPerSecond: test.length / predictSeconds, predictSeconds, imageAuroc: auroc,
      cpuPerWall: { fit: cpuSec(cpu0, cpu1) / ((fitEnd - start) / 1000), predict: cpuSec(cpu1, cpu2) / predictSeconds },
      stages: { decodeFeaturesEmbed: (featuresDone - start) / 1000, coreset: (fitEnd - featuresDone) / 1000 },
    };
  }

  // The same pipeline step by step with the library's public pieces (and the native embedding
  // Detector's PatchCore calls), to see where anomalens spends its time. Seconds per stage.
  async function anomalensStages(threads) {
    setNumThreads(threads);
    const bb = await Backbone.load({ arch: 'resnet50_v2', weights });
    const pre = squareResize(224);
    const taps = ['stage2', 'stage3'];
    const t = { decode: 0, features: 0, embed: 0, coreset: 0, p_decode: 0, p_features: 0, p_embed: 0, p_search: 0, p_maps: 0 };
    const time = async (key, fn) => { const s = performance.now(); const r = await fn(); t[key] += (performance.now() - s) / 1000; return r; };
    const embed = (f) => native().patchcoreEmbed(f.stage2.data, f.stage2.shape, f.stage3.data, f.stage3.shape, 1024, 1024);
    const parts = [];
    for (let i = 0; i < train.length; i += 8) {
      const b = await time('decode', () => loadBatch(train.slice(i, i + 8), pre));
      const f = await time('features', () => bb.extract(b, taps));
      parts.push(await time('embed', () => embed(f)));
    }
    const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((o, p) => (all.set(p, o), o + p.length), 0);
    const rows = all.length / 1024;
    const idx = await time('coreset', () => coresetSubsample({ data: all, shape: [rows, 1024] }, { count: Math.round(rows * coreset) }));
    const bank = new Float32Array(idx.length * 1024);
    idx.forEach((r, i) => bank.set(all.subarray(r * 1024, (r + 1) * 1024), i * 1024));
    for (let i = 0; i < test.length; i += 8) {
      const b = await time('p_decode', () => loadBatch(test.slice(i, i + 8), pre));
      const f = await time('p_features', () => bb.extract(b, taps));
      const q = await time('p_embed', () => embed(f));
      const n = b.shape[0];
      const [, , h, w] = f.stage2.shape;
      const r = await time('p_search', () => knnSearch({ data: bank, shape: [idx.length, 1024] }, { data: q, shape: [n * h * w, 1024] }, { k: 1, metric: 'l2sq' }));
      await time('p_maps', async () => {
        const up = await gaussianBlur(await resizeBilinear(r.distances, [n, 1, h, w], [224, 224]), [n, 224, 224], 4);
        for (let j = 0; j < n; j++)
          await resizeBilinear(up.slice(j * 224 * 224, (j + 1) * 224 * 224), [1, 1, 224, 224], [b.sizes[j].height, b.sizes[j].width]);
      });
    }
    bb.dispose?.();
    return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, Math.round(v * 1000) / 1000]));
  }

  function runTorch(threads) {
    const env = { ...process.env, OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) };
    const out = execFileSync(python, [join(here, 'peers', 'patchcore_torch.py'), subsetFile, weights, String(threads), String(coreset)],
      { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
    return JSON.parse(out.trim().split('\n').pop());
  }

  const rows = [];
  for (let r = 0; r < rounds; r++) {
    for (const threads of threadList) {
      const before = load();
      const a = await runAnomalens(threads);
      if (process.env.PC_STAGES !== '0') a.stageSeconds = await anomalensStages(threads);
      const mid = load();
      const t = runTorch(threads);
      const after = load();
      console.log(JSON.stringify({ round: r, threads, anomalens: a, torch: t, load: { before, mid, after } }));
      rows.push({ threads, a, t, load: `${before} / ${mid} / ${after}` });
    }
  }
  const f = (v, d = 1) => v.toFixed(d);
  console.log('\n| threads | impl | fit s | predict img/s | image AUROC | fit ratio (torch/anomalens) | predict ratio (anomalens/torch) | load (1/5/15 min) before / mid / after |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const { threads, a, t, load: l } of rows) {
    console.log(`| ${threads} | anomalens | ${f(a.fitSeconds)} | ${f(a.predictImagesPerSecond, 2)} | ${f(a.imageAuroc, 4)} | ${f(t.fitSeconds / a.fitSeconds, 2)}x | ${f(a.predictImagesPerSecond / t.predictImagesPerSecond, 2)}x | ${l} |`);
    console.log(`| ${threads} | torch eager | ${f(t.fitSeconds)} | ${f(t.predictImagesPerSecond, 2)} | ${f(t.imageAuroc, 4)} | | | |`);
  }
  const keys = ['decode', 'features', 'embed', 'coreset', 'p_decode', 'p_features', 'p_embed', 'p_search', 'p_maps'];
  console.log(`\nseconds per stage (fit: ${keys.slice(0, 4).join(', ')}; predict: ${keys.slice(4).join(', ')})`);
  console.log(`| threads | impl | ${keys.join(' | ')} |`);
  console.log(`|---|---|${keys.map(() => '---').join('|')}|`);
  for (const { threads, a, t } of rows) {
    if (a.stageSeconds) console.log(`| ${threads} | anomalens | ${keys.map((k) => f(a.stageSeconds[k], 2)).join(' | ')} |`);
    console.log(`| ${threads} | torch eager | ${keys.map((k) => f(t.stages[k], 2)).join(' | ')} |`);
  }
}
