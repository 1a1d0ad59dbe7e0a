/** Confinement of file reads to a root folder, shared by the HTTP service and the worker. */
import { isAbsolute, relative, sep } from 'node:path';

/**
 * True when `path` (absolute, symlinks already resolved) is not strictly inside `root`: the
 * root itself, its parent and anything beside it are outside; a name like '..x' is inside.
 * @example outsideRoot('/data', '/data/../etc/passwd')  // true
 */
export function outsideRoot(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || rel === '..' || rel.startsWith('..' + sep) || isAbsolute(rel);
}
