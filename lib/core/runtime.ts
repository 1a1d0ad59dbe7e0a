/** Process-wide native settings. */
import { callNativeSync } from './errors.js';
import { native } from './native.js';
import { expectInteger } from './validate.js';

/**
 * Sets the number of threads used by all native work (oneDNN, OpenBLAS and anomalens'
 * own loops share one OpenMP pool). Default: the number of cores.
 * @example setNumThreads(2)
 */
export function setNumThreads(n: number): void {
  expectInteger(n, 'n', { min: 1, max: 4096 });
  callNativeSync(() => native().setNumThreads(n));
}

/** The thread count native work uses. */
export function numThreads(): number {
  return native().numThreads();
}

/** The compute backends compiled into this build and whether each can run here. */
export function backends(): { name: string; available: boolean }[] {
  return native().backends();
}
