/**
 * The one error type of anomalens. Every failure from the native core or the library carries
 * a stable `code`:
 *
 * | code | meaning |
 * |---|---|
 * | ERR_INVALID_ARGUMENT | a value is out of range or has the wrong shape |
 * | ERR_INVALID_FILE | a file exists but its content is malformed (weights, image, bank) |
 * | ERR_IO | a file or folder cannot be read or written |
 * | ERR_WEIGHTS_MISMATCH | missing, unexpected or mis-shaped tensors in a weights file |
 * | ERR_UNSUPPORTED | a feature this build or backend does not have |
 * | ERR_BUSY | the object is in use by an operation in flight |
 * | ERR_DISPOSED | the object was disposed |
 * | ERR_NATIVE_LOAD | the native addon could not be loaded |
 * | ERR_OUT_OF_MEMORY | an allocation failed |
 * | ERR_TOO_LARGE | a body or an image exceeds a configured limit (serve: 413) |
 * | ERR_UNAUTHORIZED | a missing or wrong bearer token (serve: 401) |
 * | ERR_FORBIDDEN | a path outside the allowed root (serve: 403) |
 * | ERR_NOT_FOUND | a named file or route does not exist (serve: 404) |
 * | ERR_TIMEOUT | a result did not arrive in time (serve --queue: 504) |
 * | ERR_ABORTED | an operation was cancelled through its AbortSignal |
 * | ERR_INTERNAL | a bug: please report it |
 *
 * Wrong types are reported as TypeError and bad values as RangeError by the argument
 * validation in TypeScript, before any native call.
 */
export class AnomalensError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AnomalensError';
    this.code = code;
  }
}

/**
 * Runs a native async call, capturing the caller's stack first so that a rejection points at
 * the caller's line rather than at an empty native frame.
 */
export async function callNative<T>(fn: () => Promise<T>): Promise<T> {
  const trace: { stack?: string } = {};
  Error.captureStackTrace(trace, callNative);
  try {
    return await fn();
  } catch (err) {
    throw rethrow(err, trace.stack);
  }
}

/** Synchronous twin of callNative, for O(1) accessors. */
export function callNativeSync<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    const trace: { stack?: string } = {};
    Error.captureStackTrace(trace, callNativeSync);
    throw rethrow(err, trace.stack);
  }
}

function rethrow(err: unknown, stack: string | undefined): unknown {
  if (err instanceof TypeError || err instanceof RangeError || err instanceof AnomalensError) {
    if (stack) err.stack = `${err.name}: ${err.message}\n${stack.split('\n').slice(1).join('\n')}`;
    return err;
  }
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : 'ERR_INTERNAL';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const out = new AnomalensError(code, message, { cause: err });
  if (stack) out.stack = `AnomalensError [${code}]: ${message}\n${stack.split('\n').slice(1).join('\n')}`;
  return out;
}
