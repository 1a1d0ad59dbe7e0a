/**
 * The npm package: `npm pack` (its prepack hook bundles the prebuilt binary), then
 * `npm install <tarball>` into an empty project, then real calls from that project with no
 * ANOMALENS_NATIVE and no LD_LIBRARY_PATH, proving that nothing outside glibc, libstdc++ and
 * libgcc comes from the system: by ldd/readelf, by the libraries actually mapped, and (where
 * mount namespaces are allowed) by running with the system library folder replaced by one
 * holding only those. The addon packed is $ANOMALENS_NATIVE when set, else build/Release.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backbone, readSafetensors, writeSafetensors } from '../lib/index.js';
import { seededInput, seededTensor } from './helpers/seeded.js';
import { tempDir } from './helpers/tmp.js';

const root = resolve(import.meta.dirname, '..');
const linuxX64 = process.platform === 'linux' && process.arch === 'x64';
const addon = process.env.ANOMALENS_NATIVE ?? join(root, 'build', 'Release', 'anomalens.node');

// glibc, libstdc++ and libgcc: every system that runs Node has them, so they are not bundled.
const SYSTEM = new Set([
  'linux-vdso.so.1', 'ld-linux-x86-64.so.2', 'libc.so.6', 'libm.so.6', 'libdl.so.2', 'libpthread.so.0',
  'librt.so.1', 'libresolv.so.2', 'libutil.so.1', 'libmvec.so.1', 'libanl.so.1', 'libstdc++.so.6', 'libgcc_s.so.1',
]);

/** The environment of a user's shell: none of npm's or our overrides leak into the children. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const keep = /^npm_config_(cache|registry|userconfig|proxy|https_proxy|strict_ssl|cafile)$/i;
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) && !keep.test(k)) continue;
    if (['INIT_CWD', 'ANOMALENS_NATIVE', 'ANOMALENS_PREBUILD_FROM', 'LD_LIBRARY_PATH', 'LD_PRELOAD', 'NODE_OPTIONS'].includes(k)) continue;
    if (k.startsWith('VITEST')) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** True for a path or soname of a glibc/libstdc++/libgcc library (libstdc++.so.6.0.30 too). */
function isSystem(path: string): boolean {
  const name = basename(path);
  return [...SYSTEM].some((s) => name === s || (name.startsWith(`${s}.`) && /^[\d.]+$/.test(name.slice(s.length + 1))));
}

