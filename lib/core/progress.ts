/**
 * A one-line progress bar for long work: count, rate and ETA, redrawn at most 10 times a
 * second. Off when the stream is not a TTY (logs and pipes stay clean).
 */
export interface Progress {
  /** Adds `n` finished units. */
  tick(n?: number): void;
  /** Clears the line (when drawn). */
  done(): void;
}

export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  /** Default: the stream is a TTY. */
  enabled?: boolean;
  /** Unit name in the rate, e.g. 'img'. */
  unit?: string;
}

export function createProgress(label: string, total: number, options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr;
  const enabled = options.enabled ?? Boolean(stream.isTTY);
  const unit = options.unit ?? 'it';
  const start = performance.now();
  let done = 0;
  let last = 0;
  const draw = (force: boolean) => {
    if (!enabled) return;
    const now = performance.now();
    if (!force && now - last < 100) return;
    last = now;
    const secs = (now - start) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 ? (total - done) / rate : NaN;
    const width = 24;
    const filled = total > 0 ? Math.round((done / total) * width) : 0;
    const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
    const etaText = Number.isFinite(eta) ? `ETA ${formatSeconds(eta)}` : 'ETA --';
    stream.write(`\r${label} [${bar}] ${done}/${total} ${rate.toFixed(1)} ${unit}/s ${etaText}\x1b[K`);
  };
  return {
    tick(n = 1) {
      done += n;
      draw(done >= total);
    },
    done() {
      if (enabled) stream.write('\r\x1b[K');
    },
  };
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(0)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s - m * 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
