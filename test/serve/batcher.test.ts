import { describe, expect, it } from 'vitest';
import { AnomalensError } from '../../lib/core/errors.js';
import { Batcher } from '../../lib/serve/batcher.js';

/** A model stand-in that doubles its inputs and records the batches it saw. */
function doubling(batches: number[][], gate?: Promise<void>) {
  return async (items: number[]) => {
    batches.push(items);
    await gate;
    return items.map((x) => 2 * x);
  };
}

describe('Batcher', () => {
  it('items submitted together run as one batch, outputs back to their callers in order', async () => {
    const batches: number[][] = [];
    const b = new Batcher({ run: doubling(batches), maxBatch: 8, maxWaitMs: 10_000 });
    // 8 = maxBatch: the batch starts without waiting out maxWaitMs
    const out = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((x) => b.submit(x)));
    expect(out).toEqual([2, 4, 6, 8, 10, 12, 14, 16]);
    expect(batches).toEqual([[1, 2, 3, 4, 5, 6, 7, 8]]);
  });

  it('items arriving while a batch runs form the next batch; no batch is larger than maxBatch', async () => {
    const batches: number[][] = [];
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const b = new Batcher({ run: doubling(batches, gate), maxBatch: 3, maxWaitMs: 0 });
    const first = b.submit(0);
    await Promise.resolve();
    const rest = [1, 2, 3, 4, 5, 6, 7].map((x) => b.submit(x));
    expect(b.inFlight).toBe(1);
    expect(b.depth).toBe(7);
    open();
    expect(await Promise.all([first, ...rest])).toEqual([0, 2, 4, 6, 8, 10, 12, 14]);
    expect(batches).toEqual([[0], [1, 2, 3], [4, 5, 6], [7]]);
  });

  it('a full queue refuses at once with ERR_BUSY; the queued items still complete', async () => {
    const batches: number[][] = [];
    const b = new Batcher({ run: doubling(batches), maxBatch: 8, maxWaitMs: 10_000, maxQueue: 2 });
    const a = b.submit(1), c = b.submit(2);
    const err = await b.submit(3).catch((e) => e);
    expect(err).toBeInstanceOf(AnomalensError);
    expect(err.code).toBe('ERR_BUSY');
    b.flush();
    expect(await Promise.all([a, c])).toEqual([2, 4]);
  });

  it('a failing batch rejects each of its items; drain waits for the running batch', async () => {
    const b = new Batcher<number, number>({ run: async () => { throw new RangeError('bad batch'); }, maxWaitMs: 10_000 });
    const ps = [b.submit(1), b.submit(2)].map((p) => p.catch((e) => e.message));
    await b.drain();
    expect(await Promise.all(ps)).toEqual(['bad batch', 'bad batch']);
    expect(b.depth + b.inFlight).toBe(0);
  });
});
