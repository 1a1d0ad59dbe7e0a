#!/usr/bin/env node
// Turns a local build of the addon into the prebuilt binary the npm package carries:
//   prebuilds/<platform>-<arch>/anomalens.node   run path $ORIGIN
//   prebuilds/<platform>-<arch>/lib*.so.*        every shared library it needs that a bare
//                                                Debian/Ubuntu lacks, each with run path $ORIGIN
//   prebuilds/<platform>-<arch>/THIRD_PARTY_NOTICES.md + licenses/   their copyright files
//   prebuilds/<platform>-<arch>/manifest.json    what was bundled, glibc/libstdc++ floors
// Runs as `prepack` (so `npm pack` / `npm publish` always carry a fresh one) and as
// `npm run build:prebuild`; `--clean` (the `postpack` hook) removes prebuilds/ again so a
// source checkout keeps loading its own build. Needs ldd, readelf, patchelf and dpkg (for the
// licence notices): Linux only.
//
// Usage: node scripts/prebuild.mjs [--from build/Release/anomalens.node] [--clean]
//   The addon is taken from --from, else $ANOMALENS_PREBUILD_FROM, else build/Release.
import { execFileSync } from 'node:child_process';
import {
  copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const target = `${process.platform}-${process.arch}`;
const prebuilds = join(root, 'prebuilds');
const out = join(prebuilds, target);

// Libraries every glibc Linux that can run Node already has (Node itself needs them): never
// bundled. Bundling libstdc++ would not even help: Node has loaded the system one first.
const SYSTEM_LIBRARIES = new Set([
  'linux-vdso.so.1', 'ld-linux-x86-64.so.2', 'ld-linux-aarch64.so.1',
  'libc.so.6', 'libm.so.6', 'libdl.so.2', 'libpthread.so.0', 'librt.so.1', 'libresolv.so.2',
  'libutil.so.1', 'libmvec.so.1', 'libanl.so.1', 'libstdc++.so.6', 'libgcc_s.so.1',
]);

// Linked statically or header-only, so no file of theirs is bundled, but their notices are
// owed: [name, Debian package whose copyright file holds the notice, licence, how used].
const EMBEDDED = [
  ['faiss', 'libfaiss-dev', 'MIT', 'linked statically into anomalens.node'],
  ['nlohmann/json', 'nlohmann-json3-dev', 'MIT', 'header-only, compiled into anomalens.node'],
];
// Licences of the libraries we expect to bundle (by soname prefix), for the notice table; an
// unknown one falls back to the License: fields of its package's copyright file.
const KNOWN_LICENCES = [
  [/^libdnnl\./, 'Apache-2.0'],
  [/^lib(open)?blas\.|^liblapack\./, 'BSD-3-Clause'],
  [/^libOpenCL\./, 'BSD-2-Clause'],
  [/^libgomp\.|^libgfortran\./, 'GPL-3.0-or-later WITH GCC-exception-3.1'],
  [/^libquadmath\./, 'LGPL-2.1-or-later'],
];

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

/** ldd of a file with the caller's LD_LIBRARY_PATH removed: [{ soname, path|null }]. */
function ldd(file) {
  const env = { ...process.env };
  delete env.LD_LIBRARY_PATH;
  delete env.LD_PRELOAD;
  const deps = [];
  for (const line of sh('ldd', [file], { env }).split('\n')) {
    const m = /^\s*(\S+)\s+=>\s+(not found|\S+)/.exec(line);
    if (m) deps.push({ soname: m[1], path: m[2] === 'not found' ? null : m[2] });
    else {
      const direct = /^\s*(\/\S+)\s+\(0x/.exec(line);
      if (direct) deps.push({ soname: basename(direct[1]), path: direct[1] });
    }
  }
  return deps;
}

/** Highest symbol version of each prefix (GLIBC_, GLIBCXX_, CXXABI_) a file requires. */
function versionNeeds(file) {
  const need = {};
  for (const m of sh('readelf', ['-V', '-W', file]).matchAll(/Name: (GLIBC|GLIBCXX|CXXABI)_([\d.]+)/g)) {
    const [, prefix, v] = m;
    if (!need[prefix] || compareVersions(v, need[prefix]) > 0) need[prefix] = v;
  }
  return need;
}

/**
 * The value node_api_module_get_api_version_v1 returns, read from its machine code (x86-64:
 * `mov $N, %eax; ret`), or NaN when the code has another shape.
 */
function declaredNapiVersion(file) {
  const sym = /^\s*\d+:\s+([0-9a-f]+)\s+\d+\s+FUNC\s+\S+\s+\S+\s+\S+\s+node_api_module_get_api_version_v1$/m
    .exec(sh('readelf', ['-W', '--dyn-syms', file]));
  if (!sym) return NaN;
  const vaddr = parseInt(sym[1], 16);
  for (const m of sh('readelf', ['-W', '-l', file]).matchAll(/^\s*LOAD\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)/gm)) {
    const [offset, start, size] = [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)];
    if (vaddr >= start && vaddr < start + size) {
      const code = readFileSync(file).subarray(offset + vaddr - start, offset + vaddr - start + 6);
      return code[0] === 0xb8 && code[5] === 0xc3 ? code.readInt32LE(1) : NaN;
    }
  }
  return NaN;
}

