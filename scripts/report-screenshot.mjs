#!/usr/bin/env node
// Screenshots of an evaluation report (eval --report DIR) in headless Chromium, for the
// README: node scripts/report-screenshot.mjs DIR OUT.png [--full]
// Prints the requests that left file:// (there should be none) and the page's element count.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const [dir, out, ...flags] = process.argv.slice(2);
if (!dir || !out) {
  console.error('usage: node scripts/report-screenshot.mjs DIR OUT.png [--full]');
  process.exit(2);
}
const profile = mkdtempSync(join(tmpdir(), 'anomalens-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.ANOMALENS_CHROMIUM ?? '/usr/bin/chromium', headless: true, viewport: { width: 1280, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await context.newPage();
  const requests = [];
  const errors = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(pathToFileURL(resolve(dir, 'index.html')).href, { waitUntil: 'load' });
  for (const img of await page.locator('#gallery img').all()) await img.scrollIntoViewIfNeeded();
  await page.waitForFunction(() => Array.from(document.querySelectorAll('#gallery img')).every((i) => i.complete));
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: out, fullPage: flags.includes('--full') });
  const elements = await page.evaluate(() => document.getElementsByTagName('*').length);
  console.log(JSON.stringify({ out, requests: requests.length, outsideFile: requests.filter((u) => !u.startsWith('file://')), consoleErrors: errors, elements }));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
