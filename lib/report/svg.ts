/**
 * SVG line charts for the evaluation report: axes, ticks, series (optionally with the area
 * under them shaded) and a legend, as a string that the page inlines. Curves come in exact
 * (every threshold) and are thinned for drawing only, by `downsampleCurve`.
 */

/** Escapes text for HTML and XML element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/**
 * Thins a curve whose x is monotone along it (ROC, PR, PRO all are) for drawing, M4-style:
 * the x range is cut into `columns` equal columns and, of the consecutive points in one
 * column, only the first, the last and those with the smallest and largest y are kept, in
 * their order. Drawn as a polyline at `columns` (or fewer) device pixels across, the result
 * covers exactly the pixels the full curve covers. Curves of at most 4 * columns points are
 * returned as they are. Returns the indices of the kept points, ascending.
 */
export function downsampleCurve(x: ArrayLike<number>, y: ArrayLike<number>, columns: number): number[] {
  const n = x.length;
  const all = Array.from({ length: n }, (_, i) => i);
  if (n <= 4 * columns) return all;
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < n; i++) {
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
  }
  const span = hi - lo || 1;
  const column = (v: number) => Math.min(columns - 1, Math.floor(((v - lo) / span) * columns));
  const out: number[] = [];
  let start = 0;
  while (start < n) {
    const c = column(x[start]);
    let end = start;
    let iMin = start, iMax = start;
    while (end + 1 < n && column(x[end + 1]) === c) {
      end++;
      if (y[end] < y[iMin]) iMin = end;
      if (y[end] > y[iMax]) iMax = end;
    }
    for (const i of [...new Set([start, iMin, iMax, end])].sort((a, b) => a - b)) out.push(i);
    start = end + 1;
  }
  return out;
}

export interface ChartSeries {
  /** Stable id (data-series attribute), e.g. 'image-roc'. */
  id: string;
  /** Legend text, e.g. 'image (AUROC 0.9717)'. */
  label: string;
  x: ArrayLike<number>;
  y: ArrayLike<number>;
  color: string;
  /** Shade the area between the series and y = 0. */
  fill?: boolean;
  /** Dashed stroke (reference lines). */
  dashed?: boolean;
}

export interface ChartOptions {
  /** Accessible title of the chart (also the <title> element). */
  title: string;
  /** Longer text alternative (the <desc> element). */
  description: string;
  xLabel: string;
  yLabel: string;
  xMax?: number;
  yMax?: number;
  width?: number;
  height?: number;
  /** Columns for downsampleCurve (default: twice the plot width in pixels). */
  columns?: number;
}

const MARGIN = { left: 48, right: 12, top: 12, bottom: 40 };

/** Number formatting for SVG coordinates: 2 decimals, no trailing zeros. */
const num = (v: number) => String(Math.round(v * 100) / 100);

function ticks(max: number): number[] {
  const step = max <= 0.3 ? 0.05 : max <= 0.6 ? 0.1 : 0.2;
  const out: number[] = [];
  for (let v = 0; v <= max + 1e-9; v += step) out.push(Math.round(v * 1000) / 1000);
  return out;
}

/**
 * A line chart with axes from 0 to xMax / yMax (default 1) as an inline SVG string. Each
 * series is one <path class="series" data-series=id data-points=count>, after downsampling;
 * shaded series get a <path class="area"> below them.
 */
