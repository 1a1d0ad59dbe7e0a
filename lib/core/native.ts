/**
 * Loads the native addon. Order: $ANOMALENS_NATIVE (an explicit path, and then the only one
 * tried), the prebuilt binary the package carries (prebuilds/<platform>-<arch>, linux-x64
 * glibc), then a local source build (build/Release). When none loads, the error lists every
 * attempt with its reason and says exactly what fixes it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NativeAddon } from './addon.js';
import { AnomalensError } from './errors.js';

export type { NativeAddon } from './addon.js';

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

const target = `${process.platform}-${process.arch}`;
/** The folder of the prebuilt binary for this platform (present for linux-x64 only). */
export const prebuiltDir = join(packageRoot, 'prebuilds', target);
/** Where a source build puts the addon. */
export const localBuild = join(packageRoot, 'build', 'Release', 'anomalens.node');

/** Where the addon may be, in the order tried. */
export function addonCandidates(): string[] {
  if (process.env.ANOMALENS_NATIVE) return [process.env.ANOMALENS_NATIVE];
  return [join(prebuiltDir, 'anomalens.node'), localBuild];
}

let cached: NativeAddon | undefined;
/** The loaded path, for diagnostics. */
export let loadedFrom: string | undefined;

/** The glibc version of this process, or undefined on musl and non-Linux systems. */
function glibcVersion(): string | undefined {
  if (process.platform !== 'linux') return undefined;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime;
}

const DEBIAN_PACKAGES = 'cmake g++ make libdnnl-dev libfaiss-dev libopenblas-openmp-dev nlohmann-json3-dev';

/** What to do about one failed attempt, from the loader's message. */
function adviceFor(path: string, message: string): string | undefined {
  const inPrebuilt = path.startsWith(prebuiltDir + sep);
  if (inPrebuilt && process.platform === 'linux' && !glibcVersion()) {
    return 'the prebuilt binary is for glibc Linux and this system uses another C library (musl?): build from source';
  }
  const lib = /([\w.+-]+\.so[\w.]*): cannot open shared object file/.exec(message)?.[1];
  if (lib && inPrebuilt) {
    return existsSync(join(prebuiltDir, lib))
      ? `${lib} is in ${prebuiltDir} but did not load: reinstall anomalens (rm -rf node_modules/anomalens && npm install)`
      : `${lib} should ship in ${prebuiltDir} but is missing (was the package pruned or copied without it?): reinstall anomalens`;
  }
  if (lib) return `${lib} is missing: install the Debian/Ubuntu package that provides it (apt-file search ${lib}), or use the prebuilt binary by removing ${dirname(path)}`;
  const version = /version [`']((GLIBC|GLIBCXX|CXXABI)_[\d.]+)' not found/.exec(message);
  if (version) {
    const which = version[2] === 'GLIBC' ? 'glibc' : 'libstdc++';
    return `this system's ${which} is older than the binary needs (${version[1]}; glibc here: ${glibcVersion() ?? 'unknown'}): the prebuilt binary needs Debian 12 / Ubuntu 22.04 / RHEL 9 or newer; on older systems build from source`;
  }
  if (/wrong ELF class|invalid ELF header/.test(message)) {
    return `${path} is not a binary for ${target}: remove it and reinstall`;
  }
  return undefined;
}

function installedAsDependency(): boolean {
  return packageRoot.split(sep).includes('node_modules');
}

export function native(): NativeAddon {
  if (cached) return cached;
  const failures: string[] = [];
  const advice: string[] = [];
  for (const path of addonCandidates()) {
    if (!existsSync(path)) {
      const why = path.startsWith(prebuiltDir + sep) && target !== 'linux-x64'
        ? `not present (prebuilt binaries exist for linux-x64 only)`
        : 'not present';
      failures.push(`  ${path}: ${why}`);
      continue;
    }
    try {
      cached = require(path) as NativeAddon;
      loadedFrom = path;
      return cached;
    } catch (err) {
      const message = (err as Error).message.split('\n')[0];
      failures.push(`  ${path}: ${message}`);
      const a = adviceFor(path, message);
      if (a) advice.push(`  - ${a}`);
    }
  }
  const explicit = process.env.ANOMALENS_NATIVE;
  const buildCommand = installedAsDependency()
    ? 'npm install --save-dev cmake-js node-addon-api && ANOMALENS_BUILD_FROM_SOURCE=1 npm rebuild --foreground-scripts anomalens'
    : 'npm run build:native';
  throw new AnomalensError(
    'ERR_NATIVE_LOAD',
    [
      `anomalens could not load its native addon for ${target} (Node ${process.versions.node}, ` +
        `Node-API ${process.versions.napi}, glibc ${glibcVersion() ?? 'none'}). Tried:`,
      ...failures,
      'To fix:',
      ...(explicit ? [`  - ANOMALENS_NATIVE=${explicit} is set, so nothing else was tried: fix that path or unset it`] : []),
      ...advice,
      ...(target === 'linux-x64' && !explicit ? ['  - reinstall so the prebuilt binary is present: rm -rf node_modules/anomalens && npm install'] : []),
      `  - or build from source (Debian/Ubuntu): apt-get install ${DEBIAN_PACKAGES} && ${buildCommand}`,
    ].join('\n'),
  );
}
