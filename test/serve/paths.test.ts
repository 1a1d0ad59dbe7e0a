import { describe, expect, it } from 'vitest';
import { outsideRoot } from '../../lib/internal.js';

describe('outsideRoot', () => {
  it('only paths strictly below the root are inside', async () => {
    expect(outsideRoot('/data', '/data/a.png')).toBe(false);
    expect(outsideRoot('/data', '/data/..x/a.png')).toBe(false);
    expect(outsideRoot('/data', '/data/sub/../a.png')).toBe(false);
    for (const p of ['/data', '/', '/data/..', '/data/../etc/passwd', '/database/a.png', '/etc/passwd']) expect(outsideRoot('/data', p), p).toBe(true);
  });
});
