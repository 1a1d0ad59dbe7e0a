// A report page with 2000 gallery entries in headless Chromium: the gallery renders one page
// of cards at a time, so the DOM stays small (counted nodes, not timings) whatever the page,
// filter or page size, and the last page and the filters hold the right cards.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GalleryEntry } from '../../lib/report/gallery.js';
import { buildReportPage } from '../../lib/internal.js';
import { launchChromium, noChromium } from '../helpers/browser.js';
import { tempDir } from '../helpers/tmp.js';

const N = 2000;
const TYPES = ['good', 'crack', 'blowhole', 'fray', 'uneven'];
const { dir, cleanup } = tempDir('anomalens-gallery-scale-');
afterAll(cleanup);

if (noChromium()) console.warn(noChromium());
describe.skipIf(noChromium())('a 2000-image gallery', () => {
  let page: Page;
  let close: () => Promise<void>;
  const errors: string[] = [];
  const nodes = () => page.evaluate(() => document.getElementsByTagName('*').length);
  const cards = () => page.locator('#gallery figure').count();
  const status = () => page.textContent('#gallery-status');

  beforeAll(async () => {
    mkdirSync(join(dir, 'gallery'));
    // every entry shows the same two small thumbnails
    for (const [name, v] of [['o.webp', 200], ['t.webp', 90]] as const)
      await sharp(Buffer.alloc(32 * 32 * 3, v), { raw: { width: 32, height: 32, channels: 3 } }).webp().toFile(join(dir, 'gallery', name));
    const gallery: GalleryEntry[] = Array.from({ length: N }, (_, i) => {
      const type = TYPES[i % TYPES.length];
      const label = type === 'good' ? 0 : 1;
      const score = N - i;
      const pred = score >= 1000 ? 1 : 0;
      return {
        name: `${i}.png`, path: `test/${type}/${i}.png`, type, label, score, pred,
        outcome: label ? (pred ? 'TP' : 'FN') : pred ? 'FP' : 'TN', overlay: 'gallery/o.webp', truth: 'gallery/t.webp', w: 32, h: 32,
      };
    });
    writeFileSync(join(dir, 'index.html'), buildReportPage({
      title: 'scale', generated: 'now', run: [], metrics: [], curves: [], histogram: '', imageThreshold: 1000,
      defectTypes: [], gallery, files: [], notes: [],
    }));
    const b = await launchChromium();
    close = b.close;
    page = await b.context.newPage();
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(pathToFileURL(join(dir, 'index.html')).href, { waitUntil: 'load' });
  });
  afterAll(async () => close?.());

  it('keeps one page of cards in the DOM, on every page, filter and page size', async () => {
    expect(await cards()).toBe(24);
    expect(await page.locator('#gallery img').count()).toBe(48);
    const first = await nodes();
    // a card is li > figure > (div > 2 img) + figcaption > 3 span: 9 elements
    expect(first).toBeLessThan(400);
    expect(await status()).toBe(`Page 1 of ${Math.ceil(N / 24)}: images 1-24 of ${N}`);
    // the last page by keyboard
    await page.focus('#page-last');
    await page.keyboard.press('Enter');
    expect(await status()).toBe(`Page ${Math.ceil(N / 24)} of ${Math.ceil(N / 24)}: images ${24 * (Math.ceil(N / 24) - 1) + 1}-${N} of ${N}`);
    expect(await cards()).toBe(N % 24);
    expect(await nodes()).toBeLessThan(first);
    // the most cards a page holds
    await page.selectOption('#page-size', '96');
    expect(await cards()).toBe(96);
    const most = await nodes();
    expect(most - first).toBe((96 - 24) * 9);
    // filters: a type, then errors only
    await page.selectOption('#filter-type', 'crack');
    expect(await status()).toBe(`Page 1 of ${Math.ceil(N / 5 / 96)}: images 1-96 of ${N / 5}`);
    const types = await page.$$eval('#gallery figure .info', (f) => [...new Set(f.map((x) => x.textContent!.split(' · ')[1]))]);
    expect(types).toEqual(['crack']);
    await page.selectOption('#filter-type', 'all');
    await page.selectOption('#filter-outcome', 'FP');
    // good entries are every 5th (i % 5 === 0) with score N - i >= 1000, i.e. i <= 1000
    expect(await status()).toBe(`Page 1 of 3: images 1-96 of ${Math.floor(1000 / 5) + 1}`);
    await page.selectOption('#filter-outcome', 'all');
    await page.selectOption('#sort', 'score-asc');
    const label = await page.locator('#gallery figure').first().getAttribute('aria-label');
    expect(label).toMatch(/^1999\.png, defect uneven, score 1\.000, false negative$/);
    expect(await nodes()).toBe(most);
    expect(errors).toEqual([]);
  });
});