function ldd(file: string): { soname: string; path: string | null }[] {
  const out = execFileSync('ldd', [file], { encoding: 'utf8', env: userEnv() });
  const deps: { soname: string; path: string | null }[] = [];
  for (const line of out.split('\n')) {
    const m = /^\s*(\S+)\s+=>\s+(not found|\S+)/.exec(line);
    if (m) deps.push({ soname: m[1], path: m[2] === 'not found' ? null : m[2] });
    else if (/^\s*\/\S+\s+\(0x/.test(line)) deps.push({ soname: basename(line.trim().split(/\s+/)[0]), path: line.trim().split(/\s+/)[0] });
  }
  return deps;
}

// Resnet18 stem + layer1 + layer2 (layer2 has the downsample branch), torchvision names.
function resnet18Tensors(): [string, number[]][] {
  const bn = (p: string, c: number): [string, number[]][] =>
    ['weight', 'bias', 'running_mean', 'running_var'].map((s) => [`${p}.${s}`, [c]]);
  const t: [string, number[]][] = [['conv1.weight', [64, 3, 7, 7]], ...bn('bn1', 64)];
  const block = (p: string, cin: number, c: number, down: boolean) => {
    t.push([`${p}.conv1.weight`, [c, cin, 3, 3]], ...bn(`${p}.bn1`, c), [`${p}.conv2.weight`, [c, c, 3, 3]], ...bn(`${p}.bn2`, c));
    if (down) t.push([`${p}.downsample.0.weight`, [c, cin, 1, 1]], ...bn(`${p}.downsample.1`, c));
  };
  block('layer1.0', 64, 64, false);
  block('layer1.1', 64, 64, false);
  block('layer2.0', 64, 128, true);
  block('layer2.1', 128, 128, false);
  return t;
}

const INPUT_SHAPE: [number, number, number, number] = [1, 3, 64, 80];

// The consumer's script: a forward pass, its output written back, and every shared object
// the process mapped.
const CONSUMER_SCRIPT = `
import { readFileSync } from 'node:fs';
import { Backbone, readSafetensors, writeSafetensors } from 'anomalens';
const [weights, input, out] = process.argv.slice(2);
try {
  const x = (await readSafetensors(input)).tensors.input;
  const bb = await Backbone.load({ arch: 'resnet18', weights });
  const f = await bb.extract({ data: x.data, shape: x.shape }, ['layer1', 'layer2']);
  await writeSafetensors(out, { layer1: f.layer1, layer2: f.layer2 });
  const maps = readFileSync('/proc/self/maps', 'utf8').split('\\n').map((l) => l.split(/\\s+/)[5])
    .filter((p) => p && /\\.so(\\.|$)|\\.node$/.test(p));
  console.log(JSON.stringify({ ok: true, maps: [...new Set(maps)] }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, code: err.code, message: err.message }));
}
`;

describe.skipIf(!linuxX64)('npm package (linux-x64 prebuilt)', () => {
  const tmp = tempDir('anomalens-package-');
  afterAll(() => {
    tmp.cleanup();
    // postpack removes prebuilds/; if packing failed half-way, do it here, or the in-tree
    // loader (prebuilt first) would keep loading that copy instead of build/Release.
    rmSync(join(root, 'prebuilds'), { recursive: true, force: true });
  });
  const project = join(tmp.dir, 'consumer');
  const installed = join(project, 'node_modules', 'anomalens');
  const prebuilt = join(installed, 'prebuilds', 'linux-x64');
  let tarball = '';
  let packed: { path: string; size: number }[] = [];
  const weights = join(tmp.dir, 'resnet18-stages1-2.safetensors');
  const input = join(tmp.dir, 'input.safetensors');

  beforeAll(async () => {
    if (!existsSync(addon)) throw new Error(`${addon} is absent: run npm run build (or set ANOMALENS_NATIVE) first`);
    let t0 = performance.now();
    const json = execFileSync('npm', ['pack', '--json', '--pack-destination', tmp.dir], {
      cwd: root, encoding: 'utf8', env: userEnv({ ANOMALENS_PREBUILD_FROM: addon }), stdio: ['ignore', 'pipe', 'pipe'],
    });
    const info = JSON.parse(json)[0];
    tarball = join(tmp.dir, info.filename);
    packed = info.files;
    console.log(`npm pack: ${(info.size / 2 ** 20).toFixed(1)} MiB tarball, ${(info.unpackedSize / 2 ** 20).toFixed(1)} MiB unpacked, ` +
      `${info.entryCount} files, ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    t0 = performance.now();
    execFileSync('npm', ['install', tarball, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], {
      cwd: project, env: userEnv(), stdio: ['ignore', 'pipe', 'pipe'],
    });
    console.log(`npm install <tarball>: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    writeFileSync(join(project, 'forward.mjs'), CONSUMER_SCRIPT);

    const w: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [name, shape] of resnet18Tensors()) w[name] = { shape, data: seededTensor(name, shape) };
    await writeSafetensors(weights, w);
    await writeSafetensors(input, { input: { shape: INPUT_SHAPE, data: seededInput(INPUT_SHAPE) } });
  });

  it('the tarball holds the built library, the prebuilt binary with its libraries and notices, and no tests, fixtures or bench', () => {
    const paths = packed.map((f) => f.path);
    for (const p of ['package.json', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'scripts/install.mjs', '.ci/debian-build.txt', 'CMakeLists.txt',
      'prebuilds/linux-x64/anomalens.node', 'prebuilds/linux-x64/THIRD_PARTY_NOTICES.md', 'prebuilds/linux-x64/manifest.json'])
      expect(paths).toContain(p);
    expect(paths.filter((p) => /^(test|bench|build[^/]*|lib|scripts\/prebuild)\b|fixtures|\.map$|\.tgz$|node_modules/.test(p))).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(prebuilt, 'manifest.json'), 'utf8'));
    expect(manifest.napiVersion).toBe(8);
    expect(manifest.libraries.length).toBeGreaterThan(0);
    const notices = readFileSync(join(prebuilt, 'THIRD_PARTY_NOTICES.md'), 'utf8');
    for (const lib of manifest.libraries) {
      expect(paths).toContain(`prebuilds/linux-x64/${lib.soname}`);
      expect(notices).toContain(`| ${lib.soname} |`);
    }
    for (const m of notices.matchAll(/\]\((licenses\/[^)]+)\)/g)) expect(statSync(join(prebuilt, m[1])).size).toBeGreaterThan(100);
  });

  it('every dependency outside glibc/libstdc++/libgcc resolves inside the installed package (ldd, readelf)', () => {
    const manifest = JSON.parse(readFileSync(join(prebuilt, 'manifest.json'), 'utf8'));
    const files = ['anomalens.node', ...manifest.libraries.map((l: { soname: string }) => l.soname)];
    for (const f of files) {
      const dynamic = execFileSync('readelf', ['-d', '-W', join(prebuilt, f)], { encoding: 'utf8' });
      expect(/\((?:RUNPATH|RPATH)\)\s+Library r\w+: \[(.*)\]/.exec(dynamic)?.[1], f).toBe('$ORIGIN');
      for (const d of ldd(join(prebuilt, f))) {
        if (SYSTEM.has(d.soname)) continue;
        expect(d.path && dirname(realpathSync(d.path)), `${f} -> ${d.soname}`).toBe(realpathSync(prebuilt));
      }
    }
    // Node-API 8 only: nothing from later versions (node_api_*) is imported.
    const imports = execFileSync('nm', ['-D', '--undefined-only', join(prebuilt, 'anomalens.node')], { encoding: 'utf8' });
    expect(imports.split('\n').filter((l) => /\bnode_api_/.test(l))).toEqual([]);
  });

  it('runs a forward pass from the installed package, equal to the in-tree build, mapping only its own or system libraries', async () => {
    const out = join(tmp.dir, 'features-installed.safetensors');
    const r = spawnSync(process.execPath, ['forward.mjs', weights, input, out], { cwd: project, env: userEnv(), encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({ ok: true });
    const foreign = (result.maps as string[]).filter((p) => !p.startsWith(prebuilt + '/') && !isSystem(p) &&
      !p.startsWith(join(project, 'node_modules', '@img') + '/'));  // sharp's own prebuilt libvips
    expect(foreign).toEqual([]);
    expect(result.maps).toContain(join(prebuilt, 'anomalens.node'));

    // The twin: the same weights and input through the in-tree addon.
    const bb = await Backbone.load({ arch: 'resnet18', weights });
    const want = await bb.extract({ data: seededInput(INPUT_SHAPE), shape: INPUT_SHAPE }, ['layer1', 'layer2']);
    const got = (await readSafetensors(out)).tensors;
    for (const tap of ['layer1', 'layer2'] as const) {
      expect(got[tap].shape).toEqual(want[tap].shape);
      let maxRel = 0;
      for (let i = 0; i < want[tap].data.length; i++)
        maxRel = Math.max(maxRel, Math.abs(got[tap].data![i] - want[tap].data[i]) / (Math.abs(want[tap].data[i]) + 1e-3));
      expect(maxRel).toBeLessThan(1e-5);
    }
    expect(want.layer2.shape).toEqual([1, 128, 8, 10]);
  });

  // The bin the README shows, once the CLI exists (package.json's bin points at it).
  const cli = join(installed, 'dist', 'lib', 'cli', 'cli.js');
  function runFeatures(run: (args: string[]) => ReturnType<typeof spawnSync>, out: string) {
    const r = run([cli, 'features', '--arch', 'resnet18', '--weights', weights, '--taps', 'layer1,layer2', '--input', input, '--out', out]);
    expect(r.stderr, String(r.stdout)).toBe('');
    expect(r.status).toBe(0);
  }

  it('anomalens features runs from the installed bin and writes the same features', async (ctx) => {
    if (!existsSync(cli)) return ctx.skip('dist/lib/cli/cli.js is not in the package yet');
    const out = join(tmp.dir, 'features-cli.safetensors');
    runFeatures((args) => spawnSync(join(project, 'node_modules', '.bin', 'anomalens'), args.slice(1), { cwd: project, env: userEnv(), encoding: 'utf8' }), out);
    const got = (await readSafetensors(out)).tensors;
    const want = (await readSafetensors(join(tmp.dir, 'features-installed.safetensors'))).tensors;
    for (const tap of ['layer1', 'layer2']) {
      expect(got[tap].shape).toEqual(want[tap].shape);
      expect(Array.from(got[tap].data!.subarray(0, 256))).toEqual(Array.from(want[tap].data!.subarray(0, 256)));
    }
  });

  // A root whose multiarch library folder holds only glibc, libstdc++, libgcc and what node
  // itself links: what a bare Debian/Ubuntu offers. Needs a private mount namespace.
  const bare = join(tmp.dir, 'bare-lib');
  function inBareRoot(args: string[]): ReturnType<typeof spawnSync> {
    const node = realpathSync(process.execPath);
    const keep = new Map<string, string>();
    for (const d of ldd(node)) if (d.path) keep.set(d.soname, d.path);
    const libDir = dirname(realpathSync(keep.get('libc.so.6')!));
    for (const soname of [...SYSTEM, 'libnss_files.so.2', 'libnss_dns.so.2'])
      if (existsSync(join(libDir, soname))) keep.set(soname, join(libDir, soname));
    if (!existsSync(bare)) {
      mkdirSync(bare);
      for (const [soname, path] of keep) copyFileSync(realpathSync(path), join(bare, soname));
    }
    // --inhibit-cache: libraries are found only through that folder or run paths, never
    // through /etc/ld.so.cache entries pointing elsewhere (/usr/local/lib, ...).
    const script = `mount --bind "${bare}" "${libDir}" && exec "${libDir}/ld-linux-x86-64.so.2" --inhibit-cache "$@"`;
    return spawnSync('unshare', [...unshareFlags!, 'sh', '-c', script, 'sh', node, ...args], { cwd: project, env: userEnv(), encoding: 'utf8' });
  }
  // Root may make a mount namespace directly; otherwise try a user namespace.
  const unshareFlags = !linuxX64 ? undefined : [['-m'], ['-r', '-m']].find((flags) =>
    spawnSync('unshare', [...flags, 'sh', '-c', 'd=$(mktemp -d) && mount --bind "$d" "$d"; s=$?; rmdir "$d"; exit $s']).status === 0);
  const canUnshare = unshareFlags !== undefined;

  it.skipIf(!canUnshare)('runs with the system library folder reduced to glibc, libstdc++ and libgcc (mount namespace)', () => {
    const out = join(tmp.dir, 'features-bare.safetensors');
    const r = inBareRoot(['forward.mjs', weights, input, out]);
    expect(r.stderr).toBe('');
    const result = JSON.parse(String(r.stdout));
    expect(result).toMatchObject({ ok: true });
    expect(readFileSync(out)).toEqual(readFileSync(join(tmp.dir, 'features-installed.safetensors')));
    if (existsSync(cli)) runFeatures((args) => inBareRoot(args), join(tmp.dir, 'features-cli-bare.safetensors'));
  });

  it.skipIf(!canUnshare)('when a bundled library is missing, the loader names it and says how to fix it', () => {
    const lib = join(prebuilt, 'libgfortran.so.5');
    const saved = join(tmp.dir, 'libgfortran.so.5.saved');
    copyFileSync(lib, saved);
    rmSync(lib);
    try {
      const r = inBareRoot(['forward.mjs', weights, input, join(tmp.dir, 'never.safetensors')]);
      const result = JSON.parse(String(r.stdout));
      expect(result.code).toBe('ERR_NATIVE_LOAD');
      expect(result.message).toContain('libgfortran.so.5: cannot open shared object file');
      expect(result.message).toMatch(/libgfortran\.so\.5 should ship in .*prebuilds\/linux-x64 but is missing.*reinstall anomalens/);
      expect(result.message).toContain('ANOMALENS_BUILD_FROM_SOURCE=1 npm rebuild --foreground-scripts anomalens');
    } finally {
      copyFileSync(saved, lib);
    }
  });

  it('a source build asked for without cmake-js says exactly what to install', () => {
    const r = spawnSync(process.execPath, [join(installed, 'scripts', 'install.mjs')], {
      cwd: installed, env: userEnv({ ANOMALENS_BUILD_FROM_SOURCE: '1' }), encoding: 'utf8',
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('npm install --save-dev cmake-js node-addon-api');
    expect(r.stderr).toContain('ANOMALENS_BUILD_FROM_SOURCE=1 npm rebuild --foreground-scripts anomalens');
    expect(existsSync(join(prebuilt, 'anomalens.node'))).toBe(true);  // the prebuilt stays
  });
});
