// `anomalens eval --report`: a PaDiM detector with seeded ResNet-18 weights fitted on
// synthetic tiles; the folder's files, the CSV curves against the metrics functions, and the
// page opened from file:// in headless Chromium (no network, no console errors, the table
// equal to the JSON output, the curves' series and point counts, the gallery paged and
// filtered by keyboard, alt text and contrast), with a screenshot kept in test/.tmp/artifacts.
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../lib/internal.js';
import { openMvtec } from '../../lib/data/datasets.js';
import { Detector } from '../../lib/detector/detector.js';
import { evaluateWithReport } from '../../lib/report/write.js';
import { imageAuroc, rocCurve } from '../../lib/metrics/metrics.js';
import { launchChromium, noChromium } from '../helpers/browser.js';
import { writeSeededWeights } from '../helpers/seeded.js';
import { writeTileDataset } from '../helpers/synthetic-tiles.js';
import { tempDir } from '../helpers/tmp.js';
import { lowContrast, missingAlt } from './browser-checks.js';

const parity = JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/backbone/parity.json'), 'utf8'));
const ARTIFACTS = resolve(import.meta.dirname, '..', '.tmp', 'artifacts');
const { dir, cleanup } = tempDir('anomalens-report-');
const weights = join(dir, 'r18.safetensors');
const data = join(dir, 'tile');
const out = join(dir, 'report');
const model = join(dir, 'padim.anomalens');
const DEFECTS = { spot: 4, scratch: 4, dent: 3 };
const N_GOOD = 6;
const N_TEST = N_GOOD + 4 + 4 + 3;

async function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((stdout += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((stderr += String(s)), true));
  const log = vi.spyOn(console, 'log').mockImplementation((...a) => void (stdout += a.join(' ') + '\n'));
  try {
    return { code: await main(['node', 'anomalens', ...args]), stdout, stderr };
  } finally {
    o.mockRestore();
    e.mockRestore();
    log.mockRestore();
  }
}

/** A CSV of numbers (inf allowed) as columns by header name. */
function readCsv(path: string): Record<string, number[]> {
  const [head, ...rows] = readFileSync(path, 'utf8').trim().split('\n');
  const names = head.split(',');
  const cols: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (const r of rows) r.split(',').forEach((v, i) => cols[names[i]].push(v === 'inf' ? Infinity : v === '-inf' ? -Infinity : Number(v)));
  return cols;
}

/** The slow twin of downsampleCurve: group consecutive points by column, keep first/min/max/last. */
function slowM4(x: number[], y: number[], columns: number): number {
  if (x.length <= 4 * columns) return x.length;
  const lo = Math.min(...x), hi = Math.max(...x);
  const col = (v: number) => Math.min(columns - 1, Math.floor(((v - lo) / (hi - lo || 1)) * columns));
  let count = 0;
  for (let s = 0; s < x.length; ) {
    let e = s;
    while (e + 1 < x.length && col(x[e + 1]) === col(x[s])) e++;
    const ys = y.slice(s, e + 1);
    const keep = new Set([s, e, s + ys.indexOf(Math.min(...ys)), s + ys.indexOf(Math.max(...ys))]);
    count += keep.size;
    s = e + 1;
  }
  return count;
}

const get = (o: Record<string, unknown>, key: string): unknown => key.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | null)?.[k], o);

let json: Record<string, unknown>;

beforeAll(async () => {
  await writeSeededWeights(weights, parity.archs.resnet18.tensors);
  await writeTileDataset(data, { nTrain: 8, nGood: N_GOOD, defects: DEFECTS });
  const r = await run('eval', '--method', 'padim', '--arch', 'resnet18', '--weights', weights, '--data', data, '--size', '64',
    '--option', 'd=40', '--report', out, '--save', model, '--json');
  expect(r.code, r.stderr).toBe(0);
  json = JSON.parse(r.stdout);
});
afterAll(cleanup);

