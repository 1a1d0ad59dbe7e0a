/**
 * Slow, obviously correct twins of the metrics, straight from the definitions (O(n^2) or
 * O(n * thresholds)), for small inputs. Labels here are already binary (0/1).
 */

/** Distinct values, descending (-0 and +0 are one value). */
function thresholdsDesc(scores: ArrayLike<number>): number[] {
  return [...new Set(Array.from(scores, (v) => (v === 0 ? 0 : v)))].sort((a, b) => b - a);
}

/** Counts of positives and negatives scored >= t. */
function countsAt(scores: ArrayLike<number>, labels: ArrayLike<number>, t: number): { tp: number; fp: number } {
  let tp = 0;
  let fp = 0;
  for (let i = 0; i < scores.length; i++) {
    if (scores[i] >= t) {
      if (labels[i]) tp++;
      else fp++;
    }
  }
  return { tp, fp };
}

/** AUROC as the probability that a random positive outscores a random negative (ties: 1/2). */
export function aurocSlow(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  let wins = 0;
  let pairs = 0;
  for (let i = 0; i < scores.length; i++) {
    if (!labels[i]) continue;
    for (let j = 0; j < scores.length; j++) {
      if (labels[j]) continue;
      pairs++;
      if (scores[i] > scores[j]) wins += 1;
      else if (scores[i] === scores[j]) wins += 0.5;
    }
  }
  return wins / pairs;
}

/** sklearn's average precision: sum over thresholds of (R_k - R_{k-1}) * P_k. */
export function averagePrecisionSlow(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  const P = Array.from(labels).filter(Boolean).length;
  let ap = 0;
  let prevRecall = 0;
  for (const t of thresholdsDesc(scores)) {
    const { tp, fp } = countsAt(scores, labels, t);
    ap += (tp / P - prevRecall) * (tp / (tp + fp));
    prevRecall = tp / P;
  }
  return ap;
}

/** Max F1 over thresholds (score >= t) and the largest t reaching it. */
export function f1MaxSlow(scores: ArrayLike<number>, labels: ArrayLike<number>): { f1: number; threshold: number } {
  const P = Array.from(labels).filter(Boolean).length;
  let best = { f1: -1, threshold: NaN, num: 0, den: 1 };
  for (const t of thresholdsDesc(scores)) {
    const { tp, fp } = countsAt(scores, labels, t);
    const num = 2 * tp;
    const den = tp + fp + P;
    if (num * best.den > best.num * den) best = { f1: num / den, threshold: t, num, den };
  }
  return { f1: best.f1, threshold: best.threshold };
}

/** sklearn.metrics.roc_curve, thresholds[0] = +Infinity. */
export function rocCurveSlow(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  dropIntermediate = true,
): { fpr: number[]; tpr: number[]; thresholds: number[] } {
  const ts = thresholdsDesc(scores);
  let pts = ts.map((t) => ({ t, ...countsAt(scores, labels, t) }));
  if (dropIntermediate && pts.length > 2) {
    pts = pts.filter(
      (p, i) =>
        i === 0 ||
        i === pts.length - 1 ||
        pts[i + 1].fp - 2 * p.fp + pts[i - 1].fp !== 0 ||
        pts[i + 1].tp - 2 * p.tp + pts[i - 1].tp !== 0,
    );
  }
  const N = pts[pts.length - 1].fp;
  const P = pts[pts.length - 1].tp;
  return {
    fpr: [0, ...pts.map((p) => p.fp / N)],
    tpr: [0, ...pts.map((p) => p.tp / P)],
    thresholds: [Infinity, ...pts.map((p) => p.t)],
  };
}

/** sklearn.metrics.precision_recall_curve plus a final +Infinity threshold. */
export function prCurveSlow(scores: ArrayLike<number>, labels: ArrayLike<number>): { precision: number[]; recall: number[]; thresholds: number[] } {
  const P = Array.from(labels).filter(Boolean).length;
  const ts = thresholdsDesc(scores).reverse();
  const pts = ts.map((t) => countsAt(scores, labels, t));
  return {
    precision: [...pts.map((p) => p.tp / (p.tp + p.fp)), 1],
    recall: [...pts.map((p) => p.tp / P), 0],
    thresholds: [...ts, Infinity],
  };
}

