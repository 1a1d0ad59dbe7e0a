#!/usr/bin/env node
/**
 * The `anomalens` command line. Verbs: features, fit, predict, eval (lib/cli/detect.ts), bench (lib/cli/bench.ts),
 * fisher (lib/cli/fisher.ts).
 * Exit codes: 0 success, 1 an AnomalensError (code printed), 2 bad arguments.
 */
import { realpathSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { ARCHS, Backbone, type Arch } from '../nn/backbone.js';
import { AnomalensError } from '../core/errors.js';
import { writeFeatures, type FeatureSource } from '../io/features.js';
import { IMAGENET_PREPROCESS, listImages, type Preprocess } from '../image/images.js';
import { createProgress } from '../core/progress.js';
import { registerBenchCommand } from './bench.js';
import { registerDetectorCommands } from './detect.js';
import { registerFisherCommand } from './fisher.js';
import { setNumThreads } from '../core/runtime.js';
import { weightsFor } from '../io/weights.js';
import { registerServeCommands } from '../serve/cli.js';

function parseSize(value: string, name: string): number | [number, number] {
  const m = /^(\d+)(?:x(\d+))?$/.exec(value.trim());
  if (!m || Number(m[1]) < 1 || (m[2] !== undefined && Number(m[2]) < 1))
    throw new InvalidArgumentError(`${name} must be a positive integer S or HxW, received '${value}'`);
  return m[2] === undefined ? Number(m[1]) : [Number(m[1]), Number(m[2])];
}

function parsePositiveInt(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, received '${value}'`);
    return n;
  };
}

/** Expands --images arguments: each a folder (its images, sorted) or a file. */
async function resolveImages(args: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const a of args) {
    const s = await stat(a).catch(() => {
      throw new AnomalensError('ERR_IO', `--images: '${a}' does not exist`);
    });
    if (s.isDirectory()) out.push(...(await listImages(a)));
    else out.push(a);
  }
  return out;
}

export function buildProgram(): Command {
  const program = new Command('anomalens')
    .description('Visual anomaly detection: ResNet features, detectors, anomaly maps and metrics')
    .showHelpAfterError()
    .configureOutput({ outputError: (str, write) => write(str) });

  program
    .command('features')
    .description('Extract backbone feature maps at the given taps and write them as a safetensors file (one tensor per tap)')
    .requiredOption('--arch <arch>', `backbone architecture: ${ARCHS.join(', ')}`)
    .option('--weights <file|hf:owner/repo/file>',
      'weights (safetensors, torchvision/timm or ONNX Model Zoo v2 names); default: the arch\'s ImageNet weights on the Hugging Face Hub (torchvision archs)')
    .requiredOption('--taps <list>', 'comma-separated taps, e.g. layer2,layer3 (v2: stage2,stage3)')
    .option('--images <paths...>', 'image folder(s) or files')
    .option('--size <S|HxW>', 'resize: S = shorter side to S keeping the aspect ratio; HxW = exact', '256')
    .option('--crop <C|HxW|none>', 'centre crop after the resize', '224')
    .option('--input <file>', "an already-normalised NCHW float tensor named 'input' in a safetensors file")
    .requiredOption('--out <file>', 'output safetensors file')
    .option('--batch <n>', 'images per forward pass', parsePositiveInt('--batch'), 8)
    .option('--threads <n>', 'native threads (default: all cores)', parsePositiveInt('--threads'))
    .option('--json', 'print the summary as JSON')
    .action(async (o) => {
      if (Boolean(o.images) === Boolean(o.input)) throw new InvalidArgumentError('give exactly one of --images or --input');
      if (!(ARCHS as readonly string[]).includes(o.arch))
        throw new InvalidArgumentError(`--arch must be one of ${ARCHS.join(', ')}, received '${o.arch}'`);
      if (o.threads) setNumThreads(o.threads);
      const taps = String(o.taps).split(',').map((t) => t.trim()).filter(Boolean);
      let source: FeatureSource;
      if (o.images) {
        const preprocess: Preprocess = { resize: parseSize(o.size, '--size') };
        if (o.crop !== 'none') preprocess.crop = parseSize(o.crop, '--crop');
        source = { images: await resolveImages(o.images), preprocess };
      } else {
        source = { input: o.input };
      }
      const weights = await weightsFor(o.arch, o.weights, { flag: '--weights' });
      const backbone = await Backbone.load({ arch: o.arch as Arch, weights });
      const total = 'images' in source ? source.images.length : undefined;
      const progress = total !== undefined ? createProgress('features', total, { unit: 'img' }) : undefined;
      let last = 0;
      const summary = await writeFeatures({
        backbone, taps, source, out: o.out, batchSize: o.batch,
        onProgress: (done) => {
          progress?.tick(done - last);
          last = done;
        },
      });
      progress?.done();
      const rate = summary.count / summary.seconds;
      if (o.json) {
        console.log(JSON.stringify({ out: o.out, ...summary, imagesPerSecond: rate }));
      } else {
        console.log(`wrote ${o.out}: ${summary.count} input(s) of ${summary.inputShape[2]}x${summary.inputShape[3]}, ${rate.toFixed(1)} images/s`);
        for (const t of summary.taps) console.log(`  ${t.name} [${t.shape.join(', ')}]`);
      }
    });
  registerDetectorCommands(program);
  registerBenchCommand(program);
  registerFisherCommand(program);
  registerServeCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // Subcommands copy the parent's settings when they are created, so the override is set on
  // each: a bad option value of a verb then exits 2 like every other usage error.
  const override = (c: Command): void => {
    c.exitOverride();
    c.commands.forEach(override);
  };
  override(program);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    // Thrown by our action handlers (commander has not printed these).
    if (err instanceof InvalidArgumentError || err instanceof TypeError || err instanceof RangeError) {
      process.stderr.write(`anomalens: ${(err as Error).message}\n`);
      return 2;
    }
    // Raised by commander while parsing: already printed.
    const e = err as { code?: string };
    if (typeof e.code === 'string' && e.code.startsWith('commander.')) {
      return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help' ? 0 : 2;
    }
    if (err instanceof AnomalensError) {
      process.stderr.write(`anomalens: error [${err.code}]: ${err.message}\n`);
      // Interrupted (Ctrl-C during training): the shell's status for SIGINT.
      return err.code === 'ERR_ABORTED' ? 130 : 1;
    }
    process.stderr.write(`anomalens: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}

// Run when executed directly (bin), not when imported by tests.
const self = fileURLToPath(import.meta.url);
const invoked = process.argv[1] ? (() => { try { return realpathSync(process.argv[1]); } catch { return process.argv[1]; } })() : '';
if (invoked === self) {
  main(process.argv).then((code) => {
    process.exitCode = code;
  });
}
