// Report building blocks against slow twins: curve downsampling for drawing, the score
// histogram, the PRO curve cut at the FPR limit (its area is the AUPRO of lib/metrics), HTML
// escaping of names on the page, and the all-or-nothing report folder.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AnomalensError } from '../../lib/core/errors.js';
import { aupro, proCurve } from '../../lib/metrics/metrics.js';
import type { GalleryEntry } from '../../lib/report/gallery.js';
import { buildReportPage, downsampleCurve, escapeHtml, histogram, lineChart, mulberry32, truncateCurve } from '../../lib/internal.js';
import { writeReport, type ReportInput } from '../../lib/report/write.js';
import { tempDir } from '../helpers/tmp.js';

const { dir, cleanup } = tempDir('anomalens-report-unit-');
afterAll(cleanup);

describe('downsampleCurve', () => {
  it('keeps, per x column, the first, last, lowest and highest point, in order (slow twin), and covers every point', () => {
    const r = mulberry32(7);
    for (const [n, columns] of [[20_000, 640], [5000, 100], [20_001, 13]] as const) {
      // a monotone x (ROC-like steps with repeats) and a noisy y
      const x: number[] = [], y: number[] = [];
      let xv = 0;
      for (let i = 0; i < n; i++) {
        if (r() < 0.5) xv += r();
        x.push(xv);
        y.push(Math.sin(i / 300) + r() * 0.1);
      }
      const kept = downsampleCurve(x, y, columns);
      const lo = x[0], hi = x[n - 1];
      const col = (v: number) => Math.min(columns - 1, Math.floor(((v - lo) / (hi - lo)) * columns));
      const twin: number[] = [];
      const groups = new Map<number, number[]>();
      for (let i = 0; i < n; i++) {
        const g = groups.get(col(x[i]));
        if (g) g.push(i);
        else groups.set(col(x[i]), [i]);
      }
      for (const idx of groups.values()) {
        let iMin = idx[0], iMax = idx[0];
        for (const i of idx) {
          if (y[i] < y[iMin]) iMin = i;
          if (y[i] > y[iMax]) iMax = i;
        }
        twin.push(...new Set([idx[0], iMin, iMax, idx[idx.length - 1]]));
      }
      twin.sort((a, b) => a - b);
      expect(kept).toEqual(twin);
      expect(kept[0]).toBe(0);
      expect(kept[kept.length - 1]).toBe(n - 1);
      expect(kept.length).toBeLessThanOrEqual(4 * columns);
      // every dropped point lies within its column's kept y range
      const keptSet = new Set(kept);
      for (const idx of groups.values()) {
        const ks = idx.filter((i) => keptSet.has(i)).map((i) => y[i]);
        for (const i of idx) {
          expect(y[i]).toBeGreaterThanOrEqual(Math.min(...ks));
          expect(y[i]).toBeLessThanOrEqual(Math.max(...ks));
        }
      }
    }
  });

  it('returns small curves whole, and lineChart draws what it keeps', () => {
    expect(downsampleCurve([0, 0.5, 1], [0, 1, 1], 10)).toEqual([0, 1, 2]);
    const svg = lineChart([{ id: 'a', label: 'a <b>', x: [0, 0.5, 1], y: [0, 1, 1], color: '#000', fill: true }], {
      title: 'T', description: 'D', xLabel: 'x', yLabel: 'y',
    });
    expect(svg).toMatch(/<path class="series" data-series="a" data-points="3" d="M48,280L208,12L368,12"/);
    expect(svg).toMatch(/<path class="area" data-series="a" d="M48,280L208,12L368,12L368,280L48,280Z"/);
    expect(svg).toContain('a &lt;b&gt;');
  });
});

describe('histogram', () => {
  it('counts each score once, in the bin whose edges hold it (last bin closed), threshold inside the range', () => {
    const r = mulberry32(3);
    const scores = Array.from({ length: 997 }, () => r() * 10 - 2);
    const labels = scores.map((s) => (s + r() * 4 > 5 ? 1 : 0));
    const h = histogram(scores, labels, 23, 9.5);
    expect(h.edges).toHaveLength(24);
    expect(h.edges[0]).toBe(Math.min(...scores));
    expect(h.edges[23]).toBe(9.5 > Math.max(...scores) ? 9.5 : Math.max(...scores));
    const normal = new Array(23).fill(0), anomalous = new Array(23).fill(0);
    scores.forEach((s, i) => {
      let b = 0;  // the last bin whose left edge is <= s
      while (b + 1 < 23 && s >= h.edges[b + 1]) b++;
      (labels[i] ? anomalous : normal)[b]++;
    });
    expect(h.normal).toEqual(normal);
    expect(h.anomalous).toEqual(anomalous);
    expect(histogram([2, 2, 2], [0, 1, 0], 4).normal.reduce((a, b) => a + b)).toBe(2);
  });
});

