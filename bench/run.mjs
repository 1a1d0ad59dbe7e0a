#!/usr/bin/env node
// Runs every bench/*.bench.mjs (or those named on the command line) in turn. Benches import
// the built package (dist/), so run `npm run build` first. Results: bench/RESULTS.md.
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.mjs'))
  .filter((f) => wanted.length === 0 || wanted.some((w) => f.startsWith(w)))
  .sort();
for (const f of files) {
  console.log(`\n=== ${f} ===`);
  await import(pathToFileURL(join(here, f)).href);
}
