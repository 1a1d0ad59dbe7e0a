/**
 * Headless Chromium for page tests: Debian's `chromium` driven by playwright-core, with a
 * fresh profile and every background service off, so that the only requests are the page's.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext } from 'playwright-core';

export const CHROMIUM = process.env.ANOMALENS_CHROMIUM ?? '/usr/bin/chromium';

/** A skip reason when Chromium is absent (Debian package `chromium`), else undefined. */
export function noChromium(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : `skipped: ${CHROMIUM} is absent (apt-get install chromium)`;
}

/** Launches Chromium with a fresh user-data-dir; close() also removes the profile. */
export async function launchChromium(): Promise<{ context: BrowserContext; close: () => Promise<void> }> {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'anomalens-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-default-apps', '--disable-extensions', '--metrics-recording-only',
    ],
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
