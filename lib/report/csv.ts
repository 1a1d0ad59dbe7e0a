/**
 * The score table of `predict --out`: RFC 4180 CSV, written atomically (a temporary file in
 * the same folder, then a rename), so a reader never sees half a file.
 */
import { writeFileAtomic } from '../core/atomic.js';
import { describe, expectObject, expectString } from '../core/validate.js';

/** A CSV cell: null and undefined are written as empty cells. */
export type CsvValue = string | number | boolean | null | undefined;

/** One CSV field, quoted (RFC 4180) when it holds a comma, quote, CR, LF or edge spaces. */
export function csvField(value: CsvValue): string {
  if (value === null || value === undefined) return '';
  const s = String(value);
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * Writes rows as CSV (RFC 4180 quoting, '\n' line ends, a header line), atomically. Columns
 * are `options.columns`, else every key in order of first appearance. Numbers are written
 * with JavaScript's shortest round-trip form.
 * @example await writeScoresCsv('out/scores.csv', preds.map((p) => ({ path: p.path, score: p.predScore, label: p.predLabel })))
 */
export async function writeScoresCsv(
  path: string,
  rows: readonly Record<string, CsvValue>[],
  options: { columns?: string[] } = {},
): Promise<void> {
  expectString(path, 'path');
  if (!Array.isArray(rows)) throw new TypeError(`rows must be an array of objects, received ${describe(rows)}`);
  rows.forEach((r, i) => expectObject(r, `rows[${i}]`));
  expectObject(options, 'options');
  let columns: string[];
  if (options.columns !== undefined) {
    if (!Array.isArray(options.columns) || options.columns.length === 0)
      throw new TypeError(`options.columns must be a non-empty array of strings, received ${describe(options.columns)}`);
    columns = options.columns.map((c, i) => expectString(c, `options.columns[${i}]`));
  } else {
    const seen = new Set<string>();
    for (const r of rows) for (const k of Object.keys(r)) seen.add(k);
    columns = [...seen];
    if (columns.length === 0) throw new RangeError('rows has no columns: pass options.columns or at least one non-empty row');
  }
  const lines = [columns.map(csvField).join(',')];
  for (const r of rows) lines.push(columns.map((c) => csvField(r[c])).join(','));
  await writeFileAtomic(path, `${lines.join('\n')}\n`);
}
