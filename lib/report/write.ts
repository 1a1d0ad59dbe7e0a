/**
 * The evaluation report: `evaluateWithReport(detector, dataset, dir)` evaluates as
 * `detector.evaluate` does and writes `dir/index.html` (metrics, run, ROC / PR / PRO curves,
 * score histogram, per-defect-type table, gallery), `dir/report.json` (what `eval --json`
 * prints), the exact curves and the scores as CSV in `dir/curves/`, and the gallery
 * thumbnails in `dir/gallery/`.
 *
 * The folder is written whole or not at all: everything goes to a temporary sibling that
 * replaces `dir` by renames at the end. An existing `dir` is replaced only when it is empty or
 * an earlier report (it has index.html written by anomalens); anything else is refused.
 */
import { open, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import type { Dataset } from '../data/datasets.js';
import type { Detector, EvaluationReport } from '../detector/detector.js';
import { AnomalensError } from '../core/errors.js';
import { isRunning, sweepStaleTemps, tempBase, tempOwner, tempPath } from '../core/atomic.js';
import { imageAuroc, prCurve, proCurve, rocCurve } from '../metrics/metrics.js';
import { writeScoresCsv } from './csv.js';
import { detectorOverlayRange } from './overlay.js';
import { expectObject, expectString } from '../core/validate.js';
import { mapLimit, writeThumbnails, type GalleryEntry, type ReportRecord } from './gallery.js';
import { buildReportPage, type DefectTypeRow, type MetricRow } from './page.js';
import { histogram, histogramChart, lineChart, type ChartSeries } from './svg.js';

export interface ReportOptions {
  /** AUPRO integration limit, in (0, 1]. Default 0.3. */
  fprLimit?: number;
  /** Longest side of the gallery thumbnails in pixels. Default 224. */
  thumbnailSize?: number;
  /** The data set's folder, shown on the page. */
  dataRoot?: string;
  /** Title of the page. Default '<method> on <data set>'. */
  title?: string;
  /**
   * A pixel-level curve with more points than this is written to CSV thinned by the metrics
   * functions' `decimate` option at `csvDecimate` (a point only where x or y moved by that
   * much); smaller curves, and all image-level ones, are written exactly. Default 100 000
   * (on magnetic-tile the exact pixel curves have ~11 million points, 600 MB of CSV each).
   */
  csvMaxPoints?: number;
  /** Decimation step of the thinned pixel-level CSVs. Default 1e-5. */
  csvDecimate?: number;
}

/** What `anomalens eval --json` prints: the report without the nested evaluation, plus notes and both levels. */
export function reportJson(r: EvaluationReport, notes: readonly string[]): Record<string, unknown> {
  const { evaluation, ...rest } = r;
  return { ...rest, notes, pixel: evaluation.pixel, image: evaluation.image };
}

/**
 * Evaluates `detector` on `dataset` (fitting first when it is not fitted, as evaluate() does)
 * and writes the report folder `dir`. Resolves to the evaluation report.
 * @example const r = await evaluateWithReport(det, await openMvtec('data/tile'), 'report')  // open report/index.html
 */
export async function evaluateWithReport(detector: Detector, dataset: Dataset, dir: string, options: ReportOptions = {}): Promise<EvaluationReport> {
  expectString(dir, 'dir');
  expectObject(options, 'options');
  await checkTarget(resolve(dir));
  const records: ReportRecord[] = [];
  const report = await detector.evaluate(dataset, {
    fprLimit: options.fprLimit,
    onPrediction: (s, p, mask) =>
      records.push({ path: s.path, defectType: s.defectType, label: s.label, score: p.predScore, map: p.anomalyMap, width: p.width, height: p.height, mask }),
  });
  await writeReport(dir, {
    report, records, notes: detector.notes,
    run: {
      method: detector.method, arch: detector.backbone.arch, weights: detector.backbone.weights, config: detector.config,
      preprocess: detector.preprocess, batchSize: detector.batchSize, dataset: dataset.name, dataRoot: options.dataRoot,
      trainImages: dataset.train.length,
    },
  }, options);
  return report;
}

export interface ReportInput {
  report: EvaluationReport;
  /** Every test image, in any order. */
  records: readonly ReportRecord[];
  notes: readonly string[];
  run: {
    method: string; arch: string; weights: string; config: Record<string, unknown>; preprocess: unknown; batchSize: number;
    dataset: string; dataRoot?: string; trainImages: number;
  };
}

/** Refuses a target that exists and is neither an empty folder nor an earlier report. */
/**
 * A writer killed between its two renames (old report out, new one in) leaves no folder at
 * `target`: the new one, complete, under its .tmp- name and the old one under .old-. Puts the
 * new one in place (or, without it, the old one back); sweepStaleTemps() removes the rest.
 */
export async function restoreHalfSwapped(target: string): Promise<void> {
  if (await stat(target).catch(() => undefined)) return;
  const dir = dirname(target);
  const base = basename(target);
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const old of names) {
    const pid = tempOwner(old);
    if (pid === undefined || !/\.old-\d+-[0-9a-f]{8}$/.test(old) || tempBase(old) !== base || isRunning(pid)) continue;
    const done = names.find((n) => /\.tmp-\d+-[0-9a-f]{8}$/.test(n) && tempBase(n) === base && tempOwner(n) === pid);
    await rename(join(dir, done ?? old), target).catch(() => undefined);
    return;
  }
}

