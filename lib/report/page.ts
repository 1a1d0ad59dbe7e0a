/**
 * The evaluation report page: one self-contained HTML document (inline CSS, inline SVG
 * charts, one inline script for the gallery; thumbnails and CSV files beside it, linked
 * relatively), so that it works from file:// and from any static server. A Content Security
 * Policy forbids every fetch except the page's own folder.
 */
import { GALLERY_SCRIPT } from './gallery-script.js';
import type { GalleryEntry } from './gallery.js';
import { escapeHtml } from './svg.js';

/** One row of the metrics table: `value` is written in full in data-value, shown rounded. */
export interface MetricRow {
  /** Key of the value in the JSON of `eval --json`, e.g. 'imageAuroc' or 'image.averagePrecision'. */
  key: string;
  label: string;
  value: number | null;
  /** 'fixed4' (metrics), 'precision6' (thresholds), 'fixed1' (seconds, rates). */
  format: 'fixed4' | 'precision6' | 'fixed1';
}

export interface DefectTypeRow {
  type: string;
  count: number;
  /** AUROC of this type's images against all normal test images; null for 'good' or without normal images. */
  auroc: number | null;
  /** Images at or above the image threshold. */
  flagged: number;
}

export interface ReportPage {
  title: string;
  /** ISO time of writing. */
  generated: string;
  /** [label, value] pairs of the run: method, backbone, options, data set. */
  run: [string, string][];
  metrics: MetricRow[];
  /** Inline SVG figures of the curves. */
  curves: string[];
  /** Inline SVG figure of the score histogram. */
  histogram: string;
  imageThreshold?: number;
  defectTypes: DefectTypeRow[];
  gallery: GalleryEntry[];
  /** [relative path, description] of the files next to the page. */
  files: [string, string][];
  notes: readonly string[];
}

export function formatMetric(v: number | null, f: MetricRow['format']): string {
  if (v === null || !Number.isFinite(v)) return 'n/a';
  return f === 'fixed4' ? v.toFixed(4) : f === 'fixed1' ? v.toFixed(1) : v.toPrecision(6);
}

