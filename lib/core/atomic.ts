/**
 * Whole-file writes that a reader never sees half done, and the clean-up of what a killed
 * writer leaves behind.
 *
 * Every writer of anomalens (detector and safetensors files, memory-bank and faiss-index
 * files in the native core, overlays, CSV, reports) writes to a sibling named
 * `<name>.tmp-<pid>-<8 hex digits>` and renames it over `<name>` when complete. A SIGKILL
 * or a power cut can leave that sibling behind, never a torn `<name>`. The pid in the name
 * says whose it is: the first write of a process into a folder removes the temporaries of
 * processes that no longer run (a live writer's are never touched, whatever its pid).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { AnomalensError } from './errors.js';

/** `<name>.tmp-<pid>-<hex>` (and `.old-` for a folder being swapped out); group 1 = the pid. */
const TEMP_NAME = /\.(?:tmp|old)-(\d+)-[0-9a-f]{8}$/;

/** A fresh temporary sibling of `path`, owned by this process. */
export function tempPath(path: string): string {
  return `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** The pid a temporary name belongs to, or undefined when `name` is not one of ours. */
export function tempOwner(name: string): number | undefined {
  const m = TEMP_NAME.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** Whether process `pid` runs (this one included). */
export function isRunning(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const swept = new Set<string>();

/**
 * Removes the temporaries of dead processes in `dir` (files or folders named as tempPath()
 * names them). Returns the names removed. Errors are swallowed: clean-up must never make a
 * write fail.
 */
export async function sweepStaleTemps(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = tempOwner(name);
    if (pid === undefined || isRunning(pid)) continue;
    try {
      await rm(join(dir, name), { recursive: true, force: true });
      removed.push(name);
    } catch {
      // Another process swept it first, or it is not ours to remove.
    }
  }
  return removed;
}

/**
 * Sweeps `path`'s folder once per process (the first write into a folder pays one readdir;
 * a process that writes thousands of overlays does not).
 */
export async function sweepOnce(path: string): Promise<void> {
  const dir = resolve(dirname(path));
  if (swept.has(dir)) return;
  swept.add(dir);
  await sweepStaleTemps(dir);
}

/** Test hook: forget which folders were swept, as a new process would. */
export function forgetSweeps(): void {
  swept.clear();
}

/**
 * Writes bytes (or a string, as UTF-8) to `path` through a temporary sibling and a rename,
 * creating the folder; on failure the temporary file is removed and ERR_IO names `path`.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = tempPath(path);
  try {
    await mkdir(dirname(path), { recursive: true });
    await sweepOnce(path);
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw new AnomalensError('ERR_IO', `cannot write ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** The base name a temporary belongs to (`a.png.tmp-12-0badf00d` -> `a.png`). */
export function tempBase(name: string): string {
  return basename(name).replace(TEMP_NAME, '');
}
