/** Whole-file writes that a reader never sees half done. */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { AnomalensError } from './errors.js';

/**
 * Writes bytes (or a string, as UTF-8) to `path` through a temporary sibling and a rename,
 * creating the folder; on failure the temporary file is removed and ERR_IO names `path`.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw new AnomalensError('ERR_IO', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}
