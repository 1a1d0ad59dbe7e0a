/**
 * Weights resolution: a local path, or a file of a Hugging Face Hub repository downloaded
 * once into a cache.
 *
 * - `path/to/w.safetensors`: must exist (ERR_IO naming it otherwise).
 * - `hf:<owner>/<repo>/<file>` or `hf:<owner>/<repo>@<revision>/<file>` (revision: a branch,
 *   tag or commit; default main; `<file>` may contain folders): fetched from
 *   `<endpoint>/<owner>/<repo>/resolve/<revision>/<file>` into
 *   `<cacheDir>/hf/<owner>/<repo>/<revision>/<file>` and taken from there afterwards without
 *   any request. The endpoint is `$ANOMALENS_HF_ENDPOINT`, else `$HF_ENDPOINT`, else
 *   https://huggingface.co; the cache `$ANOMALENS_CACHE`, else ~/.cache/anomalens.
 *
 * The download streams into a temporary file next to the destination and is renamed into
 * place only when complete: a length that differs from Content-Length, or a SHA-256 that
 * differs from the Hub's `X-Linked-Etag` (sent for LFS files), rejects and leaves nothing in
 * the cache. Any failure (offline, HTTP error, stalled transfer) is an AnomalensError with
 * code ERR_IO naming the URL, the reason and where to put the file by hand.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { AnomalensError } from '../core/errors.js';
import { sweepOnce, tempPath } from '../core/atomic.js';
import { createProgress, type ProgressOptions } from '../core/progress.js';
import { expectInteger, expectObject, expectString } from '../core/validate.js';

export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co';

export interface ResolveWeightsOptions {
  /** Cache folder; default $ANOMALENS_CACHE, else ~/.cache/anomalens. */
  cacheDir?: string;
  /** Hub endpoint; default $ANOMALENS_HF_ENDPOINT, else $HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  /** Called as bytes arrive: received so far, and the total when the server sends it. */
  onProgress?: (received: number, total: number | undefined) => void;
  /** The progress bar on stderr: default on when stderr is a TTY; false turns it off. */
  progress?: boolean | ProgressOptions;
  /** Abort when no byte arrives for this long (ms). Default 60000. */
  idleTimeoutMs?: number;
}