/** JSON for a <script type="application/json"> element: '<' escaped so that no '</script>' ends it early. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

const CSS = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #111827; background: #ffffff; }
header, main { max-width: 1240px; margin: 0 auto; padding: 0 20px; }
header { padding-top: 18px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.2rem; margin: 28px 0 10px; border-bottom: 1px solid #d1d5db; padding-bottom: 4px; }
.muted { color: #4b5563; }
a { color: #1d4ed8; }
:focus-visible { outline: 3px solid #1d4ed8; outline-offset: 2px; }
table { border-collapse: collapse; margin: 6px 0; }
caption { caption-side: bottom; text-align: left; font-size: 0.85rem; padding-top: 4px; }
th, td { text-align: left; padding: 4px 12px 4px 0; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.columns { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
dl.run { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 6px 0; }
dl.run dt { color: #4b5563; }
dl.run dd { margin: 0; word-break: break-word; }
code { font: 13px ui-monospace, "DejaVu Sans Mono", monospace; }
.charts { display: flex; flex-wrap: wrap; gap: 18px; }
figure.chart-box { margin: 0; }
svg.chart { display: block; max-width: 100%; height: auto; font: 11px system-ui, "DejaVu Sans", sans-serif; }
svg .grid { stroke: #e5e7eb; }
svg .frame { fill: none; stroke: #6b7280; }
svg .tick { fill: #374151; }
svg .axis { fill: #111827; font-size: 12px; }
svg .series { stroke-width: 2; stroke-linejoin: round; }
figcaption { font-size: 0.9rem; }
ul.legend { list-style: none; margin: 2px 0 0; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 14px; }
.swatch { display: inline-block; width: 18px; height: 0; border-top: 3px solid; vertical-align: middle; margin-right: 6px; }
.swatch.dashed { border-top-style: dashed; }
.swatch.block { height: 12px; border: 0; }
.controls { display: flex; flex-wrap: wrap; gap: 8px 18px; align-items: center; margin: 8px 0; }
.controls label { display: inline-flex; gap: 6px; align-items: center; }
select, button { font: inherit; color: #111827; background: #f9fafb; border: 1px solid #6b7280; border-radius: 4px; padding: 3px 8px; }
button:disabled { color: #4b5563; background: #f3f4f6; border-color: #d1d5db; }
#gallery { list-style: none; padding: 0; margin: 8px 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }
.card figure { margin: 0; padding: 6px; border: 2px solid #d1d5db; border-radius: 6px; background: #ffffff; }
.card.outcome-FP figure { border-color: #b91c1c; }
.card.outcome-FN figure { border-color: #6d28d9; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 4px; }
.pair img { width: 100%; height: auto; max-height: 300px; object-fit: contain; background: #e5e7eb; }
.card figcaption { display: flex; flex-wrap: wrap; gap: 2px 8px; align-items: baseline; margin-top: 4px; }
.card .name { font-weight: 600; overflow-wrap: anywhere; }
.card .info { color: #4b5563; font-size: 0.85rem; }
.badge { display: inline-block; min-width: 2.2em; text-align: center; font-size: 0.8rem; font-weight: 700; color: #ffffff; border-radius: 3px; padding: 0 4px; }
.badge.TP { background: #166534; } .badge.TN { background: #374151; }
.badge.FP { background: #b91c1c; } .badge.FN { background: #6d28d9; }
.notes li { color: #374151; }
`;

function metricsTable(rows: readonly MetricRow[]): string {
  const body = rows
    .map((r) => `<tr data-metric="${escapeHtml(r.key)}"><th scope="row">${escapeHtml(r.label)}</th><td class="num" data-value="${r.value === null ? '' : String(r.value)}">${formatMetric(r.value, r.format)}</td></tr>`)
    .join('');
  return `<table id="metrics"><caption class="muted">Thresholds are F1-adaptive on the test set</caption><thead><tr><th scope="col">metric</th><th scope="col">value</th></tr></thead><tbody>${body}</tbody></table>`;
}

function defectTable(rows: readonly DefectTypeRow[], threshold: number | undefined): string {
  const pct = (a: number, b: number) => (b ? `${((100 * a) / b).toFixed(1)} %` : 'n/a');
  const body = rows
    .map((r) => {
      const good = r.type === 'good';
      const rate = threshold === undefined ? 'n/a' : `${pct(r.flagged, r.count)} (${r.flagged})`;
      return `<tr data-type="${escapeHtml(r.type)}"><th scope="row">${escapeHtml(r.type)}</th><td class="num">${r.count}</td>` +
        `<td class="num" data-value="${r.auroc === null ? '' : String(r.auroc)}">${r.auroc === null ? (good ? '' : 'n/a') : r.auroc.toFixed(4)}</td>` +
        `<td class="num">${good ? '' : rate}</td><td class="num">${good ? rate : ''}</td></tr>`;
    })
    .join('');
  return `<table id="defect-types"><thead><tr><th scope="col">defect type</th><th scope="col">images</th><th scope="col">image AUROC vs good</th>` +
    `<th scope="col">detection rate</th><th scope="col">false-positive rate</th></tr></thead><tbody>${body}</tbody></table>`;
}

function gallerySection(p: ReportPage): string {
  const types = [...new Set(p.gallery.map((e) => e.type))].sort((a, b) => (a === 'good' ? -1 : b === 'good' ? 1 : a.localeCompare(b)));
  const count = (pred: (e: GalleryEntry) => boolean) => p.gallery.filter(pred).length;
  const typeOptions = [`<option value="all">all (${p.gallery.length})</option>`]
    .concat(types.map((t) => `<option value="${escapeHtml(t)}">${escapeHtml(t)} (${count((e) => e.type === t)})</option>`))
    .join('');
  const fp = count((e) => e.outcome === 'FP'), fn = count((e) => e.outcome === 'FN');
  const hasThreshold = p.imageThreshold !== undefined;
  return `<section aria-labelledby="h-gallery"><h2 id="h-gallery">Gallery</h2>
<p class="muted">Sorted by image score. Each card shows the anomaly map on the detector's pixel scale (pixel threshold at the middle of the colour map, predicted defect outlined in white) next to the image with the true defect outlined in red.${hasThreshold ? ` At the image threshold ${p.imageThreshold!.toPrecision(6)}: <span class="badge FP">FP</span> false positive (${fp}), <span class="badge FN">FN</span> false negative (${fn}).` : ''}
Keys: arrows move between cards, Page Up / Page Down change page.</p>
<div class="controls" role="group" aria-label="Gallery filters">
<label for="filter-type">Defect type <select id="filter-type">${typeOptions}</select></label>
<label for="filter-outcome">Outcome <select id="filter-outcome"><option value="all">all</option><option value="errors">errors (FP and FN: ${fp + fn})</option><option value="FP">false positives (${fp})</option><option value="FN">false negatives (${fn})</option><option value="TP">true positives</option><option value="TN">true negatives</option></select></label>
<label for="sort">Order <select id="sort"><option value="score-desc">score, highest first</option><option value="score-asc">score, lowest first</option></select></label>
<label for="page-size">Per page <select id="page-size"><option>12</option><option selected>24</option><option>48</option><option>96</option></select></label>
</div>
<nav class="controls" aria-label="Gallery pages"><button type="button" id="page-first">First</button><button type="button" id="page-prev">Previous</button><button type="button" id="page-next">Next</button><button type="button" id="page-last">Last</button><span id="gallery-status" role="status" aria-live="polite"></span></nav>
<ul id="gallery" aria-label="Test images"></ul>
<script type="application/json" id="gallery-data">${scriptJson(p.gallery)}</script>
</section>`;
}

/** The whole page as an HTML string. */
export function buildReportPage(p: ReportPage): string {
  const run = p.run.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join('');
  const files = p.files.map(([f, d]) => `<li><a href="${escapeHtml(f)}">${escapeHtml(f)}</a> <span class="muted">${escapeHtml(d)}</span></li>`).join('');
  const notes = p.notes.length ? `<h2 id="h-notes">Notes</h2><ul class="notes">${p.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('')}</ul>` : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="anomalens report">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>${escapeHtml(p.title)}</title>
<style>${CSS}</style>
</head>
<body>
<header><h1>${escapeHtml(p.title)}</h1><p class="muted">Written by anomalens on ${escapeHtml(p.generated)}</p></header>
<main>
<div class="columns">
<section aria-labelledby="h-metrics"><h2 id="h-metrics">Metrics</h2>${metricsTable(p.metrics)}</section>
<section aria-labelledby="h-run"><h2 id="h-run">Run</h2><dl class="run">${run}</dl></section>
</div>
<section aria-labelledby="h-curves"><h2 id="h-curves">Curves</h2><div class="charts">${p.curves.join('')}</div></section>
<section aria-labelledby="h-scores"><h2 id="h-scores">Image scores</h2>${p.histogram}</section>
<section aria-labelledby="h-types"><h2 id="h-types">Defect types</h2>${defectTable(p.defectTypes, p.imageThreshold)}</section>
${gallerySection(p)}
<section aria-labelledby="h-files"><h2 id="h-files">Files</h2><ul>${files}</ul></section>
${notes}
</main>
<script>${GALLERY_SCRIPT}</script>
</body>
</html>
`;
}
