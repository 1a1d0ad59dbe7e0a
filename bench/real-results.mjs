#!/usr/bin/env node
// Real results: fit + eval of DN2, SPADE, PatchCore and PaDiM on the magnetic-tile data set
// (MVTec layout) with the ImageNet ResNet-50 v2 weights (stem + stages 1-3) from ../shared/data.
// Each method runs in its own process so peak memory (max RSS) is per method.
//
//   node bench/real-results.mjs [--methods dn2,spade,patchcore,padim] [--size 224] [--threads 2]
//
// Data: Huang, Qiu, Yuan, "Surface defect saliency of magnetic tile", The Visual Computer 2020.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    methods: { type: 'string', default: 'dn2,spade,patchcore,padim' },
    size: { type: 'string', default: '224' },
    threads: { type: 'string', default: '2' },
    data: { type: 'string', default: '../shared/data/magnetic-tile' },
    weights: { type: 'string', default: '../shared/data/weights/resnet50v2-onnxzoo-stages1-3.safetensors' },
    one: { type: 'string' },
  },
});

if (values.one) {
  const { Detector, openMvtec, setNumThreads } = await import('../dist/lib/index.js');
  setNumThreads(Number(values.threads));
  const det = await Detector.create({ method: values.one, arch: 'resnet50_v2', weights: values.weights, size: Number(values.size) });
  const report = await det.evaluate(await openMvtec(values.data));
  const { evaluation, ...rest } = report;
  console.log(JSON.stringify({ ...rest, notes: det.notes, peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) }));
} else {
  for (const p of [values.data, values.weights]) if (!existsSync(p)) { console.log(`skipped: ${p} is absent`); process.exit(0); }
  const rows = [];
  for (const m of values.methods.split(',')) {
    const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--one', m, '--size', values.size, '--threads', values.threads,
      '--data', values.data, '--weights', values.weights], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const r = JSON.parse(out.trim().split('\n').pop());
    rows.push(r);
    console.error(JSON.stringify(r));
  }
  const f = (v) => (v === null ? 'n/a' : v.toFixed(4));
  console.log('| method | image AUROC | pixel AUROC | AUPRO | image F1 | fit s | predict img/s | peak RSS MiB |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows)
    console.log(`| ${r.method} | ${f(r.imageAuroc)} | ${f(r.pixelAuroc)} | ${f(r.aupro)} | ${f(r.f1)} | ${r.fitSeconds.toFixed(1)} | ${r.predictImagesPerSecond.toFixed(1)} | ${r.peakRssMiB} |`);
}