export function lineChart(series: readonly ChartSeries[], o: ChartOptions): string {
  const W = o.width ?? 380, H = o.height ?? 320;
  const pw = W - MARGIN.left - MARGIN.right, ph = H - MARGIN.top - MARGIN.bottom;
  const xMax = o.xMax ?? 1, yMax = o.yMax ?? 1;
  const sx = (v: number) => MARGIN.left + (v / xMax) * pw;
  const sy = (v: number) => MARGIN.top + ph - (v / yMax) * ph;
  const columns = o.columns ?? 2 * pw;
  const parts: string[] = [];
  const id = o.title.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  parts.push(`<svg class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-labelledby="${id}-t ${id}-d">`);
  parts.push(`<title id="${id}-t">${escapeHtml(o.title)}</title><desc id="${id}-d">${escapeHtml(o.description)}</desc>`);
  // grid and ticks
  for (const t of ticks(xMax))
    parts.push(`<line class="grid" x1="${num(sx(t))}" y1="${MARGIN.top}" x2="${num(sx(t))}" y2="${MARGIN.top + ph}"/>` +
      `<text class="tick" x="${num(sx(t))}" y="${MARGIN.top + ph + 14}" text-anchor="middle">${t}</text>`);
  for (const t of ticks(yMax))
    parts.push(`<line class="grid" x1="${MARGIN.left}" y1="${num(sy(t))}" x2="${MARGIN.left + pw}" y2="${num(sy(t))}"/>` +
      `<text class="tick" x="${MARGIN.left - 6}" y="${num(sy(t) + 4)}" text-anchor="end">${t}</text>`);
  parts.push(`<rect class="frame" x="${MARGIN.left}" y="${MARGIN.top}" width="${pw}" height="${ph}"/>`);
  parts.push(`<text class="axis" x="${MARGIN.left + pw / 2}" y="${H - 6}" text-anchor="middle">${escapeHtml(o.xLabel)}</text>`);
  parts.push(`<text class="axis" transform="translate(12 ${MARGIN.top + ph / 2}) rotate(-90)" text-anchor="middle">${escapeHtml(o.yLabel)}</text>`);
  for (const s of series) {
    const keep = downsampleCurve(s.x, s.y, columns);
    const pts = keep.map((i) => `${num(sx(s.x[i]))},${num(sy(s.y[i]))}`);
    if (pts.length === 0) continue;
    const d = `M${pts.join('L')}`;
    if (s.fill)
      parts.push(`<path class="area" data-series="${s.id}" d="${d}L${num(sx(s.x[keep[keep.length - 1]]))},${num(sy(0))}L${num(sx(s.x[keep[0]]))},${num(sy(0))}Z" fill="${s.color}" fill-opacity="0.18"/>`);
    parts.push(`<path class="series" data-series="${s.id}" data-points="${keep.length}" d="${d}" stroke="${s.color}"${s.dashed ? ' stroke-dasharray="4 3"' : ''} fill="none"/>`);
  }
  parts.push('</svg>');
  const legend = series
    .map((s) => `<li><span class="swatch${s.dashed ? ' dashed' : ''}" style="border-color:${s.color}" aria-hidden="true"></span>${escapeHtml(s.label)}</li>`)
    .join('');
  return `<figure class="chart-box">${parts.join('')}<figcaption><strong>${escapeHtml(o.title)}</strong><ul class="legend">${legend}</ul></figcaption></figure>`;
}

export interface HistogramOptions {
  title: string;
  description: string;
  /** The image threshold, marked with a vertical line. */
  threshold?: number;
  bins?: number;
  width?: number;
  height?: number;
}

export interface Histogram {
  /** bins + 1 edges, ascending. */
  edges: number[];
  normal: number[];
  anomalous: number[];
}

/**
 * Counts of normal and anomalous scores in equal-width bins over [min, max] of all scores
 * and the threshold; bin i holds edges[i] <= s < edges[i + 1], the last bin includes its
 * right edge.
 */
export function histogram(scores: ArrayLike<number>, labels: ArrayLike<number>, bins: number, threshold?: number): Histogram {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < scores.length; i++) {
    lo = Math.min(lo, scores[i]);
    hi = Math.max(hi, scores[i]);
  }
  if (threshold !== undefined && Number.isFinite(threshold)) {
    lo = Math.min(lo, threshold);
    hi = Math.max(hi, threshold);
  }
  if (!(hi > lo)) hi = lo + 1;
  const width = (hi - lo) / bins;
  const edges = Array.from({ length: bins + 1 }, (_, i) => (i === bins ? hi : lo + i * width));
  const normal = new Array<number>(bins).fill(0), anomalous = new Array<number>(bins).fill(0);
  for (let i = 0; i < scores.length; i++) {
    const b = Math.min(bins - 1, Math.floor((scores[i] - lo) / width));
    (labels[i] ? anomalous : normal)[b]++;
  }
  return { edges, normal, anomalous };
}