describe('truncateCurve', () => {
  it('cuts at the limit with the last segment interpolated; the PRO area up to it is the AUPRO', async () => {
    expect(truncateCurve([0, 0.1, 0.2, 0.5, 1], [0, 0.5, 0.6, 0.9, 1], 0.3)).toEqual({ x: [0, 0.1, 0.2, 0.3], y: [0, 0.5, 0.6, 0.7] });
    expect(truncateCurve([0, 0.3, 1], [0, 0.4, 1], 0.3)).toEqual({ x: [0, 0.3], y: [0, 0.4] });
    const r = mulberry32(11);
    const maps = [], masks = [];
    for (let k = 0; k < 4; k++) {
      const h = 23, w = 17;
      const mask = new Uint8Array(h * w);
      for (let y = 3 + k; y < 9 + k; y++) for (let x = 2 * k; x < 2 * k + 5; x++) mask[y * w + x] = 1;
      const map = Float32Array.from(mask, (m) => r() + (m ? 0.6 * r() : 0));
      maps.push({ data: map, shape: [h, w] as [number, number] });
      masks.push({ data: mask, shape: [h, w] as [number, number] });
    }
    for (const limit of [0.3, 0.05, 1]) {
      const c = await proCurve(maps, masks);
      const t = truncateCurve(c.fpr, c.pro, limit);
      let area = 0;
      for (let i = 1; i < t.x.length; i++) area += ((t.x[i] - t.x[i - 1]) * (t.y[i] + t.y[i - 1])) / 2;
      expect(area / limit).toBeCloseTo(await aupro(maps, masks, { fprLimit: limit }), 9);
    }
  });
});

describe('the page', () => {
  it('escapes names everywhere (the gallery JSON cannot end its script element)', () => {
    expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
    const evil = '</script><img src=x onerror=alert(1)>.png';
    const entry: GalleryEntry = { name: evil, path: evil, type: '<b>t</b>', label: 1, score: 1, pred: 1, outcome: 'TP', truth: 'gallery/0-t.webp', w: 4, h: 4 };
    const html = buildReportPage({
      title: 'x <y>', generated: 'now', run: [['data set', evil]], metrics: [], curves: [], histogram: '', imageThreshold: 0.5,
      defectTypes: [{ type: '<b>t</b>', count: 1, auroc: null, flagged: 1 }], gallery: [entry], files: [], notes: [evil],
    });
    expect(html.match(/<\/script>/g)).toHaveLength(2);  // the gallery data and the script, nothing from the names
    expect(html).not.toContain('<img src=x');
    expect(html).not.toContain('<b>t</b>');
    expect(html).toContain('<title>x &lt;y&gt;</title>');
  });
});

describe('writeReport', () => {
  it('leaves nothing behind when a step fails', async () => {
    const target = join(dir, 'broken');
    const input: ReportInput = {
      report: {
        method: 'dn2', arch: 'resnet18', images: 2, anomalous: 1, imageAuroc: 1, pixelAuroc: null, aupro: null, f1: 1, pixelF1: null,
        thresholds: { version: 1, image: 0.5, method: { image: 'f1' } }, fitSeconds: 1, predictImagesPerSecond: 1,
        evaluation: { image: { auroc: 1, averagePrecision: 1, f1Max: { f1: 1, threshold: 0.5 }, count: 2, anomalous: 1 }, pixel: null },
      },
      records: [
        { path: join(dir, 'missing-a.png'), defectType: 'good', label: 0, score: 0.1, width: 4, height: 4 },
        { path: join(dir, 'missing-b.png'), defectType: 'x', label: 1, score: 0.9, width: 4, height: 4 },
      ],
      notes: [],
      run: { method: 'dn2', arch: 'resnet18', weights: 'w', config: {}, preprocess: {}, batchSize: 1, dataset: 'd', trainImages: 1 },
    };
    await expect(writeReport(target, input)).rejects.toThrow(AnomalensError);
    await expect(writeReport(target, input)).rejects.toMatchObject({ code: 'ERR_IO', message: expect.stringMatching(/missing-[ab]\.png/) });
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });
});
