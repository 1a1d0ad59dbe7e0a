// The CSV score table: round trips through Python's csv module and a small RFC 4180 reader.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { csvField } from '../../lib/internal.js';
import { writeScoresCsv } from '../../lib/report/csv.js';
import { tempDir } from '../helpers/tmp.js';

const { dir: tmp, cleanup } = tempDir('anomalens-csv-');
afterAll(cleanup);

/** A small RFC 4180 reader (the twin of writeScoresCsv). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [], field = '', quoted = false, i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i += 2; continue; }
      if (ch === '"') { quoted = false; i++; continue; }
      field += ch; i++; continue;
    }
    if (ch === '"') { quoted = true; i++; continue; }
    if (ch === ',') { row.push(field); field = ''; i++; continue; }
    if (ch === '\n') { row.push(field); rows.push(row); row = []; field = ''; i++; continue; }
    field += ch; i++;
  }
  if (field !== '' || row.length) { row.push(field); rows.push(row); }
  return rows;
}

describe('writeScoresCsv', () => {
  const rows = [
    { path: 'plain.png', score: 0.25, label: 1 },
    { path: 'a,b.png', score: 1e-7, label: 0 },
    { path: 'say "hi".png', score: -3, label: null },
    { path: 'two\nlines.png', score: 0.1 + 0.2, label: undefined },
    { path: ' leading space.png', score: 12345678.9, label: true },
  ];
  const want = [
    ['path', 'score', 'label'],
    ['plain.png', '0.25', '1'],
    ['a,b.png', '1e-7', '0'],
    ['say "hi".png', '-3', ''],
    ['two\nlines.png', '0.30000000000000004', ''],
    [' leading space.png', '12345678.9', 'true'],
  ];

  it('round-trips file names with commas, quotes and newlines', async () => {
    const path = join(tmp, 'csv', 'scores.csv');
    await writeScoresCsv(path, rows);
    const text = readFileSync(path, 'utf8');
    expect(parseCsv(text)).toEqual(want);
    expect(readdirSync(join(tmp, 'csv'))).toEqual(['scores.csv']);
    // Python's csv module reads the same
    const py = execFileSync('/usr/bin/python3', ['-c', 'import csv, json, sys; print(json.dumps(list(csv.reader(open(sys.argv[1], newline="")))))', path], { encoding: 'utf8' });
    expect(JSON.parse(py)).toEqual(want);
    // and numbers come back exactly
    expect(Number(parseCsv(text)[4][1])).toBe(0.1 + 0.2);
  });

  it('takes explicit columns and overwrites atomically', async () => {
    const path = join(tmp, 'csv2.csv');
    await writeScoresCsv(path, rows, { columns: ['label', 'path'] });
    await writeScoresCsv(path, rows.slice(0, 2), { columns: ['path', 'missing'] });
    expect(parseCsv(readFileSync(path, 'utf8'))).toEqual([['path', 'missing'], ['plain.png', ''], ['a,b.png', '']]);
    await writeScoresCsv(path, [], { columns: ['path'] });
    expect(readFileSync(path, 'utf8')).toBe('path\n');
    await expect(writeScoresCsv(path, [])).rejects.toThrow(/no columns/);
    await expect(writeScoresCsv(join(tmp, 'csv2.csv', 'x.csv'), rows)).rejects.toMatchObject({ code: 'ERR_IO' });
    expect(csvField('x"y')).toBe('"x""y"');
    expect(csvField('tail ')).toBe('"tail "');
    expect(csvField(null)).toBe('');
  });
});