describe('eval --report: the folder', () => {
  it('holds the page, report.json (= the JSON output), the curves as CSV and two thumbnails per test image', () => {
    expect(readdirSync(out).sort()).toEqual(['curves', 'gallery', 'index.html', 'report.json']);
    expect(JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'))).toEqual(json);
    expect(readdirSync(join(out, 'curves')).sort()).toEqual(['image-pr.csv', 'image-roc.csv', 'pixel-pr.csv', 'pixel-roc.csv', 'pro.csv', 'scores.csv']);
    expect(readdirSync(join(out, 'gallery'))).toHaveLength(2 * N_TEST);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-') || f.includes('.old-'))).toEqual([]);
  });

  it('writes the exact curves: the image ROC of the scores, and a PRO curve whose area up to 0.3 is the AUPRO', async () => {
    const scores = readFileSync(join(out, 'curves', 'scores.csv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split(','));
    expect(scores).toHaveLength(N_TEST);
    const s = Float32Array.from(scores, (r) => Number(r[4]));
    const l = Uint8Array.from(scores, (r) => Number(r[3]));
    for (let i = 1; i < s.length; i++) expect(s[i]).toBeLessThanOrEqual(s[i - 1]);
    const roc = await rocCurve(s, l);
    const csv = readCsv(join(out, 'curves', 'image-roc.csv'));
    expect(csv.fpr).toEqual(Array.from(roc.fpr));
    expect(csv.tpr).toEqual(Array.from(roc.tpr));
    expect(csv.threshold).toEqual(Array.from(roc.thresholds));
    expect(await imageAuroc(s, l)).toBe(json.imageAuroc);
    // AUPRO from the CSV by the trapezoid rule up to FPR 0.3, interpolated at 0.3
    const pro = readCsv(join(out, 'curves', 'pro.csv'));
    let area = 0;
    for (let i = 1; i < pro.fpr.length; i++) {
      const [x0, x1, y0, y1] = [pro.fpr[i - 1], pro.fpr[i], pro.pro[i - 1], pro.pro[i]];
      if (x0 >= 0.3) break;
      const xe = Math.min(x1, 0.3);
      const ye = x1 > 0.3 ? y0 + ((y1 - y0) * (0.3 - x0)) / (x1 - x0) : y1;
      area += ((xe - x0) * (y0 + ye)) / 2;
    }
    expect(area / 0.3).toBeCloseTo(json.aupro as number, 9);
    const pix = readCsv(join(out, 'curves', 'pixel-roc.csv'));
    expect(pix.fpr[0]).toBe(0);
    expect(pix.fpr[pix.fpr.length - 1]).toBe(1);
  });

  it('thins pixel-level CSVs above csvMaxPoints with the metrics functions\' decimate option', async () => {
    const det = await Detector.load(model);
    const thin = join(dir, 'thin');
    const r = await evaluateWithReport(det, await openMvtec(data), thin, { csvMaxPoints: 100, csvDecimate: 0.01 });
    det.dispose();
    expect(r.aupro).toBe(json.aupro);
    for (const [file, xs, ys] of [['pixel-roc.csv', 'fpr', 'tpr'], ['pro.csv', 'fpr', 'pro'], ['pixel-pr.csv', 'recall', 'precision']]) {
      const exact = readCsv(join(out, 'curves', file));
      const t = readCsv(join(thin, 'curves', file));
      expect(exact[xs].length).toBeGreaterThan(100);
      expect(t[xs].length, file).toBeLessThan(exact[xs].length / 2);
      // a subset of the exact points, in order, with the first and the last
      const key = (c: Record<string, number[]>, i: number) => `${c[xs][i]},${c[ys][i]},${c.threshold[i]}`;
      const rows = new Map<string, number>();
      exact[xs].forEach((_, i) => rows.set(key(exact, i), i));
      const at = t[xs].map((_, i) => rows.get(key(t, i)));
      expect(at.every((i) => i !== undefined), file).toBe(true);
      for (let i = 1; i < at.length; i++) expect(at[i]!).toBeGreaterThan(at[i - 1]!);
      expect([at[0], at[at.length - 1]]).toEqual([0, exact[xs].length - 1]);
      if (file === 'pixel-pr.csv') continue;
      // every dropped point is within the step of the last kept one
      let k = 0;
      for (let i = 0; i < exact[xs].length; i++) {
        if (k + 1 < at.length && at[k + 1] === i) k++;
        if (at[k] === i) continue;
        const j = at[k]!;
        expect(Math.abs(exact[xs][i] - exact[xs][j]) < 0.01 && Math.abs(exact[ys][i] - exact[ys][j]) < 0.01, `${file} point ${i}`).toBe(true);
      }
    }
    expect(readFileSync(join(thin, 'index.html'), 'utf8')).toMatch(/thinned to a point per 0\.01 of either axis \(the exact curve has \d+ points\)/);
  });

  it('refuses to replace a folder that is not a report, and replaces an earlier report', async () => {
    const other = join(dir, 'other');
    mkdirSync(other);
    writeFileSync(join(other, 'keep.txt'), 'x');
    let r = await run('eval', '--method', 'dn2', '--arch', 'resnet18', '--weights', weights, '--data', data, '--size', '64', '--report', other);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_IO.*holds other files/);
    expect(readdirSync(other)).toEqual(['keep.txt']);
    // DN2 makes no maps: image curves only, one thumbnail per image
    const again = join(dir, 'dn2');
    r = await run('eval', '--method', 'dn2', '--arch', 'resnet18', '--weights', weights, '--data', data, '--size', '64', '--report', again);
    expect(r.code, r.stderr).toBe(0);
    r = await run('eval', '--method', 'dn2', '--arch', 'resnet18', '--weights', weights, '--data', data, '--size', '64', '--report', again);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(join(again, 'curves')).sort()).toEqual(['image-pr.csv', 'image-roc.csv', 'scores.csv']);
    expect(readdirSync(join(again, 'gallery'))).toHaveLength(N_TEST);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-') || f.includes('.old-'))).toEqual([]);
  });
});

if (noChromium()) console.warn(noChromium());
describe.skipIf(noChromium())('eval --report: the page in headless Chromium', () => {
  let page: Page;
  let close: () => Promise<void>;
  const requests: string[] = [];
  const errors: string[] = [];

  beforeAll(async () => {
    const b = await launchChromium();
    close = b.close;
    page = await b.context.newPage();
    page.on('request', (r) => requests.push(r.url()));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(pathToFileURL(join(out, 'index.html')).href, { waitUntil: 'load' });
  });
  afterAll(async () => close?.());

  it('renders with no network request outside file:// and no console error', async () => {
    await page.locator('#gallery img').first().scrollIntoViewIfNeeded();
    await page.waitForFunction(() => Array.from(document.querySelectorAll('#gallery img')).slice(0, 4).every((i) => (i as HTMLImageElement).complete));
    const loaded = await page.$$eval('#gallery img', (imgs) => imgs.slice(0, 4).map((i) => (i as HTMLImageElement).naturalWidth));
    expect(loaded.every((w) => w > 0), `thumbnails decoded: ${loaded}`).toBe(true);
    expect(requests.length).toBeGreaterThan(1);
    expect(requests.filter((u) => !u.startsWith('file://'))).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('shows the metrics table equal to the JSON output', async () => {
    const rows = await page.$$eval('#metrics tr[data-metric]', (trs) =>
      trs.map((tr) => ({ key: tr.getAttribute('data-metric')!, value: tr.querySelector('td')!.getAttribute('data-value')!, text: tr.querySelector('td')!.textContent! })));
    expect(rows.map((r) => r.key)).toEqual([
      'imageAuroc', 'pixelAuroc', 'aupro', 'f1', 'pixelF1', 'image.averagePrecision', 'pixel.averagePrecision',
      'thresholds.image', 'thresholds.pixel', 'fitSeconds', 'predictImagesPerSecond',
    ]);
    for (const r of rows) {
      const v = get(json, r.key) as number;
      expect(typeof v, r.key).toBe('number');
      expect(Number(r.value), r.key).toBe(v);
      const digits = r.key.startsWith('thresholds') ? v.toPrecision(6) : /Seconds|PerSecond/.test(r.key) ? v.toFixed(1) : v.toFixed(4);
      expect(r.text, r.key).toBe(digits);
    }
    const runText = await page.textContent('dl.run');
    expect(runText).toContain('padim');
    expect(runText).toContain('resnet18');
    expect(runText).toContain('d=40');
  });

  it('draws ROC (image, pixel, chance), PR (image, pixel) and the shaded PRO curve with the expected points', async () => {
    const charts = await page.$$eval('svg.chart', (svgs) =>
      svgs.map((s) => ({
        title: s.querySelector('title')!.textContent,
        series: Array.from(s.querySelectorAll('path.series')).map((p) => ({
          id: p.getAttribute('data-series'), points: Number(p.getAttribute('data-points')), drawn: (p.getAttribute('d')!.match(/[ML]/g) ?? []).length,
        })),
        areas: s.querySelectorAll('path.area').length,
        bars: Array.from(s.querySelectorAll('rect.bar')).map((b) => ({ cls: b.getAttribute('data-class'), count: Number(b.getAttribute('data-count')) })),
        thresholds: s.querySelectorAll('line.threshold').length,
      })));
    expect(charts.map((c) => c.title)).toEqual(['ROC curve', 'Precision-recall curve', 'PRO curve', 'Image score histogram']);
    const [roc, pr, pro, hist] = charts;
    expect(roc.series.map((s) => s.id)).toEqual(['image-roc', 'pixel-roc', 'chance']);
    expect(pr.series.map((s) => s.id)).toEqual(['image-pr', 'pixel-pr']);
    expect(pro.series.map((s) => s.id)).toEqual(['pro']);
    expect(pro.areas).toBe(1);
    for (const c of [roc, pr, pro]) for (const s of c.series) expect(s.drawn, s.id!).toBe(s.points);
    const columns = 2 * (380 - 48 - 12);
    const expected = (file: string, xs: string, ys: string) => {
      const c = readCsv(join(out, 'curves', file));
      return slowM4(c[xs], c[ys], columns);
    };
    // the image curves are small: drawn exactly
    expect(roc.series[0].points).toBe(readCsv(join(out, 'curves', 'image-roc.csv')).fpr.length);
    expect(pr.series[0].points).toBe(readCsv(join(out, 'curves', 'image-pr.csv')).recall.length);
    expect(roc.series[1].points).toBe(expected('pixel-roc.csv', 'fpr', 'tpr'));
    expect(pr.series[1].points).toBe(expected('pixel-pr.csv', 'recall', 'precision'));
    // PRO: the points up to FPR 0.3 and one interpolated at 0.3
    const full = readCsv(join(out, 'curves', 'pro.csv'));
    const cutX: number[] = [], cutY: number[] = [];
    for (let i = 0; i < full.fpr.length; i++) {
      if (full.fpr[i] <= 0.3) {
        cutX.push(full.fpr[i]);
        cutY.push(full.pro[i]);
      } else {
        if (full.fpr[i - 1] < 0.3) {
          cutX.push(0.3);
          cutY.push(full.pro[i - 1] + ((full.pro[i] - full.pro[i - 1]) * (0.3 - full.fpr[i - 1])) / (full.fpr[i] - full.fpr[i - 1]));
        }
        break;
      }
    }
    expect(pro.series[0].points).toBe(slowM4(cutX, cutY, columns));
    // histogram: every image in one bar, the threshold marked
    const sum = (cls: string) => hist.bars.filter((b) => b.cls === cls).reduce((a, b) => a + b.count, 0);
    expect(sum('normal')).toBe(N_GOOD);
    expect(sum('anomalous')).toBe(N_TEST - N_GOOD);
    expect(hist.thresholds).toBe(1);
  });

  it('lists every defect type with its image AUROC against the normal images', async () => {
    const rows = await page.$$eval('#defect-types tbody tr', (trs) =>
      trs.map((tr) => ({ type: tr.getAttribute('data-type'), count: Number(tr.children[1].textContent), auroc: tr.children[2].getAttribute('data-value') })));
    expect(rows.map((r) => r.type)).toEqual(['good', 'dent', 'scratch', 'spot']);
    const scores = readFileSync(join(out, 'curves', 'scores.csv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split(','));
    for (const r of rows.slice(1)) {
      const sub = scores.filter((s) => s[2] === 'good' || s[2] === r.type);
      expect(r.count).toBe(DEFECTS[r.type as keyof typeof DEFECTS]);
      expect(Number(r.auroc)).toBe(await imageAuroc(Float32Array.from(sub, (s) => Number(s[4])), Uint8Array.from(sub, (s) => Number(s[3]))));
    }
  });

  it('pages and filters the gallery by keyboard, with alt text and readable contrast', async () => {
    const status = () => page.textContent('#gallery-status');
    const cards = () => page.locator('#gallery figure').count();
    // Tab reaches the page-size select; arrow keys change it
    await page.focus('body');
    let reached = false;
    for (let i = 0; i < 40 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement?.id === 'page-size');
    }
    expect(reached, 'Tab reaches the page-size select').toBe(true);
    await page.keyboard.press('ArrowUp');  // 24 -> 12
    expect(await page.inputValue('#page-size')).toBe('12');
    expect(await cards()).toBe(12);
    expect(await status()).toBe(`Page 1 of 2: images 1-12 of ${N_TEST}`);
    // into the gallery: Tab past the pager buttons to the first card, arrows and Page Down
    for (let i = 0; i < 10; i++) {
      await page.keyboard.press('Tab');
      if (await page.evaluate(() => document.activeElement?.tagName === 'FIGURE')) break;
    }
    expect(await page.evaluate(() => document.activeElement?.closest('#gallery') !== null)).toBe(true);
    const focusedLabel = () => page.evaluate(() => document.activeElement!.getAttribute('aria-label'));
    const first = await focusedLabel();
    await page.keyboard.press('ArrowRight');
    expect(await focusedLabel()).not.toBe(first);
    await page.keyboard.press('PageDown');
    expect(await status()).toBe(`Page 2 of 2: images 13-${N_TEST} of ${N_TEST}`);
    expect(await cards()).toBe(N_TEST - 12);
    expect(await page.evaluate(() => document.activeElement?.tagName)).toBe('FIGURE');
    await page.keyboard.press('PageUp');
    expect(await status()).toMatch(/^Page 1 of 2/);
    // scores descend along the pages
    const scores = await page.$$eval('#gallery figure', (f) => f.map((x) => Number(/score ([-\d.e+]+)/.exec(x.getAttribute('aria-label')!)![1])));
    for (let i = 1; i < scores.length; i++) expect(scores[i]).toBeLessThanOrEqual(scores[i - 1]);
    // filter by defect type with the keyboard: focus the select, arrow to 'dent'
    await page.focus('#filter-type');
    await page.keyboard.press('ArrowDown');  // all -> good
    await page.keyboard.press('ArrowDown');  // good -> dent
    expect(await page.inputValue('#filter-type')).toBe('dent');
    expect(await cards()).toBe(DEFECTS.dent);
    expect(await status()).toBe(`Page 1 of 1: images 1-${DEFECTS.dent} of ${DEFECTS.dent}`);
    const labels = await page.$$eval('#gallery figure', (f) => f.map((x) => x.getAttribute('aria-label')));
    for (const l of labels) expect(l).toMatch(/defect dent/);
    // errors only: FP and FN badges match the outcome filter
    await page.selectOption('#filter-type', 'all');
    await page.selectOption('#filter-outcome', 'errors');
    const badges = await page.$$eval('#gallery .badge', (b) => b.map((x) => x.textContent));
    for (const b of badges) expect(['FP', 'FN']).toContain(b);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    const csv = readFileSync(join(out, 'curves', 'scores.csv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split(','));
    expect(badges.length).toBe(csv.filter((r) => r[6] === 'FP' || r[6] === 'FN').length);
    for (const r of csv) expect(r[6]).toBe(Number(r[3]) ? (Number(r[4]) >= report.thresholds.image ? 'TP' : 'FN') : Number(r[4]) >= report.thresholds.image ? 'FP' : 'TN');
    await page.selectOption('#filter-outcome', 'all');
    expect(await page.evaluate(missingAlt)).toEqual([]);
    expect(await page.evaluate(lowContrast)).toEqual([]);
  });

  it('takes a screenshot (test/.tmp/artifacts/report.png)', async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.selectOption('#page-size', '24');
    await page.evaluate(() => window.scrollTo(0, 0));
    for (const img of await page.locator('#gallery img').all()) await img.scrollIntoViewIfNeeded();
    await page.waitForFunction(() => Array.from(document.querySelectorAll('#gallery img')).every((i) => (i as HTMLImageElement).complete));
    await page.screenshot({ path: join(ARTIFACTS, 'report.png'), fullPage: true });
    expect(existsSync(join(ARTIFACTS, 'report.png'))).toBe(true);
  });
});
