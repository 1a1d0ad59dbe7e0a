// Child process of atomic.test.ts: repeats one kind of save for ever, alternating two versions
// A and B of the content, until the parent kills it with SIGKILL. Prints `ready <ms>` (the
// duration of one A+B cycle, measured unless given as cfg.cycle) when it starts saving, so the
// parent can aim its kill.
// Usage: node save-child.mjs <dist folder> <kind> <json config>
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dist, kind, json] = process.argv.slice(2);
const cfg = JSON.parse(json);
const lib = await import(pathToFileURL(join(dist, 'lib/index.js')).href);
const { main } = await import(pathToFileURL(join(dist, 'lib/internal.js')).href);

let step;
if (kind === 'detector') {
  const a = await lib.Detector.load(cfg.a);
  const b = await lib.Detector.load(cfg.b);
  step = (i) => (i % 2 ? b : a).save(cfg.target);
} else if (kind === 'bank') {
  const a = await lib.MemoryBank.load(cfg.a);
  const b = await lib.MemoryBank.load(cfg.b);
  step = (i) => (i % 2 ? b : a).save(cfg.target);
} else if (kind === 'cli') {
  // The CLI's own main(), so that exactly what `anomalens features|predict --out` writes is written.
  const quiet = () => true;
  process.stdout.write = quiet;
  step = async (i) => {
    const code = await main(['node', 'anomalens', ...(i % 2 ? cfg.b : cfg.a)]);
    if (code !== 0) throw new Error(`exit code ${code}`);
  };
} else throw new Error(`unknown kind ${kind}`);

// The first trial measures a cycle; later ones are told its length and start at once.
if (cfg.cycle === undefined) {
  const t0 = performance.now();
  await step(0);
  await step(1);
  cfg.cycle = Math.ceil(performance.now() - t0);
}
process.stderr.write(`ready ${cfg.cycle}\n`);
for (let i = 0; ; i++) await step(i);