/** A parsed `hf:` spec. */
export interface HfSpec {
  owner: string;
  repo: string;
  revision: string;
  file: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * Parses `hf:<owner>/<repo>[@<revision>]/<file>`; RangeError naming the problem otherwise.
 * @example parseHfSpec('hf:timm/resnet18.tv_in1k/model.safetensors')  // { owner: 'timm', repo: 'resnet18.tv_in1k', revision: 'main', file: 'model.safetensors' }
 */
export function parseHfSpec(spec: string): HfSpec {
  expectString(spec, 'spec');
  const bad = (why: string) =>
    new RangeError(`weights spec ${JSON.stringify(spec)} is not valid: ${why}; expected hf:<owner>/<repo>/<file> or hf:<owner>/<repo>@<revision>/<file>`);
  if (!spec.startsWith('hf:')) throw bad("it does not start with 'hf:'");
  const parts = spec.slice(3).split('/');
  if (parts.length < 3) throw bad('it has fewer than three parts');
  const [owner, repoRev, ...fileParts] = parts;
  const at = repoRev.indexOf('@');
  const repo = at < 0 ? repoRev : repoRev.slice(0, at);
  const revision = at < 0 ? 'main' : repoRev.slice(at + 1);
  if (!NAME.test(owner)) throw bad(`owner '${owner}' must be letters, digits, '.', '_' or '-'`);
  if (!NAME.test(repo)) throw bad(`repository '${repo}' must be letters, digits, '.', '_' or '-'`);
  if (!NAME.test(revision)) throw bad(`revision '${revision}' must be letters, digits, '.', '_' or '-'`);
  for (const p of fileParts)
    if (p === '' || p === '.' || p === '..' || p.includes('\\')) throw bad(`file path '${fileParts.join('/')}' has an empty, '.', '..' or backslash segment`);
  return { owner, repo, revision, file: fileParts.join('/') };
}

/** The cache folder: $ANOMALENS_CACHE, else ~/.cache/anomalens. */
export function defaultCacheDir(): string {
  return process.env.ANOMALENS_CACHE || join(homedir(), '.cache', 'anomalens');
}

/** The Hub endpoint: $ANOMALENS_HF_ENDPOINT, else $HF_ENDPOINT, else https://huggingface.co. */
export function defaultEndpoint(): string {
  return process.env.ANOMALENS_HF_ENDPOINT || process.env.HF_ENDPOINT || DEFAULT_HF_ENDPOINT;
}

/** The download URL of a parsed spec. */
export function hfUrl(spec: HfSpec, endpoint = defaultEndpoint()): string {
  const file = spec.file.split('/').map(encodeURIComponent).join('/');
  return `${endpoint.replace(/\/+$/, '')}/${spec.owner}/${spec.repo}/resolve/${encodeURIComponent(spec.revision)}/${file}`;
}

/** Where a parsed spec lives in the cache. */
export function hfCachePath(spec: HfSpec, cacheDir = defaultCacheDir()): string {
  return join(cacheDir, 'hf', spec.owner, spec.repo, spec.revision, ...spec.file.split('/'));
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() ?? false;
}

/**
 * Resolves a weights spec to a local file path (see the module comment): a path is checked
 * and returned absolute; an `hf:` spec is downloaded once into the cache.
 * @example const path = await resolveWeights('hf:timm/wide_resnet50_2.tv_in1k/model.safetensors')
 */
export async function resolveWeights(spec: string, options: ResolveWeightsOptions = {}): Promise<string> {
  expectString(spec, 'spec');
  const o = expectObject(options, 'options') as ResolveWeightsOptions;
  const known = ['cacheDir', 'endpoint', 'onProgress', 'progress', 'idleTimeoutMs'];
  for (const key of Object.keys(o))
    if (!known.includes(key)) throw new RangeError(`options has an unknown option '${key}'; expected ${known.join(', ')}`);
  if (o.cacheDir !== undefined) expectString(o.cacheDir, 'options.cacheDir');
  if (o.endpoint !== undefined) expectString(o.endpoint, 'options.endpoint');
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new TypeError('options.onProgress must be a function');
  if (o.progress !== undefined && typeof o.progress !== 'boolean') expectObject(o.progress, 'options.progress');
  const idle = o.idleTimeoutMs === undefined ? 60_000 : expectInteger(o.idleTimeoutMs, 'options.idleTimeoutMs', { min: 1 });

  if (!spec.startsWith('hf:')) {
    const path = resolve(spec);
    const s = await stat(path).catch((err: Error) => err);
    if (s instanceof Error) throw new AnomalensError('ERR_IO', `weights file ${spec} does not exist or cannot be read: ${s.message}`, { cause: s });
    if (!s.isFile()) throw new AnomalensError('ERR_IO', `weights path ${spec} is not a file`);
    return path;
  }
  const hf = parseHfSpec(spec);
  const dest = hfCachePath(hf, o.cacheDir ?? defaultCacheDir());
  if (await isFile(dest)) return dest;
  const url = hfUrl(hf, o.endpoint);
  await download(url, dest, spec, { ...o, idleTimeoutMs: idle });
  return dest;
}

/** An ERR_IO that names the URL, the reason and the manual fix. */
function downloadError(url: string, dest: string, spec: string, reason: string, cause?: unknown): AnomalensError {
  return new AnomalensError(
    'ERR_IO',
    `cannot download weights ${spec} from ${url}: ${reason}. ` +
      `To use the file without a download, fetch it by other means and save it as ${dest} ` +
      `(or pass its local path instead of the hf: spec).`,
    { cause },
  );
}

const MAX_REDIRECTS = 10;

async function download(url: string, dest: string, spec: string, o: ResolveWeightsOptions & { idleTimeoutMs: number }): Promise<void> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let stalled = false;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      stalled = true;
      controller.abort();
    }, o.idleTimeoutMs);
  };
  const tmp = tempPath(dest);
  let file: FileHandle | undefined;
  let received = 0;
  let total: number | undefined;
  try {
    arm();
    // Redirects are followed by hand so that the Hub's first answer (which carries the LFS
    // file's SHA-256) is seen; the CDN's final answer does not carry it.
    let res: Response | undefined;
    let sha256: string | undefined;
    let current = url;
    for (let hop = 0; ; hop++) {
      res = await fetch(current, { redirect: 'manual', signal: controller.signal, headers: { 'accept-encoding': 'identity' } });
      const etag = res.headers.get('x-linked-etag')?.replace(/^W\//, '').replace(/"/g, '');
      if (!sha256 && etag && /^[0-9a-f]{64}$/.test(etag)) sha256 = etag;
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        if (hop >= MAX_REDIRECTS) throw new Error(`more than ${MAX_REDIRECTS} redirects`);
        await res.body?.cancel();
        current = new URL(location, current).toString();
        continue;
      }
      break;
    }
    if (!res.ok) {
      await res.body?.cancel();
      const hint =
        res.status === 401 || res.status === 403 ? ' (the repository may be private or gated)'
        : res.status === 404 ? ' (no such repository, revision or file)'
        : '';
      throw new Error(`HTTP ${res.status} ${res.statusText}${hint}`);
    }
    if (!res.body) throw new Error('the response has no body');
    const encoding = res.headers.get('content-encoding');
    const lengthHeader = res.headers.get('content-length');
    // With a content encoding, Content-Length counts encoded bytes: no length check then.
    total = lengthHeader !== null && (!encoding || encoding === 'identity') ? Number(lengthHeader) : undefined;

    await mkdir(dirname(dest), { recursive: true });
    await sweepOnce(dest);
    // A FileHandle rather than a write stream: every write is awaited, so that after a
    // failure nothing is still being written (or created) when the file is removed.
    file = await open(tmp, 'w');
    // progress: true forces the bar on, an object passes its options on, absent = on a TTY.
    const barOptions = { unit: 'B', ...(typeof o.progress === 'object' ? o.progress : o.progress === true ? { enabled: true } : {}) };
    const bar = total !== undefined && o.progress !== false ? createProgress(`downloading ${spec}`, total, barOptions) : undefined;
    const hash = createHash('sha256');
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        arm();
        received += chunk.length;
        hash.update(chunk);
        await file.write(chunk);
        bar?.tick(chunk.length);
        o.onProgress?.(received, total);
      }
    } finally {
      bar?.done();
    }
    const done = file;
    file = undefined;
    await done.close();
    if (total !== undefined && received !== total) throw new Error(`the transfer was cut short: received ${received} of ${total} bytes`);
    const digest = hash.digest('hex');
    if (sha256 && digest !== sha256) throw new Error(`the file's SHA-256 is ${digest} but the server announced ${sha256}`);
    await rename(tmp, dest);
  } catch (err) {
    await file?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    const e = err as Error & { cause?: { code?: string; message?: string } };
    let reason: string;
    if (stalled) reason = `no data for ${o.idleTimeoutMs} ms`;
    else if (e.cause?.code || e.cause?.message) {
      const offline = e.cause.code === 'ENOTFOUND' || e.cause.code === 'EAI_AGAIN' ? ': offline?' : '';
      reason = `${e.message} (${e.cause.code ?? e.cause.message}${offline})`;
    }
    else reason = e.message;
    // undici may drop the last bytes it read when it detects the short body, so `received`
    // is a lower bound: do not print it as the count that arrived.
    if (!stalled && total !== undefined && received < total && !/cut short/.test(reason) && file !== undefined)
      reason = `the transfer was cut short before the ${total} announced bytes arrived (${reason})`;
    throw downloadError(url, dest, spec, reason, err);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * ImageNet weights per torchvision-layout arch: torchvision's own weights as the timm
 * `<arch>.tv_in1k` repositories on the Hugging Face Hub publish them (`model.safetensors`,
 * torchvision's key names, the classifier included). Used when no weights are given.
 */
export const DEFAULT_WEIGHTS: Readonly<Record<string, string>> = Object.freeze({
  resnet18: 'hf:timm/resnet18.tv_in1k/model.safetensors',
  resnet34: 'hf:timm/resnet34.tv_in1k/model.safetensors',
  resnet50: 'hf:timm/resnet50.tv_in1k/model.safetensors',
  resnet101: 'hf:timm/resnet101.tv_in1k/model.safetensors',
  resnet152: 'hf:timm/resnet152.tv_in1k/model.safetensors',
  wide_resnet50_2: 'hf:timm/wide_resnet50_2.tv_in1k/model.safetensors',
  wide_resnet101_2: 'hf:timm/wide_resnet101_2.tv_in1k/model.safetensors',
});

/**
 * The default weights spec of `arch` (see DEFAULT_WEIGHTS). The ONNX Model Zoo v2 archs have
 * no file on the Hub: for them a TypeError says how to pass weights (`flag` names the option
 * in the message, e.g. '--weights' for the CLI).
 * @example defaultWeights('resnet18')  // 'hf:timm/resnet18.tv_in1k/model.safetensors'
 */
export function defaultWeights(arch: string, flag = 'options.weights'): string {
  const spec = Object.hasOwn(DEFAULT_WEIGHTS, arch) ? DEFAULT_WEIGHTS[arch] : undefined;
  if (spec) return spec;
  throw new TypeError(
    `${flag} is required for arch '${arch}': it has no default weights on the Hugging Face Hub. ` +
      `Pass ${flag} a local safetensors file with ONNX Model Zoo initializer names (for example ` +
      `resnet50v2-onnxzoo-stages1-3.safetensors, converted from the initializers of resnet50-v2-7.onnx), ` +
      `or choose a torchvision arch (${Object.keys(DEFAULT_WEIGHTS).join(', ')}), whose ImageNet weights are downloaded by default`,
  );
}

/**
 * The weights to load for `arch`: `spec` when it is a local path (unchanged), its download
 * when it is an `hf:` spec, and the arch's default weights (downloaded once) when absent.
 */
export async function weightsFor(arch: string, spec: string | undefined, options: ResolveWeightsOptions & { flag?: string } = {}): Promise<string> {
  const { flag, ...resolveOptions } = options;
  if (spec === undefined) return resolveWeights(defaultWeights(arch, flag), resolveOptions);
  expectString(spec, flag ?? 'options.weights');
  return isHfSpec(spec) ? resolveWeights(spec, resolveOptions) : spec;
}

/** Whether a value is an `hf:` weights spec (as opposed to a path). */
export function isHfSpec(spec: unknown): spec is string {
  return typeof spec === 'string' && spec.startsWith('hf:');
}
