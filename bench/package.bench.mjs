// Package: tarball size (by component), `npm pack` time, `npm install <tarball>` time into an
// empty project with a warm npm cache and with an empty one (sharp and commander then come
// from the registry), and the cost of loading the addon: the prebuilt binary with its bundled
// libraries ($ORIGIN) against the in-tree build with the system's (ld.so.cache), in fresh
// processes. Whole processes are timed (median of ROUNDS), not tinybench tasks: the unit of
// work is an npm or node process. Results: '## Package' in bench/RESULTS.md.
//   npm run build && node bench/run.mjs package       (ANOMALENS_NATIVE picks the addon packed)
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ROUNDS = Number(process.env.PACKAGE_BENCH_ROUNDS ?? 3);
const addon = process.env.ANOMALENS_NATIVE ?? join(root, 'build', 'Release', 'anomalens.node');
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) =>
  !/^npm_/i.test(k) && !['INIT_CWD', 'ANOMALENS_NATIVE', 'LD_LIBRARY_PATH'].includes(k)));

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mib = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;
function timed(fn) {
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
}

const work = mkdtempSync(join(tmpdir(), 'anomalens-package-bench-'));
try {
  let info;
  const packS = timed(() => {
    info = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', work], {
      cwd: root, encoding: 'utf8', env: { ...env, ANOMALENS_PREBUILD_FROM: addon }, stdio: ['ignore', 'pipe', 'ignore'],
    }))[0];
  });
  const tarball = join(work, info.filename);
  console.log(`tarball ${mib(info.size)} (${info.size} bytes), unpacked ${mib(info.unpackedSize)}, ${info.entryCount} files; npm pack ${packS.toFixed(1)} s`);
  const groups = {};
  for (const f of info.files) {
    const key = f.path.startsWith('prebuilds/') ? f.path.replace(/^prebuilds\/[^/]+\//, '').replace(/^licenses\/.*/, 'licenses/') : f.path.split('/')[0] + '/';
    groups[key] = (groups[key] ?? 0) + f.size;
  }
  for (const [k, v] of Object.entries(groups).sort((a, b) => b[1] - a[1])) console.log(`  ${k.padEnd(24)} ${mib(v)}`);

  const install = (cache) => {
    const project = join(work, `p${Math.random().toString(36).slice(2)}`);
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), '{"name":"p","private":true,"type":"module"}');
    const args = ['install', tarball, '--no-audit', '--no-fund', '--loglevel=error', ...(cache ? ['--cache', cache] : ['--prefer-offline'])];
    const s = timed(() => execFileSync('npm', args, { cwd: project, env, stdio: 'ignore' }));
    return { s, project };
  };
  const warm = [];
  let project;
  for (let i = 0; i < ROUNDS; i++) ({ s: warm[i], project } = install());
  const cold = [];
  for (let i = 0; i < ROUNDS; i++) cold.push(install(mkdtempSync(join(work, 'cache-'))).s);
  const du = (dir) => readdirSync(dir, { recursive: true }).map((f) => statSync(join(dir, f))).filter((s) => s.isFile()).reduce((a, s) => a + s.size, 0);
  const nm = join(project, 'node_modules');
  console.log(`npm install <tarball>: ${median(warm).toFixed(1)} s warm cache, ${median(cold).toFixed(1)} s empty cache (median of ${ROUNDS}); ` +
    `node_modules ${mib(du(nm))}: anomalens ${mib(du(join(nm, 'anomalens')))}, sharp + @img ${mib(du(join(nm, 'sharp')) + du(join(nm, '@img')))}`);

  // Load cost: dlopen of the addon and everything it links, in a fresh node each time.
  const load = (path) => {
    const script = `const t=process.hrtime.bigint();require(${JSON.stringify(path)});console.log(Number(process.hrtime.bigint()-t)/1e6)`;
    const xs = [];
    for (let i = 0; i < ROUNDS * 3; i++) xs.push(Number(execFileSync(process.execPath, ['-e', script], { env, encoding: 'utf8' })));
    return median(xs);
  };
  const prebuiltMs = load(join(nm, 'anomalens', 'prebuilds', 'linux-x64', 'anomalens.node'));
  const systemMs = load(addon);
  console.log(`addon load (require, median of ${ROUNDS * 3} fresh processes): prebuilt + bundled libs ${prebuiltMs.toFixed(1)} ms, ` +
    `in-tree build + system libs ${systemMs.toFixed(1)} ms (ratio ${(systemMs / prebuiltMs).toFixed(2)})`);
  console.log(`load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
