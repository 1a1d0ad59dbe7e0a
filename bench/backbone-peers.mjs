// Peers of bench/backbone.bench.mjs: PyTorch (eager and best mode) in a Python subprocess, and
// onnxruntime-node from bench/.peers/ (installed by bench/setup-peers-backbone.sh).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const peersDir = join(here, '.peers');
const PYTHON = process.env.BENCH_PYTHON ?? '/usr/bin/python3';

/**
 * bench/peers/torch_backbone.py in `serve` mode: one JSON request per line. The process idles
 * on its stdin between requests, so it takes no CPU while the other peers run.
 */
export class TorchPeer {
  #child;
  #pending = [];
  #stderr = '';

  constructor() {
    this.#child = spawn(PYTHON, [join(here, 'peers', 'torch_backbone.py'), 'serve'], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#child.stderr.on('data', (d) => {
      this.#stderr = (this.#stderr + d).slice(-4000);
    });
    this.#child.on('exit', (code) => {
      for (const p of this.#pending.splice(0)) p.reject(new Error(`PyTorch peer exited (${code}): ${this.#stderr}`));
    });
    createInterface({ input: this.#child.stdout }).on('line', (line) => {
      const p = this.#pending.shift();
      if (!p) return;
      let reply;
      try {
        reply = JSON.parse(line);
      } catch {
        p.reject(new Error(`PyTorch peer said: ${line}`));
        return;
      }
      if (reply.error) p.reject(new Error(`PyTorch peer: ${reply.error}`));
      else p.resolve(reply);
    });
  }

  request(req) {
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      this.#child.stdin.write(`${JSON.stringify(req)}\n`);
    });
  }

  /** Builds eager and best-mode models for the config (and runs each twice). */
  load({ arch, size, batch, threads, tap }) {
    return this.request({ op: 'load', arch, size, batch, threads, tap });
  }

  /** One forward pass; its duration in ms as timed inside Python (no IPC in it). */
  async run(mode) {
    return (await this.request({ op: 'run', mode })).ms;
  }

  async close() {
    if (this.#child.exitCode !== null) return;
    const exited = new Promise((r) => this.#child.once('exit', r));
    this.#child.stdin.write('{"op": "quit"}\n');
    this.#child.stdin.end();
    await exited;
  }
}

/** onnxruntime-node from bench/.peers, or null (with the reason) when it is not installed. */
export async function loadOrt() {
  const pkg = join(peersDir, 'node_modules', 'onnxruntime-node', 'package.json');
  if (!existsSync(pkg)) return { ort: null, why: 'onnxruntime-node is not installed: run bash bench/setup-peers-backbone.sh' };
  const require = createRequire(pkg);
  const ort = require('onnxruntime-node');
  return { ort, version: require('./package.json').version };
}

/** Path of the exported ONNX model of a config (see bench/setup-peers-backbone.sh). */
export function onnxModelPath(arch, size, batch, tap) {
  return join(peersDir, 'models', `${arch}-${size}-b${batch}-${tap}.onnx`);
}

/** An onnxruntime session with every graph optimisation, `threads` intra-op threads. */
export async function ortSession(ort, path, threads) {
  return ort.InferenceSession.create(path, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
  });
}
