// The shape of lib/: the public entry exports the README's API and no test hook, the modules
// import one another without a cycle, methods reach native code only through lib wrappers,
// tests reach non-public names only through lib/internal.ts, and the bin is the built CLI.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as index from '../lib/index.js';
import * as internal from '../lib/internal.js';
import * as serveEntry from '../lib/serve/index.js';

const root = resolve(import.meta.dirname, '..');
const lib = join(root, 'lib');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Every static import, `import type` and `export ... from` of a file, with its names. */
function imports(file: string): { target: string; names: string[] }[] {
  const src = readFileSync(file, 'utf8');
  const out: { target: string; names: string[] }[] = [];
  const re = /^\s*(?:import|export)\s+(type\s+)?([^'";]*?)\s*from\s*'(\.{1,2}\/[^']+)'/gm;
  for (const m of src.matchAll(re)) {
    const names = m[1] ? [] : [...(m[2].match(/\{([^}]*)\}/)?.[1] ?? '').split(',')]
      .map((n) => n.trim()).filter((n) => n && !n.startsWith('type ')).map((n) => n.split(/\s+as\s+/)[0]);
    out.push({ target: resolve(dirname(file), m[3].replace(/\.js$/, '.ts')), names });
  }
  return out;
}

const rel = (f: string) => relative(root, f);

describe('lib/ layout', () => {
  it('has no import cycle (type-only imports and re-exports included)', () => {
    const graph = new Map(tsFiles(lib).map((f) => [f, imports(f).map((i) => i.target)]));
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (f: string) => {
      state.set(f, 'open');
      stack.push(f);
      for (const t of graph.get(f) ?? []) {
        expect(graph.has(t), `${rel(f)} imports ${rel(t)}, which does not exist`).toBe(true);
        if (state.get(t) === 'open') cycles.push([...stack.slice(stack.indexOf(t)), t].map(rel).join(' -> '));
        else if (!state.has(t)) visit(t);
      }
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of graph.keys()) if (!state.has(f)) visit(f);
    expect(cycles).toEqual([]);
    expect(graph.size).toBeGreaterThan(30);
  });

  it('methods reach native code only through lib wrappers', () => {
    const methods = tsFiles(join(lib, 'methods'));
    const direct = methods.filter((f) => imports(f).some((i) => i.target === join(lib, 'core', 'native.ts')) || /\bnative\(\)/.test(readFileSync(f, 'utf8')));
    expect(direct.map(rel)).toEqual(['lib/methods/kernels.ts']);
  });

  it('the public entry exports everything the README lists and none of the test hooks', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const blocks = /- \*\*Building blocks\*\*:([\s\S]*?)\n- \*\*/.exec(readme)?.[1] ?? '';
    const listed = [...blocks.matchAll(/`([A-Za-z]\w*)`/g)].map((m) => m[1]);
    expect(listed).toContain('coresetSubsample');
    for (const name of [...listed, 'Detector', 'openMvtec', 'AnomalensError'])
      expect(typeof (index as Record<string, unknown>)[name], name).not.toBe('undefined');
    const hooks = Object.keys(internal);
    expect(hooks).toContain('coresetProjectedFeatures');
    expect(hooks.filter((name) => name in index)).toEqual([]);
  });

  it('tests import names the public entry lacks from lib/internal.ts only', () => {
    const testDir = join(root, 'test');
    const offenders: string[] = [];
    for (const f of tsFiles(testDir)) {
      for (const i of imports(f)) {
        if (!i.target.startsWith(lib + '/') || [join(lib, 'index.ts'), join(lib, 'internal.ts')].includes(i.target)) continue;
        // public: the package's two entries, '.' (lib/index.ts) and './serve' (lib/serve/index.ts)
        for (const name of i.names) if (!(name in index) && !(name in serveEntry)) offenders.push(`${rel(f)}: ${name} from ${rel(i.target)}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it("package.json's bin is the CLI entry, built from lib/cli/cli.ts", () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    expect(pkg.bin.anomalens).toBe('./dist/lib/cli/cli.js');
    expect(readFileSync(join(lib, 'cli', 'cli.ts'), 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    expect(pkg.files).toContain('dist/lib/**/*.js');
  });
});
