import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** ../shared/data relative to the project root (tests and benches never copy it). */
export const sharedData = resolve(import.meta.dirname, '..', '..', '..', 'shared', 'data');
export const resnet50v2Weights = join(sharedData, 'weights', 'resnet50v2-onnxzoo-stages1-3.safetensors');
export const magneticTile = join(sharedData, 'magnetic-tile');

/** Returns a skip reason naming the missing path, or undefined when present. */
export function missing(path: string): string | undefined {
  return existsSync(path) ? undefined : `skipped: ${path} is absent`;
}