function compareVersions(a, b) {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  }
  return 0;
}

/** The Debian package owning a library file, with its version and source package. */
function debianPackage(path) {
  const real = realpathSync(path);
  const candidates = [path, real, join(dirname(real), basename(path)), path.replace(/^\/lib\//, '/usr/lib/')];
  for (const p of candidates) {
    try {
      const pkg = sh('dpkg', ['-S', p]).split(':')[0].trim();
      const [version, source] = sh('dpkg-query', ['-W', '-f=${Version}\t${source:Package}', pkg]).split('\t');
      return { pkg, version, source };
    } catch {
      /* try the next spelling of the path */
    }
  }
  throw new Error(`cannot tell which Debian package owns ${path}; its licence notice is needed before it can be bundled`);
}

function licenceFromCopyright(text) {
  const names = new Set();
  for (const m of text.matchAll(/^License:\s*(.+)$/gm)) names.add(m[1].trim());
  return [...names].join(', ') || 'see copyright file';
}

let stage;
function fail(message) {
  if (stage) rmSync(stage, { recursive: true, force: true });
  console.error(`prebuild: ${message}`);
  process.exit(1);
}

function clean() {
  rmSync(prebuilds, { recursive: true, force: true });
}

function build(from) {
  if (process.platform !== 'linux') fail(`packing a prebuilt binary is implemented for Linux only (this is ${target})`);
  if (!existsSync(from)) fail(`${from} is absent: build the addon first (npm run build:native)`);
  for (const tool of ['ldd', 'readelf', 'nm', 'patchelf', 'dpkg']) {
    try {
      sh('sh', ['-c', `command -v ${tool}`]);
    } catch {
      fail(`${tool} is needed to pack the prebuilt binary (Debian/Ubuntu: apt-get install patchelf binutils)`);
    }
  }
  stage = join(prebuilds, `.${target}-${process.pid}.tmp`);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(join(stage, 'licenses'), { recursive: true });

  // ldd lists the whole closure (dependencies of dependencies too), resolved as the loader
  // would on this machine.
  const deps = ldd(from);
  const missing = deps.filter((d) => d.path === null).map((d) => d.soname);
  if (missing.length) fail(`${from} needs libraries this machine does not have: ${missing.join(', ')}`);
  const bundled = deps.filter((d) => !SYSTEM_LIBRARIES.has(d.soname));
  // faiss links the generic libblas.so.3/liblapack.so.3, which Debian resolves through
  // update-alternatives: they must be OpenBLAS' OpenMP build here, or the package would ship
  // the slow reference BLAS (or a second thread pool).
  for (const d of bundled.filter((x) => /^lib(blas|lapack)\.so\./.test(x.soname))) {
    if (!realpathSync(d.path).includes('/openblas-openmp/')) {
      fail(`${d.soname} resolves to ${realpathSync(d.path)}, not OpenBLAS (OpenMP): ` +
        `update-alternatives --set ${d.soname}-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/openblas-openmp/${d.soname}`);
    }
  }

  const addon = join(stage, 'anomalens.node');
  copyFileSync(from, addon);
  try {
    sh('strip', ['--strip-unneeded', addon]);
  } catch {
    /* strip is optional: only the size changes */
  }
  const libraries = [];
  for (const { soname, path } of bundled) {
    const dest = join(stage, soname);
    copyFileSync(realpathSync(path), dest);
    const deb = debianPackage(path);
    libraries.push({ soname, from: realpathSync(path), package: deb.pkg, version: deb.version, source: deb.source });
  }
  // $ORIGIN on every file: the addon finds its libraries, and each library finds its own
  // dependencies (run paths are not inherited), e.g. OpenBLAS -> libgfortran -> libquadmath.
  for (const f of [addon, ...bundled.map((d) => join(stage, d.soname))]) {
    sh('patchelf', ['--set-rpath', '$ORIGIN', f]);
  }

  // Proof before it is shipped: with LD_LIBRARY_PATH unset, everything outside the system set
  // resolves inside the folder.
  for (const f of [addon, ...bundled.map((d) => join(stage, d.soname))]) {
    for (const d of ldd(f)) {
      if (SYSTEM_LIBRARIES.has(d.soname)) continue;
      if (d.path === null || dirname(realpathSync(d.path)) !== realpathSync(stage)) {
        fail(`${basename(f)}: ${d.soname} resolves to ${d.path ?? 'nothing'}, not inside the prebuild folder`);
      }
    }
  }

  // Licence notices: the Debian copyright file of every package a file came from, plus those
  // of the libraries compiled in.
  const rows = [];
  // Packages built from one source often share one copyright file (libgomp1, libgfortran5
  // and libquadmath0 all point at gcc-12-base's): copy each distinct file once.
  const copyNotice = (pkg) => {
    const src = join('/usr/share/doc', pkg, 'copyright');
    if (!existsSync(src)) fail(`${src} is absent: cannot ship ${pkg} without its licence notice`);
    const dest = join('licenses', `${basename(dirname(realpathSync(src)))}.copyright`);
    copyFileSync(realpathSync(src), join(stage, dest));
    return { dest, text: readFileSync(src, 'utf8') };
  };
  for (const lib of libraries) {
    const { dest, text } = copyNotice(lib.package);
    const licence = KNOWN_LICENCES.find(([re]) => re.test(lib.soname))?.[1] ?? licenceFromCopyright(text);
    rows.push(`| ${lib.soname} | ${lib.package} ${lib.version} (source: ${lib.source}) | ${licence} | [${dest}](${dest}) |`);
  }
  for (const [name, pkg, licence, how] of EMBEDDED) {
    let version;
    try {
      version = sh('dpkg-query', ['-W', '-f=${Version}', pkg]);
    } catch {
      continue;  // not installed, so not compiled in
    }
    const { dest } = copyNotice(pkg);
    rows.push(`| ${name} (${how}) | ${pkg} ${version} | ${licence} | [${dest}](${dest}) |`);
  }
  const napiLicense = join(root, 'node_modules', 'node-addon-api', 'LICENSE.md');
  if (existsSync(napiLicense)) {
    copyFileSync(napiLicense, join(stage, 'licenses', 'node-addon-api.LICENSE.md'));
    rows.push('| node-addon-api (header-only, compiled into anomalens.node) | npm node-addon-api | MIT | [licenses/node-addon-api.LICENSE.md](licenses/node-addon-api.LICENSE.md) |');
  }

  const needs = {};
  for (const f of [addon, ...bundled.map((d) => join(stage, d.soname))]) {
    for (const [prefix, v] of Object.entries(versionNeeds(f))) {
      if (!needs[prefix] || compareVersions(v, needs[prefix]) > 0) needs[prefix] = v;
    }
  }
  const undefinedNapi = sh('nm', ['-D', '--undefined-only', addon]).split('\n')
    .map((l) => l.trim().split(/\s+/).pop()).filter((s) => s && /^(napi|node_api)_/.test(s));
  // The Node-API version the addon declares (node-addon-api's exported getter returns
  // NAPI_VERSION): 8 runs on every Node from 12.22, so one binary serves Node 18, 20 and 22.
  const napiVersion = declaredNapiVersion(addon);
  if (!(napiVersion >= 1 && napiVersion <= 8)) fail(`the addon declares Node-API version ${napiVersion}; it must be <= 8 (NAPI_VERSION in CMakeLists.txt)`);
  const manifest = {
    target,
    libc: 'glibc',
    napiVersion,
    requires: { glibc: needs.GLIBC, glibcxx: needs.GLIBCXX, cxxabi: needs.CXXABI },
    builtOn: readFileSync('/etc/os-release', 'utf8').match(/^PRETTY_NAME="?([^"\n]*)/m)?.[1] ?? 'unknown',
    napiFunctions: undefinedNapi.sort(),
    libraries,
  };
  writeFileSync(join(stage, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);

  writeFileSync(join(stage, 'THIRD_PARTY_NOTICES.md'), [
    `# Third-party software in prebuilds/${target}`,
    '',
    'anomalens itself is Apache-2.0. This folder also carries, unmodified except for their run',
    'path (set to `$ORIGIN` with patchelf), shared libraries taken from Debian packages, and the',
    'addon has libraries compiled into it. Each one\'s full copyright and licence text is in',
    '`licenses/`. The corresponding source code of every Debian package is available from',
    '`https://sources.debian.org/src/<source package>/<version>/` (or `apt-get source`) for the',
    'versions listed; the LGPL-licensed libquadmath is a separate shared library that you may',
    'replace with your own build.',
    '',
    '| file | from | licence | notice |',
    '|---|---|---|---|',
    ...rows,
    '',
  ].join('\n'));

  rmSync(out, { recursive: true, force: true });
  renameSync(stage, out);
  const size = [addon, ...bundled.map((d) => join(stage, d.soname))]
    .map((f) => statSync(join(out, basename(f))).size).reduce((a, b) => a + b, 0);
  console.error(`prebuild: ${relative(root, out)}: anomalens.node + ${bundled.map((d) => d.soname).join(', ')} ` +
    `(${(size / 2 ** 20).toFixed(1)} MiB; needs glibc >= ${needs.GLIBC}, GLIBCXX >= ${needs.GLIBCXX})`);
}

const args = process.argv.slice(2);
if (args.includes('--clean')) {
  clean();
} else {
  const i = args.indexOf('--from');
  const from = resolve(i >= 0 ? args[i + 1] : process.env.ANOMALENS_PREBUILD_FROM || join(root, 'build', 'Release', 'anomalens.node'));
  build(from);
}