/** The score histogram as an inline SVG string (bars of both classes overlaid, threshold line). */
export function histogramChart(h: Histogram, o: HistogramOptions): string {
  const W = o.width ?? 560, H = o.height ?? 320;
  const pw = W - MARGIN.left - MARGIN.right, ph = H - MARGIN.top - MARGIN.bottom;
  const lo = h.edges[0], hi = h.edges[h.edges.length - 1];
  const top = Math.max(1, ...h.normal, ...h.anomalous);
  const sx = (v: number) => MARGIN.left + ((v - lo) / (hi - lo)) * pw;
  const sy = (v: number) => MARGIN.top + ph - (v / top) * ph;
  const id = o.title.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  const parts: string[] = [];
  parts.push(`<svg class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-labelledby="${id}-t ${id}-d">`);
  parts.push(`<title id="${id}-t">${escapeHtml(o.title)}</title><desc id="${id}-d">${escapeHtml(o.description)}</desc>`);
  const yStep = Math.max(1, Math.ceil(top / 5));
  for (let t = 0; t <= top; t += yStep)
    parts.push(`<line class="grid" x1="${MARGIN.left}" y1="${num(sy(t))}" x2="${MARGIN.left + pw}" y2="${num(sy(t))}"/>` +
      `<text class="tick" x="${MARGIN.left - 6}" y="${num(sy(t) + 4)}" text-anchor="end">${t}</text>`);
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    parts.push(`<text class="tick" x="${num(sx(v))}" y="${MARGIN.top + ph + 14}" text-anchor="middle">${v.toPrecision(3)}</text>`);
  }
  for (const [cls, counts, color] of [['normal', h.normal, '#1f5fae'], ['anomalous', h.anomalous, '#c2410c']] as const)
    counts.forEach((c, i) => {
      if (!c) return;
      const x0 = sx(h.edges[i]), x1 = sx(h.edges[i + 1]);
      parts.push(`<rect class="bar" data-class="${cls}" data-count="${c}" x="${num(x0)}" y="${num(sy(c))}" width="${num(Math.max(0.5, x1 - x0 - 0.5))}" height="${num(sy(0) - sy(c))}" fill="${color}" fill-opacity="0.55"/>`);
    });
  parts.push(`<rect class="frame" x="${MARGIN.left}" y="${MARGIN.top}" width="${pw}" height="${ph}"/>`);
  if (o.threshold !== undefined) {
    const x = num(sx(o.threshold));
    parts.push(`<line class="threshold" x1="${x}" y1="${MARGIN.top}" x2="${x}" y2="${MARGIN.top + ph}" stroke="#111" stroke-width="2" stroke-dasharray="5 3"/>`);
    parts.push(`<text class="tick" x="${x}" y="${MARGIN.top + 12}" dx="4">threshold ${o.threshold.toPrecision(4)}</text>`);
  }
  parts.push(`<text class="axis" x="${MARGIN.left + pw / 2}" y="${H - 6}" text-anchor="middle">image score</text>`);
  parts.push(`<text class="axis" transform="translate(12 ${MARGIN.top + ph / 2}) rotate(-90)" text-anchor="middle">images</text>`);
  parts.push('</svg>');
  const legend =
    '<li><span class="swatch block" style="background:#1f5fae" aria-hidden="true"></span>normal</li>' +
    '<li><span class="swatch block" style="background:#c2410c" aria-hidden="true"></span>anomalous</li>' +
    (o.threshold !== undefined ? '<li><span class="swatch dashed" style="border-color:#111" aria-hidden="true"></span>image threshold</li>' : '');
  return `<figure class="chart-box wide">${parts.join('')}<figcaption><strong>${escapeHtml(o.title)}</strong><ul class="legend">${legend}</ul></figcaption></figure>`;
}
