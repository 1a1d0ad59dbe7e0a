/**
 * CLI hooks of the training methods: an epoch line on stderr (loss, images/s, ETA) and Ctrl-C
 * as cancellation (the method stops after the step in flight; a checkpoint written by
 * `--option checkpoint=FILE` keeps the last complete epoch).
 */
import type { RdEpochEvent } from '../methods/reverse-distillation.js';

export function trainingHooks(verbose: boolean): { signal: AbortSignal; onEpoch: (e: RdEpochEvent) => void } {
  const ac = new AbortController();
  process.once('SIGINT', () => {
    process.stderr.write('\ninterrupted: stopping after the step in flight\n');
    ac.abort(new Error('training interrupted (SIGINT)'));
  });
  return {
    signal: ac.signal,
    onEpoch: (e) => {
      if (verbose)
        process.stderr.write(`epoch ${e.epoch}/${e.epochs}: loss ${e.loss.toFixed(5)}, ${e.imagesPerSecond.toFixed(1)} img/s, ETA ${Math.round(e.etaSeconds)} s\n`);
    },
  };
}
