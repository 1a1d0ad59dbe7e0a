/**
 * CLI hooks of the training methods: an epoch line on stderr (loss, images/s, ETA) and Ctrl-C
 * as cancellation (the method stops after the step in flight and fit rejects with
 * ERR_ABORTED, which the CLI turns into exit status 130; a checkpoint written by
 * `--option checkpoint=FILE` keeps the last complete epoch, and `--option resume=FILE`
 * continues from it). A second Ctrl-C, or one after the last epoch, quits at once.
 */
import { AnomalensError } from '../core/errors.js';
import type { RdEpochEvent } from '../methods/reverse-distillation.js';

/** Methods whose fit trains: their 'build' phase is the training, in per mille of its steps. */
export const TRAINING_METHODS: ReadonlySet<string> = new Set(['panda', 'reverse-distillation']);

export function trainingHooks(verbose: boolean): { signal: AbortSignal; onEpoch: (e: RdEpochEvent) => void } {
  const ac = new AbortController();
  const onSigint = () => {
    process.stderr.write('\ninterrupted: stopping after the step in flight (Ctrl-C again to quit now)\n');
    ac.abort(new AnomalensError('ERR_ABORTED', 'training interrupted (SIGINT); a checkpoint file keeps the last complete epoch'));
  };
  process.once('SIGINT', onSigint);
  return {
    signal: ac.signal,
    onEpoch: (e) => {
      // Training is over: Ctrl-C is the default again (quit) for what follows (evaluation).
      if (e.epoch >= e.epochs) process.off('SIGINT', onSigint);
      // On a terminal, the line replaces the progress bar's (which redraws below it).
      if (verbose)
        process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[K' : ''}epoch ${e.epoch}/${e.epochs}: loss ${Math.abs(e.loss) >= 1e-3 ? e.loss.toFixed(5) : e.loss.toExponential(4)}, ${e.imagesPerSecond.toFixed(1)} img/s, ETA ${Math.round(e.etaSeconds)} s\n`);
    },
  };
}
