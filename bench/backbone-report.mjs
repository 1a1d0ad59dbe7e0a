// Tables of bench/backbone.bench.mjs: speed, ratios, GFLOP/s against the FMA peak, and the
// per-layer breakdown of the anomalens profile; written into bench/RESULTS.md.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const SECTION = '## Backbone forward (engine)';
const BEGIN = '<!-- backbone.bench.mjs:begin (generated: do not edit between these markers) -->';
const END = '<!-- backbone.bench.mjs:end -->';
const PEER_NAMES = { ours: 'anomalens', eager: 'torch eager', best: 'torch best', ort: 'onnxruntime' };

const f = (x, d = 1) => (x === undefined || Number.isNaN(x) ? 'n/a' : x.toFixed(d));

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Single-core GFLOP/s of bench/.peers/fma-peak (built by the setup script), or null. */
export function measureFmaPeak() {
  const exe = join(here, '.peers', 'fma-peak');
  if (!existsSync(exe)) return null;
  try {
    return JSON.parse(execFileSync(exe).toString()).gflops;
  } catch {
    return null;
  }
}

/**
 * FMA peak per core in GFLOP/s. Nominal: fp32 flops per cycle of the vector units times the
 * clock /proc/cpuinfo reports (a KVM guest sees the base clock there, not the boost clock).
 * Measured (`measured`, from bench/peers/fma_peak.c) wins when present: it shows the clock
 * the cores really run at. BENCH_PEAK_GFLOPS (`override`) wins over both.
 */