async function checkTarget(dir: string): Promise<boolean> {
  const s = await stat(dir).catch(() => undefined);
  if (!s) return false;
  if (!s.isDirectory()) throw new AnomalensError('ERR_IO', `report folder ${dir} exists and is not a folder`);
  const entries = await readdir(dir);
  if (entries.length === 0) return true;
  const page = await readFile(join(dir, 'index.html'), 'utf8').catch(() => '');
  if (!page.includes('<meta name="generator" content="anomalens report">'))
    throw new AnomalensError('ERR_IO', `report folder ${dir} holds other files (no anomalens report in it): give an empty or new folder`);
  return true;
}

const fmtCsv = (v: number) => (v === Infinity ? 'inf' : v === -Infinity ? '-inf' : String(v));

/** Writes columns of equal length as CSV (header line, '\n' line ends), in chunks. */
async function writeColumns(path: string, header: string[], cols: ArrayLike<number>[]): Promise<void> {
  const fh = await open(path, 'w');
  try {
    const n = cols[0].length;
    let chunk = `${header.join(',')}\n`;
    for (let i = 0; i < n; i++) {
      chunk += `${cols.map((c) => fmtCsv(c[i])).join(',')}\n`;
      if (chunk.length > 1 << 20) {
        await fh.write(chunk);
        chunk = '';
      }
    }
    await fh.write(chunk);
  } finally {
    await fh.close();
  }
}

/** The PRO curve cut at fprLimit, with the last segment interpolated there (as aupro integrates it). */
export function truncateCurve(fpr: ArrayLike<number>, y: ArrayLike<number>, limit: number): { x: number[]; y: number[] } {
  const xs: number[] = [], ys: number[] = [];
  for (let i = 0; i < fpr.length; i++) {
    if (fpr[i] <= limit) {
      xs.push(fpr[i]);
      ys.push(y[i]);
      continue;
    }
    if (i > 0 && fpr[i - 1] < limit) {
      const t = (limit - fpr[i - 1]) / (fpr[i] - fpr[i - 1]);
      xs.push(limit);
      ys.push(y[i - 1] + t * (y[i] - y[i - 1]));
    }
    break;
  }
  return { x: xs, y: ys };
}

const IMAGE_COLOR = '#1f5fae';
const PIXEL_COLOR = '#c2410c';