/** 8-connected components by flood fill: region index per pixel (-1 background), and sizes. */
export function componentsSlow(mask: ArrayLike<number>, h: number, w: number, threshold = 0): { labels: Int32Array; sizes: number[] } {
  const labels = new Int32Array(h * w).fill(-1);
  const sizes: number[] = [];
  for (let start = 0; start < h * w; start++) {
    if (mask[start] <= threshold || labels[start] >= 0) continue;
    const id = sizes.length;
    sizes.push(0);
    const stack = [start];
    labels[start] = id;
    while (stack.length) {
      const p = stack.pop() as number;
      sizes[id]++;
      const y = Math.floor(p / w);
      const x = p % w;
      for (let dy = -1; dy <= 1; dy++)
        for (let dx = -1; dx <= 1; dx++) {
          const yy = y + dy;
          const xx = x + dx;
          if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
          const q = yy * w + xx;
          if (mask[q] > threshold && labels[q] < 0) {
            labels[q] = id;
            stack.push(q);
          }
        }
    }
  }
  return { labels, sizes };
}

interface Img {
  data: ArrayLike<number>;
  shape: readonly number[];
}

/** MVTec AD's PRO curve by brute force: for each distinct threshold, scan every pixel. */
export function proCurveSlow(maps: Img[], masks: Img[], threshold = 0): { fpr: number[]; pro: number[]; thresholds: number[] } {
  const regions: { image: number; pixels: number[] }[] = [];
  let ok = 0;
  masks.forEach((m, k) => {
    const [h, w] = m.shape.slice(-2);
    const { labels, sizes } = componentsSlow(m.data, h, w, threshold);
    const first = regions.length;
    sizes.forEach(() => regions.push({ image: k, pixels: [] }));
    labels.forEach((l, p) => (l >= 0 ? regions[first + l].pixels.push(p) : ok++));
  });
  const all: number[] = [];
  maps.forEach((m) => all.push(...Array.from(m.data)));
  const fpr = [0];
  const pro = [0];
  const thresholds = [Infinity];
  for (const t of thresholdsDesc(all)) {
    let fp = 0;
    masks.forEach((m, k) => {
      for (let p = 0; p < m.data.length; p++) if (m.data[p] <= threshold && maps[k].data[p] >= t) fp++;
    });
    let sum = 0;
    for (const r of regions) sum += r.pixels.filter((p) => maps[r.image].data[p] >= t).length / r.pixels.length;
    fpr.push(Math.min(1, fp / ok));
    pro.push(Math.min(1, sum / regions.length));
    thresholds.push(t);
  }
  fpr.push(1);
  pro.push(1);
  thresholds.push(-Infinity);
  return { fpr, pro, thresholds };
}

/** MVTec AD's trapezoid(x, y, x_max): trapezoid rule up to x_max, last segment interpolated. */
export function trapezoidSlow(x: number[], y: number[], xMax: number): number {
  let area = 0;
  for (let i = 1; i < x.length; i++) {
    if (x[i] <= xMax) {
      area += 0.5 * (y[i] + y[i - 1]) * (x[i] - x[i - 1]);
    } else {
      if (x[i - 1] < xMax) {
        const yi = y[i - 1] + ((y[i] - y[i - 1]) * (xMax - x[i - 1])) / (x[i] - x[i - 1]);
        area += 0.5 * (yi + y[i - 1]) * (xMax - x[i - 1]);
      }
      break;
    }
  }
  return area;
}

export function auproSlow(maps: Img[], masks: Img[], fprLimit = 0.3, threshold = 0): number {
  const { fpr, pro } = proCurveSlow(maps, masks, threshold);
  return trapezoidSlow(fpr, pro, fprLimit) / fprLimit;
}
