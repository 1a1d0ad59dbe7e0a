/** `anomalens serve` as a process: where it binds, what it refuses, and SIGTERM. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDist, exited, fitFixture, spawnCli, waitForLine, type Fixture } from './helpers.js';

let fx: Fixture;
beforeAll(async () => {
  ensureDist();
  fx = await fitFixture();
});
afterAll(() => {
  fx?.detector.dispose();
  fx?.cleanup();
});

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line === undefined ? NaN : Number(line.slice(name.length + 1));
}

describe('anomalens serve', () => {
  it('binds to 127.0.0.1 by default; --host 0.0.0.0 without a token exits 1 before binding', async () => {
    const child = spawnCli(['serve', '--model', fx.model, '--port', '0']);
    try {
      const line = await waitForLine(child, /^listening on /);
      expect(line).toMatch(/^listening on http:\/\/127\.0\.0\.1:\d+$/);
    } finally {
      child.kill('SIGTERM');
      expect(await exited(child)).toEqual({ code: 0, signal: null });
    }
    const refused = spawnCli(['serve', '--model', fx.model, '--host', '0.0.0.0', '--port', '0'], { ANOMALENS_TOKEN: '' });
    let err = '';
    refused.stderr!.on('data', (d) => (err += d));
    expect((await exited(refused)).code).toBe(1);
    expect(err).toContain('--host 0.0.0.0 would expose the service');
    expect(err).toContain('--insecure');
  });

  it('ANOMALENS_TOKEN protects /predict; SIGTERM lets the request in flight finish, then the process exits 0', async () => {
    const token = 'token-from-the-environment';
    // A batch wait of a minute keeps the request in flight until SIGTERM flushes it.
    const child = spawnCli(['serve', '--model', fx.model, '--port', '0', '--batch-wait-ms', '60000', '--batch', '64'], { ANOMALENS_TOKEN: token });
    try {
      const url = (await waitForLine(child, /^listening on /)).split(' ')[2];
      const auth = { authorization: `Bearer ${token}` };
      expect((await fetch(`${url}/metrics`)).status).toBe(401);
      const form = new FormData();
      form.append('image', new Blob([readFileSync(join(fx.root, 'spot_0.png'))], { type: 'image/png' }), 'spot_0.png');
      const inFlight = fetch(`${url}/predict`, { method: 'POST', body: form, headers: auth });
      // Wait until the server holds it (queue depth 1), then ask it to stop.
      for (let depth = 0; depth !== 1; ) {
        await new Promise((r) => setTimeout(r, 50));
        depth = metric(await (await fetch(`${url}/metrics`, { headers: auth })).text(), 'anomalens_queue_depth');
      }
      child.kill('SIGTERM');
      const res = await inFlight;
      expect(res.status).toBe(200);
      const body = await res.json();
      const [ref] = await fx.detector.predict([join(fx.root, 'spot_0.png')]);
      expect(Math.abs(body.predScore - ref.predScore) / ref.predScore).toBeLessThan(1e-4);
      expect(body.predLabel).toBe(1);
      expect(await exited(child)).toEqual({ code: 0, signal: null });
      await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
