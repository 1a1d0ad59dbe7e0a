#!/usr/bin/env node
// The package's `install` hook. Normally it does nothing: the prebuilt binary in
// prebuilds/<platform>-<arch>/ is used as shipped. It builds from source when asked to
//   ANOMALENS_BUILD_FROM_SOURCE=1 npm rebuild --foreground-scripts anomalens   (or npm install)
//   npm rebuild anomalens --build-from-source     (npm sets npm_config_build_from_source)
// and then removes the prebuilt binary for this platform, so the loader (which prefers the
// prebuilt) picks the fresh build. In a source checkout (no prebuilds/ folder) it stays silent:
// there `npm run build` is the way.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const target = `${process.platform}-${process.arch}`;
const prebuilt = join(root, 'prebuilds', target);
const truthy = (v) => v !== undefined && v !== '' && v !== 'false' && v !== '0';
const fromSource = truthy(process.env.ANOMALENS_BUILD_FROM_SOURCE) || truthy(process.env.npm_config_build_from_source);
// The one list of build packages (shipped with the package for this message).
const debianPackages = readFileSync(join(root, '.ci', 'debian-build.txt'), 'utf8')
  .split('\n').map((l) => l.replace(/#.*/, '').trim()).filter(Boolean).join(' ');

if (!fromSource) {
  const built = existsSync(join(root, 'build', 'Release', 'anomalens.node'));
  if (existsSync(join(root, 'prebuilds')) && !existsSync(join(prebuilt, 'anomalens.node')) && !built) {
    console.warn([
      target === 'linux-x64'
        ? `anomalens: ${prebuilt} is missing: reinstall (rm -rf node_modules/anomalens && npm install), or`
        : `anomalens: no prebuilt binary for ${target}; this package carries linux-x64 (glibc) only.`,
      '  build from source (Debian/Ubuntu packages shown; other systems need the same libraries):',
      `    apt-get install ${debianPackages}`,
      '    npm install --save-dev cmake-js node-addon-api',
      '    ANOMALENS_BUILD_FROM_SOURCE=1 npm rebuild --foreground-scripts anomalens',
    ].join('\n'));
  }
  process.exit(0);
}

// cmake-js and node-addon-api are only needed here, so they are not dependencies of the
// package: resolve them from the project that installs anomalens.
const require = createRequire(join(root, 'package.json'));
let cmakeJs;
try {
  cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
  require.resolve('node-addon-api');
} catch {
  console.error([
    'anomalens: a source build needs cmake-js and node-addon-api in your project:',
    '    npm install --save-dev cmake-js node-addon-api',
    '    ANOMALENS_BUILD_FROM_SOURCE=1 npm rebuild --foreground-scripts anomalens',
    `  and these Debian/Ubuntu packages: apt-get install ${debianPackages}`,
  ].join('\n'));
  process.exit(1);
}
console.log(`anomalens: building from source in ${root} (a few minutes)`);
try {
  execFileSync(process.execPath, [cmakeJs, 'compile', '--out', 'build'], { cwd: root, stdio: 'inherit' });
} catch {
  console.error([
    'anomalens: the source build failed (its output is above). It needs:',
    `    apt-get install ${debianPackages}`,
    existsSync(prebuilt) ? `  The prebuilt binary in ${prebuilt} was left in place.` : '',
  ].filter(Boolean).join('\n'));
  process.exit(1);
}
rmSync(prebuilt, { recursive: true, force: true });
console.log(`anomalens: built ${join(root, 'build', 'Release', 'anomalens.node')}`);
