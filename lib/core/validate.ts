/**
 * Argument validation shared by the public API. Messages name the argument, what was
 * expected and what was received; wrong types throw TypeError, bad values RangeError.
 */

/** A short description of a received value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of length ${(value as unknown as { length: number }).length}`;
  if (typeof value === 'function') return 'a function';
  return `an object (${Object.prototype.toString.call(value).slice(8, -1)})`;
}

export function expectString(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length === 0)
    throw new TypeError(`${name} must be a non-empty string, received ${describe(value)}`);
  return value;
}

export function expectBoolean(value: unknown, name: string): boolean {
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean, received ${describe(value)}`);
  return value;
}

export function expectNumber(value: unknown, name: string, opts: { min?: number; max?: number } = {}): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, received ${describe(value)}`);
  if (!Number.isFinite(value)) throw new RangeError(`${name} must be a finite number, received ${value}`);
  if (opts.min !== undefined && value < opts.min)
    throw new RangeError(`${name} must be >= ${opts.min}, received ${value}`);
  if (opts.max !== undefined && value > opts.max)
    throw new RangeError(`${name} must be <= ${opts.max}, received ${value}`);
  return value;
}

export function expectInteger(value: unknown, name: string, opts: { min?: number; max?: number } = {}): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be an integer, received ${describe(value)}`);
  if (!Number.isInteger(value)) throw new RangeError(`${name} must be an integer, received ${value}`);
  return expectNumber(value, name, opts);
}

export function expectOneOf<T extends string>(value: unknown, name: string, allowed: readonly T[]): T {
  if (typeof value !== 'string')
    throw new TypeError(`${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, received ${describe(value)}`);
  if (!(allowed as readonly string[]).includes(value))
    throw new RangeError(`${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, received '${value}'`);
  return value as T;
}

export function expectFloat32Array(value: unknown, name: string, length?: number): Float32Array {
  if (!(value instanceof Float32Array)) throw new TypeError(`${name} must be a Float32Array, received ${describe(value)}`);
  if (length !== undefined && value.length !== length)
    throw new RangeError(`${name} must have ${length} elements, received ${value.length}`);
  return value;
}

export function expectObject(value: unknown, name: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new TypeError(`${name} must be an object, received ${describe(value)}`);
  return value as Record<string, unknown>;
}

/** Validates a shape: an array of positive integers of the given rank. */
export function expectShape(value: unknown, name: string, rank?: number): number[] {
  if (!Array.isArray(value)) throw new TypeError(`${name} must be an array of integers, received ${describe(value)}`);
  if (rank !== undefined && value.length !== rank)
    throw new RangeError(`${name} must have ${rank} dimensions, received [${value.join(', ')}]`);
  value.forEach((d, i) => expectInteger(d, `${name}[${i}]`, { min: 1 }));
  return value as number[];
}

/** Throws RangeError naming the first NaN or infinite element. */
export function expectAllFinite(data: Float32Array | Float64Array, name: string): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isFinite(v)) throw new RangeError(`${name}[${i}] is ${v}; all values must be finite`);
  }
}
