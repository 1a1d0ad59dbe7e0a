/**
 * Loads the native addon. Order: $ANOMALENS_NATIVE (an explicit path), the prebuilt binary
 * for this platform, then a local source build (build/Release). When none loads, the error
 * lists every attempt with its reason and the exact commands that fix it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AnomalensError } from './errors.js';

const require = createRequire(import.meta.url);

/** The package root: the nearest folder above this file with anomalens' package.json. */
export const packageRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if (JSON.parse(readFileSync(pj, 'utf8')).name === 'anomalens') return dir;
      } catch {
        /* keep looking */
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new AnomalensError('ERR_NATIVE_LOAD', 'cannot find the anomalens package root');
    dir = up;
  }
})();

/** Where the addon may be, in the order tried. */
export function addonCandidates(): string[] {
  const out: string[] = [];
  if (process.env.ANOMALENS_NATIVE) out.push(process.env.ANOMALENS_NATIVE);
  out.push(join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, 'anomalens.node'));
  out.push(join(packageRoot, 'build', 'Release', 'anomalens.node'));
  return out;
}

// The addon's raw interface; typed loosely here and precisely by each lib/ module.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type NativeAddon = Record<string, any>;

let cached: NativeAddon | undefined;
/** The loaded path, for diagnostics. */
export let loadedFrom: string | undefined;

export function native(): NativeAddon {
  if (cached) return cached;
  const failures: string[] = [];
  for (const path of addonCandidates()) {
    if (!existsSync(path)) {
      failures.push(`  ${path}: not present`);
      continue;
    }
    try {
      cached = require(path) as NativeAddon;
      loadedFrom = path;
      return cached;
    } catch (err) {
      failures.push(`  ${path}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  throw new AnomalensError(
    'ERR_NATIVE_LOAD',
    [
      `anomalens could not load its native addon for ${process.platform}-${process.arch} (Node ${process.versions.node}). Tried:`,
      ...failures,
      'To fix:',
      `  - reinstall so the prebuilt binary is present: npm install anomalens`,
      `  - or build from source (Debian/Ubuntu): apt-get install cmake g++ libdnnl-dev libfaiss-dev libopenblas-openmp-dev nlohmann-json3-dev && npm run build:native`,
      `  - a "cannot open shared object file" above names a missing library: install it or use the prebuilt binary`,
    ].join('\n'),
  );
}
