// PANDA fit loop with and without the constant-prefix cache: ResNet-50 (torchvision structure,
// seeded weights) with conv1 / bn1 / layer1 / layer2 frozen and BN frozen, so each image's layer2
// output never changes. 'recompute' runs every step from the image (the original's loop);
// 'cached' computes the layer2 outputs once (a forward-only prefix network) and runs every step
// from them. Both do the same optimisation (the cache is exact: test/train/resnet.test.ts).
// Results: '## Training engine' in bench/RESULTS.md.
//   npx tsc -p tsconfig.json && node bench/run.mjs panda-fit
import { loadavg } from 'node:os';
import { TrainResnet, compactnessStep, setNumThreads } from '../dist/lib/index.js';
import { hashed } from './seeded-weights.mjs';

const IMAGES = Number(process.env.PANDA_FIT_IMAGES ?? 32);
const BATCH = Number(process.env.PANDA_FIT_BATCH ?? 16);
const EPOCHS = Number(process.env.PANDA_FIT_EPOCHS ?? 3);
const SIDE = Number(process.env.PANDA_FIT_SIDE ?? 112);
const THREADS = Number(process.env.PANDA_FIT_THREADS ?? 1);

function seeded(lastTap) {
  const net = new TrainResnet('resnet50', { lastTap });
  let seed = 10;
  for (const name of net.params.names()) {
    const shape = net.params.info(name).shape;
    const count = shape.reduce((a, b) => a * b, 1);
    if (shape.length === 1) net.setTensor(name, name.endsWith('.weight') ? hashed(count, seed++, 0.2).map((v) => v + 0.8) : hashed(count, seed++, 0.1));
    else net.setTensor(name, hashed(count, seed++, Math.sqrt(3 / (count / shape[0]))));
  }
  for (const name of net.buffers.names()) {
    const c = net.buffers.info(name).shape[0];
    net.setTensor(name, name.endsWith('running_var') ? hashed(c, 5000 + seed++, 0.2).map((v) => v + 1) : hashed(c, 5000 + seed++, 0.1));
  }
  return net;
}

setNumThreads(THREADS);
const per = 3 * SIDE * SIDE;
const images = hashed(IMAGES * per, 7);
const centre = hashed(2048, 4, 0.1);
const batches = [];
for (let b = 0; b < IMAGES; b += BATCH) batches.push([b, Math.min(IMAGES, b + BATCH)]);
const FROZEN = ['conv1.', 'bn1.', 'layer1.', 'layer2.'];
const load = [loadavg()[0].toFixed(2)];

async function recompute() {
  const net = seeded('layer4');
  for (const p of FROZEN) net.params.freeze(p);
  const t0 = performance.now();
  for (let e = 0; e < EPOCHS; e++)
    for (const [a, b] of batches)
      await compactnessStep(net, images.subarray(a * per, b * per), [b - a, 3, SIDE, SIDE], centre);
  return (performance.now() - t0) / 1000;
}

async function cached() {
  const t0 = performance.now();
  const prefix = seeded('layer2');
  prefix.params.freeze('');
  const l2 = [];
  for (const [a, b] of batches) l2.push(await prefix.forward(images.subarray(a * per, b * per), [b - a, 3, SIDE, SIDE]));
  const tCache = (performance.now() - t0) / 1000;
  const net = seeded('layer4');
  for (const p of FROZEN) net.params.freeze(p);
  const t1 = performance.now();
  for (let e = 0; e < EPOCHS; e++)
    for (let i = 0; i < batches.length; i++) {
      const [a, b] = batches[i];
      await compactnessStep(net, l2[i], net.tapShape('layer2', b - a, SIDE, SIDE), centre, { startTap: 'layer2' });
    }
  return { total: tCache + (performance.now() - t1) / 1000, cache: tCache };
}

const r = await recompute();
load.push(loadavg()[0].toFixed(2));
const c = await cached();
load.push(loadavg()[0].toFixed(2));
console.log(`\nPANDA fit, ResNet-50 layer3+4 trainable, ${IMAGES} images of ${SIDE} px, batch ${BATCH}, ${EPOCHS} epochs, ${THREADS} thread(s); load average ${load.join(' -> ')}`);
console.log('| loop | fit time | of which layer2 cache | speed-up |');
console.log('|---|---|---|---|');
console.log(`| recompute every epoch (original) | ${r.toFixed(1)} s | - | 1.00x |`);
console.log(`| constant-prefix cache | ${c.total.toFixed(1)} s | ${c.cache.toFixed(1)} s | ${(r / c.total).toFixed(2)}x |`);