/** Writes the report folder from an evaluation and its per-image records (see the module comment). */
export async function writeReport(dir: string, input: ReportInput, options: ReportOptions = {}): Promise<void> {
  const target = resolve(expectString(dir, 'dir'));
  const fprLimit = options.fprLimit ?? 0.3;
  const size = options.thumbnailSize ?? 224;
  const { report, records, run } = input;
  await restoreHalfSwapped(target);
  await sweepStaleTemps(dirname(target));
  const replace = await checkTarget(target);
  await mkdir(dirname(target), { recursive: true });
  const tmp = tempPath(target);
  await mkdir(join(tmp, 'curves'), { recursive: true });
  await mkdir(join(tmp, 'gallery'));
  try {
    const thr = report.thresholds;
    const order = records.map((_, i) => i).sort((a, b) => records[b].score - records[a].score);
    const scores = Float32Array.from(order, (i) => records[i].score);
    const labels = Uint8Array.from(order, (i) => records[i].label);
    const withMaps = records.every((r) => r.map && r.mask) && report.pixelAuroc !== null;
    const files: [string, string][] = [['report.json', 'the metrics as `eval --json` prints them']];
    const csv = async (name: string, what: string, header: string[], cols: ArrayLike<number>[]) => {
      await writeColumns(join(tmp, 'curves', name), header, cols);
      files.push([`curves/${name}`, `${what} (${cols[0].length} points)`]);
    };

    // Curves: exact, as the metrics functions return them; thinned only when drawn.
    const iRoc = await rocCurve(scores, labels);
    const iPr = await prCurve(scores, labels);
    await csv('image-roc.csv', 'image ROC', ['fpr', 'tpr', 'threshold'], [iRoc.fpr, iRoc.tpr, iRoc.thresholds]);
    await csv('image-pr.csv', 'image precision-recall', ['recall', 'precision', 'threshold'], [iPr.recall, iPr.precision, iPr.thresholds]);
    const roc: ChartSeries[] = [{ id: 'image-roc', label: `image (AUROC ${report.imageAuroc.toFixed(4)})`, x: iRoc.fpr, y: iRoc.tpr, color: IMAGE_COLOR }];
    const pr: ChartSeries[] = [{ id: 'image-pr', label: `image (AP ${report.evaluation.image!.averagePrecision.toFixed(4)})`, x: iPr.recall, y: iPr.precision, color: IMAGE_COLOR }];
    const curves: string[] = [];
    const diagonal: ChartSeries = { id: 'chance', label: 'chance', x: [0, 1], y: [0, 1], color: '#6b7280', dashed: true };
    const rocChart = () => lineChart([...roc, diagonal], {
      title: 'ROC curve', xLabel: 'false positive rate', yLabel: 'true positive rate',
      description: `Receiver operating characteristic: ${roc.map((s) => s.label).join('; ')}.`,
    });
    const prChart = () => lineChart(pr, {
      title: 'Precision-recall curve', xLabel: 'recall', yLabel: 'precision',
      description: `Precision against recall: ${pr.map((s) => s.label).join('; ')}.`,
    });
    if (withMaps) {
      const maps = order.map((i) => ({ data: records[i].map!, shape: records[i].mask!.shape }));
      const masks = order.map((i) => records[i].mask!);
      const maxPoints = options.csvMaxPoints ?? 100_000;
      const decimate = options.csvDecimate ?? 1e-5;
      // Drawn from the exact curve; written exactly unless it is huge. Each chart is built
      // before the next curve is computed, so that one exact pixel curve is held at a time.
      const pixelCsv = async <C>(exact: C & { thresholds: Float64Array }, again: () => Promise<C>, name: string, what: string, header: string[], cols: (c: C) => Float64Array[]) => {
        const thin = exact.thresholds.length > maxPoints;
        const c = thin ? await again() : exact;
        await csv(name, thin ? `${what}, thinned to a point per ${decimate} of either axis (the exact curve has ${exact.thresholds.length} points)` : what, header, cols(c));
      };
      {
        const pRoc = await rocCurve(maps, masks);
        await pixelCsv(pRoc, () => rocCurve(maps, masks, { decimate }), 'pixel-roc.csv', 'pixel ROC', ['fpr', 'tpr', 'threshold'], (c) => [c.fpr, c.tpr, c.thresholds]);
        roc.push({ id: 'pixel-roc', label: `pixel (AUROC ${report.pixelAuroc!.toFixed(4)})`, x: pRoc.fpr, y: pRoc.tpr, color: PIXEL_COLOR });
        curves.push(rocChart());
        roc.pop();
      }
      {
        const pPr = await prCurve(maps, masks);
        await pixelCsv(pPr, () => prCurve(maps, masks, { decimate }), 'pixel-pr.csv', 'pixel precision-recall', ['recall', 'precision', 'threshold'], (c) => [c.recall, c.precision, c.thresholds]);
        pr.push({ id: 'pixel-pr', label: `pixel (AP ${report.evaluation.pixel!.averagePrecision.toFixed(4)})`, x: pPr.recall, y: pPr.precision, color: PIXEL_COLOR });
        curves.push(prChart());
        pr.pop();
      }
      {
        const pPro = await proCurve(maps, masks);
        await pixelCsv(pPro, () => proCurve(maps, masks, { decimate }), 'pro.csv', 'PRO curve (all of it; AUPRO integrates it up to the FPR limit)', ['fpr', 'pro', 'threshold'], (c) => [c.fpr, c.pro, c.thresholds]);
        const cut = truncateCurve(pPro.fpr, pPro.pro, fprLimit);
        curves.push(lineChart([{ id: 'pro', label: `PRO up to FPR ${fprLimit} (AUPRO ${report.aupro!.toFixed(4)}: shaded area / ${fprLimit})`, x: cut.x, y: cut.y, color: PIXEL_COLOR, fill: true }], {
          title: 'PRO curve', xLabel: 'false positive rate (pixels)', yLabel: 'per-region overlap', xMax: fprLimit,
          description: `Per-region overlap against the pixel false positive rate up to ${fprLimit}; the shaded area divided by ${fprLimit} is the AUPRO, ${report.aupro!.toFixed(4)}.`,
        }));
      }
    } else curves.push(rocChart(), prChart());
    const hist = histogram(scores, labels, Math.min(60, Math.max(10, Math.ceil(Math.sqrt(scores.length) * 1.5))), thr.image);
    const histSvg = histogramChart(hist, {
      title: 'Image score histogram', threshold: thr.image,
      description: `Image scores of ${report.images - report.anomalous} normal and ${report.anomalous} anomalous test images in ${hist.normal.length} bins${thr.image === undefined ? '' : `; the image threshold ${thr.image.toPrecision(6)} is marked`}.`,
    });

    // Per defect type: that type's images against all normal ones.
    const types = [...new Set(records.map((r) => r.defectType))].sort((a, b) => (a === 'good' ? -1 : b === 'good' ? 1 : a.localeCompare(b)));
    const good = records.filter((r) => r.label === 0);
    const defectTypes: DefectTypeRow[] = [];
    for (const t of types) {
      const of = records.filter((r) => r.defectType === t);
      const flagged = thr.image === undefined ? 0 : of.filter((r) => r.score >= thr.image!).length;
      let auroc: number | null = null;
      if (of[0].label === 1 && good.length) {
        const both = [...good, ...of];
        auroc = await imageAuroc(Float32Array.from(both, (r) => r.score), Uint8Array.from(both, (r) => r.label));
      }
      defectTypes.push({ type: t, count: of.length, auroc, flagged });
    }

    // Gallery thumbnails, on the detector's pixel scale.
    const range = detectorOverlayRange(thr);
    const width = String(order.length).length;
    const rootOf = (p: string) => (run.dataRoot ? relative(run.dataRoot, p) : p);
    const gallery: GalleryEntry[] = await mapLimit(order, 4, async (i, rank) => {
      const r = records[i];
      const stem = String(rank).padStart(width, '0');
      const t = await writeThumbnails(r, join(tmp, 'gallery'), stem, { size, range, pixelThreshold: thr.pixel });
      const pred: 0 | 1 = thr.image !== undefined && r.score >= thr.image ? 1 : 0;
      const outcome = r.label ? (pred ? 'TP' : 'FN') : pred ? 'FP' : 'TN';
      return {
        name: basename(r.path), path: rootOf(r.path), type: r.defectType, label: r.label, score: r.score, pred, outcome,
        overlay: t.overlay && `gallery/${t.overlay}`, truth: `gallery/${t.truth}`, w: t.w, h: t.h,
      };
    });
    await writeScoresCsv(join(tmp, 'curves', 'scores.csv'), gallery.map((g, k) => ({
      rank: k, path: g.path, defect_type: g.type, label: g.label, score: g.score, pred_label: g.pred, outcome: g.outcome,
    })));
    files.push(['curves/scores.csv', 'image scores, labels and outcomes at the image threshold, highest score first (the gallery order)']);

    const ev = report.evaluation;
    const metrics: MetricRow[] = [
      { key: 'imageAuroc', label: 'image AUROC', value: report.imageAuroc, format: 'fixed4' },
      { key: 'pixelAuroc', label: 'pixel AUROC', value: report.pixelAuroc, format: 'fixed4' },
      { key: 'aupro', label: `AUPRO (FPR ≤ ${fprLimit})`, value: report.aupro, format: 'fixed4' },
      { key: 'f1', label: 'image F1 (adaptive)', value: report.f1, format: 'fixed4' },
      { key: 'pixelF1', label: 'pixel F1 (adaptive)', value: report.pixelF1, format: 'fixed4' },
      { key: 'image.averagePrecision', label: 'image AP', value: ev.image?.averagePrecision ?? null, format: 'fixed4' },
      { key: 'pixel.averagePrecision', label: 'pixel AP', value: ev.pixel?.averagePrecision ?? null, format: 'fixed4' },
      { key: 'thresholds.image', label: 'image threshold', value: thr.image ?? null, format: 'precision6' },
      { key: 'thresholds.pixel', label: 'pixel threshold', value: thr.pixel ?? null, format: 'precision6' },
      { key: 'fitSeconds', label: 'fit seconds', value: report.fitSeconds, format: 'fixed1' },
      { key: 'predictImagesPerSecond', label: 'predict images/s', value: report.predictImagesPerSecond, format: 'fixed1' },
    ];
    const runRows: [string, string][] = [
      ['method', run.method], ['backbone', run.arch], ['weights', run.weights],
      ['options', Object.entries(run.config).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(', ') || 'defaults'],
      ['preprocessing', JSON.stringify(run.preprocess)], ['batch size', String(run.batchSize)],
      ['data set', run.dataRoot ? `${run.dataset} (${run.dataRoot})` : run.dataset],
      ['images', `${run.trainImages} train; ${report.images} test, ${report.anomalous} anomalous, ${types.filter((t) => t !== 'good').length} defect types`],
    ];
    const html = buildReportPage({
      title: options.title ?? `${run.method} on ${run.dataset}`, generated: new Date().toISOString(), run: runRows, metrics, curves,
      histogram: histSvg, imageThreshold: thr.image, defectTypes, gallery, files, notes: input.notes,
    });
    await writeFile(join(tmp, 'report.json'), `${JSON.stringify(reportJson(report, input.notes), null, 1)}\n`);
    await writeFile(join(tmp, 'index.html'), html);
    // Swap the finished folder in.
    if (replace || (await checkTarget(target))) {
      const old = tempPath(target).replace(/\.tmp-(?=\d+-[0-9a-f]{8}$)/, '.old-');
      await rename(target, old);
      await rename(tmp, target);
      await rm(old, { recursive: true, force: true });
    } else await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    if (err instanceof AnomalensError || err instanceof TypeError || err instanceof RangeError) throw err;
    throw new AnomalensError('ERR_IO', `cannot write report ${target}: ${(err as Error).message}`, { cause: err });
  }
}