export function cpuPeak(measured, override) {
  const info = readFileSync('/proc/cpuinfo', 'utf8');
  const field = (k) => (info.match(new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm')) ?? [])[1] ?? '';
  const flags = new Set(field('flags').split(/\s+/));
  const mhz = Math.max(...[...info.matchAll(/^cpu MHz\s*:\s*([\d.]+)/gm)].map((m) => Number(m[1])));
  const vendor = field('vendor_id'), family = Number(field('cpu family')), model = field('model name');
  let flopsPerCycle, units;
  if (vendor === 'AuthenticAMD' && family === 25) {
    flopsPerCycle = 32;
    units = flags.has('avx512f')
      ? 'Zen 4: 512-bit FMAs run on two 256-bit FMA pipes, 16 fp32 FMA = 32 flop/cycle/core'
      : 'Zen 3: two 256-bit FMA pipes, 32 flop/cycle/core';
  } else if (flags.has('avx512f')) {
    flopsPerCycle = 64;
    units = 'assumed two 512-bit FMA units, 64 flop/cycle/core';
  } else if (flags.has('fma')) {
    flopsPerCycle = 32;
    units = 'assumed two 256-bit FMA units, 32 flop/cycle/core';
  } else {
    flopsPerCycle = 8;
    units = 'no FMA: 8 flop/cycle/core assumed';
  }
  const nominal = (flopsPerCycle * mhz) / 1000;
  let perCore = nominal, source = 'nominal';
  if (measured) [perCore, source] = [measured, 'measured'];
  if (override) [perCore, source] = [Number(override), 'BENCH_PEAK_GFLOPS'];
  const parts = [`${model} (family ${family}); ${units}`,
    `nominal ${f(nominal)} GFLOP/s per core at the ${mhz.toFixed(0)} MHz of /proc/cpuinfo`];
  if (measured) parts.push(`measured ${f(measured)} GFLOP/s per core by bench/peers/fma_peak.c (= ${(measured / flopsPerCycle).toFixed(2)} GHz at ${flopsPerCycle} flop/cycle)`);
  if (override) parts.push(`set to ${f(perCore)} per core by BENCH_PEAK_GFLOPS`);
  parts.push(`shares below use the ${source} figure: ${f(perCore)} GFLOP/s on 1 thread, ${f(2 * perCore, 0)} on 2`);
  return { perCore, nominal, measured, mhz, flopsPerCycle, source, description: parts.join('; ') };
}

const table = (head, rows) =>
  [`| ${head.join(' | ')} |`, `|${head.map((h, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');

function stageOf(name) {
  const m = /^layer(\d)/.exec(name);
  if (m) return `layer${m[1]}`;
  if (name.includes('(to NCHW)')) return 'tap reorder';
  return 'stem';
}

function groupBy(layers, key) {
  const groups = new Map();
  for (const l of layers) {
    const k = key(l);
    const g = groups.get(k) ?? { key: k, steps: 0, ms: 0, gflop: 0 };
    g.steps += 1;
    g.ms += l.ms;
    g.gflop += l.gflop;
    groups.set(k, g);
  }
  return [...groups.values()];
}

function profileTables(name, prof, peak, timedMs) {
  const { label, layers } = prof;
  const total = layers.reduce((a, l) => a + l.ms, 0);
  const peak2 = 2 * peak.perCore;
  const gfs = (g) => (g.gflop > 0 ? (g.gflop / g.ms) * 1000 : NaN);
  const pct = (g) => (g.gflop > 0 ? `${f((100 * gfs(g)) / peak2, 0)}%` : '');
  const out = [`#### ${name} (${label}: ${layers.length} steps, per-step minima of ${prof.runs} profiles, sum ${f(total)} ms per batch; fastest timed forward ${f(timedMs)} ms)`];
  out.push('', 'By stage:', '');
  out.push(table(['stage', 'steps', 'ms', 'share', 'GFLOP', 'GFLOP/s', '% of peak'],
    groupBy(layers, (l) => stageOf(l.name)).map((g) => [g.key, g.steps, f(g.ms), `${f((100 * g.ms) / total, 0)}%`, f(g.gflop, 2), f(gfs(g), 0), pct(g)])));
  out.push('', 'By oneDNN implementation:', '');
  out.push(table(['impl', 'steps', 'ms', 'share', 'GFLOP/s', '% of peak'],
    groupBy(layers, (l) => l.impl).sort((a, b) => b.ms - a.ms).map((g) => [`\`${g.key}\``, g.steps, f(g.ms), `${f((100 * g.ms) / total, 0)}%`, f(gfs(g), 0), pct(g)])));
  out.push('', 'Slowest steps:', '');
  const slow = [...layers].sort((a, b) => b.ms - a.ms).slice(0, 10);
  out.push(table(['step', 'impl', 'ms', 'GFLOP', 'GFLOP/s', '% of peak'],
    slow.map((l) => [l.name, `\`${l.impl}\``, f(l.ms, 2), f(l.gflop, 3), f(gfs(l), 0), pct(l)])));
  return out.join('\n');
}

/** The generated part of the RESULTS.md section (also printed to stdout). */
export function renderReport(run, results, profiles) {
  const peers = ['ours', 'eager', 'best', 'ort'].filter((p) => results.some((r) => r.peers[p]));
  const out = [];
  out.push(`Run ${run.started}${run.quick ? ' (QUICK mode: indicative only)' : ''}: ${run.rounds} interleaved rounds ` +
    `(${peers.map((p) => PEER_NAMES[p]).join(' -> ')}), each peer >= ${run.timeMs} ms and >= ${run.minIters} timed iterations per round ` +
    `after one warm-up; Node ${run.node}, PyTorch ${run.torch} (Debian, oneDNN 2.6), onnxruntime-node ${run.ortVersion ?? 'n/a'}. ` +
    'Same input shapes for every peer; seeded random weights (anomalens), torchvision random init (PyTorch, ONNX export).');
  out.push('', `Load (uptime) before: \`${run.loadBefore}\`; after: \`${run.loadAfter}\`.`);
  out.push('', `Peak: ${run.peak.description}.`);

  out.push('', '### Speed', '', 'ms/image as minimum / median over every timed iteration of every round; images/s from the median. ' +
    'Ratios are peer ms / anomalens ms (> 1: anomalens faster), from the minima, medians in brackets.', '');
  const ratio = (r, p) => (r.peers[p] && r.peers.ours
    ? `${f(r.peers[p].minMs / r.peers.ours.minMs, 2)} (${f(r.peers[p].medianMs / r.peers.ours.medianMs, 2)})` : 'n/a');
  const ms = (r, p) => (r.peers[p] ? `${f(r.peers[p].minMs)} / ${f(r.peers[p].medianMs)}` : 'n/a');
  const head = ['model', 'batch', 'threads', 'load 1-min (start)', ...peers.map((p) => `${PEER_NAMES[p]} ms/img`)];
  if (peers.includes('ours')) head.push('anomalens img/s', ...peers.filter((p) => p !== 'ours').map((p) => `x ${PEER_NAMES[p]}`));
  out.push(table(head, results.map((r) => {
    const cells = [`${r.arch}@${r.size}`, r.batch, r.threads, r.loadStart.split(' ')[0], ...peers.map((p) => ms(r, p))];
    if (peers.includes('ours')) cells.push(f(1000 / r.peers.ours.medianMs), ...peers.filter((p) => p !== 'ours').map((p) => ratio(r, p)));
    return cells;
  })));

  const targets = results.filter((r) => r.batch === 8 && r.threads === 2 && r.peers.ours);
  if (targets.length) {
    out.push('', '### Targets (batch 8, 2 threads)', '');
    for (const r of targets) {
      const check = (p, goal) => {
        if (!r.peers[p]) return `${PEER_NAMES[p]}: n/a`;
        const lo = r.peers[p].minMs / r.peers.ours.minMs, mid = r.peers[p].medianMs / r.peers.ours.medianMs;
        return `${f(lo, 2)}x ${PEER_NAMES[p]} (medians ${f(mid, 2)}x; target >= ${goal}: ${lo >= goal ? 'met' : 'NOT met'})`;
      };
      out.push(`- ${r.arch}@${r.size}: ${check('eager', 1.4)}; ${check('best', 1.0)}`);
    }
  }

  if (results.some((r) => r.gflop)) {
    out.push('', '### GFLOP/s', '', 'Convolution GFLOP per image from the anomalens profile (the same network for every peer), ' +
      'divided by each peer\'s minimum time; in brackets the share of the FMA peak for the thread count.', '');
    out.push(table(['model', 'batch', 'threads', 'GFLOP/img', 'peak GFLOP/s', ...peers.map((p) => PEER_NAMES[p])],
      results.filter((r) => r.gflop).map((r) => {
        const g = r.gflop / r.batch, pk = r.threads * run.peak.perCore;
        return [`${r.arch}@${r.size}`, r.batch, r.threads, f(g, 2), f(pk, 0),
          ...peers.map((p) => (r.peers[p] ? `${f((g / r.peers[p].minMs) * 1000, 0)} (${f((100 * g) / r.peers[p].minMs * 1000 / pk, 0)}%)` : 'n/a'))];
      })));
  }

  const names = Object.keys(profiles);
  if (names.length) {
    out.push('', '### Where the time goes (anomalens, batch 8, 2 threads)', '',
      'Per-step minimum over `Backbone.profile` runs, one before the rounds and one after each round (profiling waits ' +
      'after every step, so on a quiet machine the sum slightly exceeds a normal forward). GFLOP counts convolutions only.', '');
    for (const n of names) {
      const r = results.find((x) => `${x.arch}@${x.size}` === n && x.batch === 8 && x.threads === 2);
      out.push(profileTables(n, profiles[n], run.peak, r ? r.peers.ours.minMs * 8 : NaN), '');
    }
  }
  return out.join('\n').trimEnd();
}

/** Replaces the generated part of the '## Backbone forward (engine)' section of bench/RESULTS.md. */
export function writeResultsSection(report, path = join(here, 'RESULTS.md')) {
  const text = readFileSync(path, 'utf8');
  const start = text.indexOf(SECTION);
  if (start < 0) throw new Error(`${path} has no '${SECTION}' section`);
  const bodyStart = start + SECTION.length;
  const next = text.indexOf('\n## ', bodyStart);
  const bodyEnd = next < 0 ? text.length : next + 1;
  let body = text.slice(bodyStart, bodyEnd);
  const generated = `${BEGIN}\n${report}\n${END}`;
  const b = body.indexOf(BEGIN), e = body.indexOf(END);
  if (b >= 0 && e > b) body = body.slice(0, b) + generated + body.slice(e + END.length);
  else body = `\n\n${generated}\n\n`;
  writeFileSync(path, text.slice(0, bodyStart) + body + text.slice(bodyEnd));
}
