#!/usr/bin/env node
// Reverse Distillation training step: anomalens (TrainRd.trainStep: student forward with BN in
// training mode, loss_function, backward, Adam in one native call) against torch 1.13 eager doing
// the same step (bench/peers/rd_step_torch.py: the original BN_layer + de_resnet), on the same
// shapes (random teacher taps of a SIZE x SIZE image, batch 16), same thread count, interleaved
// rounds in one run; per round one warm-up step then STEPS timed steps; figures are the best
// round's mean. The teacher is not in the step on either side (its taps are computed once per
// image: see lib/methods/reverse-distillation.ts); its forward is timed apart after the rounds
// (--teacher no skips it). Results: '## Reverse Distillation' in bench/RESULTS.md.
//   npx tsc -p tsconfig.json && node bench/rd-step.mjs [--kind resnet50_v2] [--size 128] [--batch 16] [--steps 3] [--rounds 2] [--threads 2] [--teacher no]
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Backbone, setNumThreads, TrainRd } from '../dist/lib/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    kind: { type: 'string', default: 'resnet50_v2' },
    size: { type: 'string', default: '128' },
    batch: { type: 'string', default: '16' },
    steps: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '2' },
    threads: { type: 'string', default: '2' },
    teacher: { type: 'string', default: 'yes' },
  },
});
const size = Number(values.size), batch = Number(values.batch), steps = Number(values.steps), rounds = Number(values.rounds), threads = Number(values.threads);
const load = () => loadavg().map((v) => v.toFixed(2)).join(', ');
const loadBefore = load();
setNumThreads(threads);
const rd = new TrainRd(values.kind);
rd.initialize(0);
const ch = rd.tapChannels();
const taps = ch.map((c, i) => {
  const s = size / (4 << i);
  return { data: Float32Array.from({ length: batch * c * s * s }, () => Math.random()), shape: [batch, c, s, s] };
});
const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
const ours = [];
const oursSplit = [];
const peer = [];
for (let r = 0; r < rounds; r++) {
  await rd.trainStep(taps, { lr: 0.005, betas: [0.5, 0.999] });
  const t = [];
  const parts = [];
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    parts.push((await rd.trainStep(taps, { lr: 0.005, betas: [0.5, 0.999] })).seconds);
    t.push((performance.now() - t0) / 1000);
  }
  ours.push(mean(t));
  oursSplit.push(Object.fromEntries(['forward', 'loss', 'backward', 'adam'].map((k) => [k, mean(parts.map((p) => p[k]))])));
  const kind = values.kind === 'resnet50_v2' ? 'resnet50' : values.kind;
  const out = execFileSync('/usr/bin/python3', [join(root, 'bench', 'peers', 'rd_step_torch.py'), kind, String(threads), String(size), String(batch), String(steps)],
    { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads) } });
  const rows = JSON.parse(out.trim().split('\n').pop());
  peer.push({ step: mean(rows.map((x) => x.step)), forward: mean(rows.map((x) => x.forward)), loss: mean(rows.map((x) => x.loss)), backward: mean(rows.map((x) => x.backward)), adam: mean(rows.map((x) => x.adam)) });
  console.error(`round ${r + 1}: anomalens ${ours[r].toFixed(2)} s/step, torch ${peer[r].step.toFixed(2)} s/step`);
}
const best = Math.min(...ours);
const bestPeer = peer.reduce((a, b) => (b.step < a.step ? b : a));
console.log(`${values.kind} student, ${size}x${size} input, batch ${batch}, ${threads} threads, ${rounds} interleaved rounds of ${steps} steps; load ${loadBefore} before, ${load()} after`);
console.log('| impl | s / step (each round) | best | images/s | split of the best round: forward / loss / backward / Adam |');
console.log('|---|---|---|---|---|');
console.log(`| anomalens | ${ours.map((v) => v.toFixed(2)).join(' / ')} | ${best.toFixed(2)} | ${(batch / best).toFixed(2)} | ${(() => { const b = oursSplit[ours.indexOf(best)]; return `${b.forward.toFixed(2)} / ${b.loss.toFixed(3)} / ${b.backward.toFixed(2)} / ${b.adam.toFixed(3)}`; })()} |`);
console.log(`| torch eager | ${peer.map((v) => v.step.toFixed(2)).join(' / ')} | ${bestPeer.step.toFixed(2)} | ${(batch / bestPeer.step).toFixed(2)} | ${bestPeer.forward.toFixed(2)} / ${bestPeer.loss.toFixed(3)} / ${bestPeer.backward.toFixed(2)} / ${bestPeer.adam.toFixed(3)} |`);
console.log(`speed-up (best s / step, torch / anomalens): ${(bestPeer.step / best).toFixed(2)}x`);

// The teacher's forward, the fourth part of the original's step: both fits here compute it once
// per training image (lib/methods/reverse-distillation.ts), the original every step. Timed
// apart: the ResNet-50 v2 teacher (stem + stages 1-3, ../shared/data's weights) on the same
// batch, our Backbone against torch eager (bench/peers/rd_teacher_torch.py), best of 3.
const teacherWeights = join(root, '..', 'shared', 'data', 'weights', 'resnet50v2-onnxzoo-stages1-3.safetensors');
if (values.teacher !== 'no' && !existsSync(teacherWeights)) console.log(`teacher forward: skipped (${teacherWeights} is absent)`);
else if (values.teacher !== 'no') {
  const bb = await Backbone.load({ arch: 'resnet50_v2', weights: teacherWeights });
  const input = { data: Float32Array.from({ length: batch * 3 * size * size }, () => Math.random()), shape: [batch, 3, size, size] };
  const taps = ['stage1', 'stage2', 'stage3'];
  await bb.extract(input, taps);
  let teacher = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    await bb.extract(input, taps);
    teacher = Math.min(teacher, (performance.now() - t0) / 1000);
  }
  const out = execFileSync('/usr/bin/python3', [join(root, 'bench', 'peers', 'rd_teacher_torch.py'), teacherWeights, String(threads), String(size), String(batch), '3'],
    { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads) } });
  const torchTeacher = JSON.parse(out.trim().split('\n').pop()).seconds;
  console.log(`teacher forward (ResNet-50 v2 stem + stages 1-3, batch ${batch}, ${size} px; once per image in both fits): anomalens ${teacher.toFixed(3)} s, torch eager ${torchTeacher.toFixed(3)} s (${(torchTeacher / teacher).toFixed(2)}x)`);
}
