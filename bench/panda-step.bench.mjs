// PANDA's optimisation step: ResNet-50 (torchvision structure, seeded weights) layer3 + layer4
// trainable in eval mode, from the cached layer2 output (the constant-prefix cache), pooled,
// compactness loss, backward, clip_grad_norm_(1e-3), SGD: anomalens' compactnessStep against
// the same step in torch 1.13 (bench/peers/panda_step_peer.py), same threads, interleaved
// rounds, best of ROUNDS. Also where the time goes (forward / backward / clip + SGD).
// Results: '## Training engine' in bench/RESULTS.md.
//   npx tsc -p tsconfig.json && node bench/run.mjs panda-step
import { execFileSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TrainResnet, compactnessStep, setNumThreads } from '../dist/lib/index.js';
import { hashed } from './seeded-weights.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ROUNDS = Number(process.env.PANDA_BENCH_ROUNDS ?? 3);
const REPEATS = Number(process.env.PANDA_BENCH_REPEATS ?? 3);
const THREADS = (process.env.PANDA_BENCH_THREADS ?? '1,2').split(',').map(Number);
const N = Number(process.env.PANDA_BENCH_BATCH ?? 16);
const SIDE = Number(process.env.PANDA_BENCH_SIDE ?? 112);

const net = new TrainResnet('resnet50', { lastTap: 'layer4' });
let seed = 10;
for (const name of net.params.names()) {
  const shape = net.params.info(name).shape;
  const count = shape.reduce((a, b) => a * b, 1);
  if (shape.length === 1) net.setTensor(name, name.endsWith('.weight') ? hashed(count, seed++, 0.2).map((v) => v + 0.8) : hashed(count, seed++, 0.1));
  else net.setTensor(name, hashed(count, seed++, Math.sqrt(3 / (count / shape[0]))));
}
for (const name of net.buffers.names()) {
  const c = net.buffers.info(name).shape[0];
  net.setTensor(name, name.endsWith('running_var') ? hashed(c, seed++, 0.2).map((v) => v + 1) : hashed(c, seed++, 0.1));
}
for (const p of ['conv1.', 'bn1.', 'layer1.', 'layer2.']) net.params.freeze(p);
const shape = net.tapShape('layer2', N, SIDE, SIDE);
const x = hashed(shape.reduce((a, b) => a * b, 1), 3).map((v) => Math.max(v, 0)); // post-ReLU
const centre = hashed(2048, 4, 0.1);

const best = {};
const keep = (key, s) => (best[key] = Math.min(best[key] ?? Infinity, s));
const load = [loadavg()[0].toFixed(2)];
for (let r = 0; r < ROUNDS; r++) {
  for (const t of THREADS) {
    setNumThreads(t);
    for (let i = 0; i <= REPEATS; i++) {
      const t0 = performance.now();
      await compactnessStep(net, x, shape, centre, { startTap: 'layer2' });
      const t1 = performance.now();
      if (i > 0) keep(`ours step ${t}`, (t1 - t0) / 1000);
    }
    // the same step, timed by parts
    for (let i = 0; i < 2; i++) {
      const a = performance.now();
      const out = await net.forward(x, shape, { startTap: 'layer2' });
      const b = performance.now();
      await net.backward(out.map((v) => v * 1e-3));
      const c = performance.now();
      await net.params.clipGradNorm(1e-3);
      await net.params.sgdStep({ lr: 1e-2, momentum: 0.9, weightDecay: 5e-5 });
      const d = performance.now();
      keep(`ours forward ${t}`, (b - a) / 1000);
      keep(`ours backward ${t}`, (c - b) / 1000);
      keep(`ours optimiser ${t}`, (d - c) / 1000);
    }
    const out = execFileSync('/usr/bin/python3', [join('bench', 'peers', 'panda_step_peer.py'), String(t), String(REPEATS), String(N), String(SIDE)], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, OMP_NUM_THREADS: String(t) },
    });
    const peer = JSON.parse(out.trim().split('\n').pop());
    for (const [k, s] of Object.entries(peer.seconds)) keep(`peer ${k} ${t}`, s);
  }
  load.push(loadavg()[0].toFixed(2));
}

// Where one step's time goes (1 thread, after the rounds), by stage, op and pass.
setNumThreads(1);
await compactnessStep(net, x, shape, centre, { startTap: 'layer2' });
net.resetProfile();
await compactnessStep(net, x, shape, centre, { startTap: 'layer2' });
const prof = Object.entries(net.profile()).sort((a, b) => b[1] - a[1]);

const ms = (s) => `${(s * 1000).toFixed(0)} ms`;
console.log(`\nPANDA step, ResNet-50 layer3+layer4 from cached layer2 [${shape.join(', ')}] (${SIDE} px, batch ${N}); best of ${ROUNDS} rounds x ${REPEATS}; load average ${load.join(' -> ')}`);
console.log('| threads | anomalens step | torch 1.13 step | speed-up | images/s (anomalens) | images/s (torch) | anomalens fwd / bwd / clip+SGD | torch fwd / bwd / clip+SGD |');
console.log('|---|---|---|---|---|---|---|---|');
for (const t of THREADS) {
  const o = best[`ours step ${t}`];
  const p = best[`peer step ${t}`];
  const parts = (w) => ['forward', 'backward', 'optimiser'].map((k) => ms(best[`${w} ${k} ${t}`])).join(' / ');
  console.log(`| ${t} | ${ms(o)} | ${ms(p)} | ${(p / o).toFixed(2)}x | ${(N / o).toFixed(1)} | ${(N / p).toFixed(1)} | ${parts('ours')} | ${parts('peer')} |`);
}
console.log('\none anomalens step, 1 thread, by stage / op / pass:\n| part | time |\n|---|---|');
for (const [k, v] of prof) console.log(`| ${k} | ${ms(v)} |`);
