/** Argument checks shared by the training wrappers (messages name the argument). */
import { describe, expectFloat32Array, expectInteger, expectNumber, expectObject } from '../core/validate.js';

export const product = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

/** A Float32Array of exactly `count` elements. */
export function expectData(value: unknown, name: string, count: number): Float32Array {
  return expectFloat32Array(value, name, count);
}

/** null/undefined, or a Float32Array of `count` elements. */
export function expectOptionalData(value: unknown, name: string, count: number): Float32Array | null {
  if (value === null || value === undefined) return null;
  return expectFloat32Array(value, name, count);
}

/** An integer >= 1. */
export function expectSize(value: unknown, name: string): number {
  return expectInteger(value, name, { min: 1 });
}

/** [n, c, h, w] of positive integers. */
export function expectNchw(value: unknown, name: string): [number, number, number, number] {
  if (!Array.isArray(value)) throw new TypeError(`${name} must be an array [n, c, h, w], received ${describe(value)}`);
  if (value.length !== 4) throw new RangeError(`${name} must be [n, c, h, w] (4 sizes), received ${value.length} sizes`);
  return value.map((v, i) => expectSize(v, `${name}[${i}]`)) as [number, number, number, number];
}

/** A number or an [h, w] pair of integers >= min. */
export function expectPair(value: unknown, name: string, fallback: number, min: number): [number, number] {
  if (value === undefined) return [fallback, fallback];
  if (typeof value === 'number') {
    const v = expectInteger(value, name, { min });
    return [v, v];
  }
  if (!Array.isArray(value) || value.length !== 2)
    throw new TypeError(`${name} must be an integer or an [h, w] pair, received ${describe(value)}`);
  return [expectInteger(value[0], `${name}[0]`, { min }), expectInteger(value[1], `${name}[1]`, { min })];
}

/** Which gradients are wanted; every one unless said otherwise. */
export function expectWants(value: unknown, name: string, keys: readonly string[]): boolean[] {
  if (value === undefined) return keys.map(() => true);
  const o = expectObject(value, name);
  return keys.map((k) => {
    const v = o[k];
    if (v === undefined) return true;
    if (typeof v !== 'boolean') throw new TypeError(`${name}.${k} must be a boolean, received ${describe(v)}`);
    return v;
  });
}

export function expectPositive(value: unknown, name: string): number {
  const v = expectNumber(value, name, { min: 0 });
  if (v <= 0) throw new RangeError(`${name} must be > 0, received ${v}`);
  return v;
}
