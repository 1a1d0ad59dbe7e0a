/**
 * CLI verbs around detectors: fit, predict, eval. Registered on the program by lib/cli/cli.ts.
 */
import { stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ARCHS, type Arch } from '../nn/backbone.js';
import { openFolders, openMvtec, type Dataset } from '../data/datasets.js';
import { TRAINING_METHODS, trainingHooks } from './train.js';
import { DEFAULT_ARCH, Detector, IMAGE_LEVEL_METHODS, METHODS, type DetectorOptions, type EvaluationReport, type MethodName, type ProgressEvent } from '../detector/detector.js';
import { AnomalensError } from '../core/errors.js';
import { listImages } from '../image/images.js';
import { writeScoresCsv } from '../report/csv.js';
import { detectorOverlayRange, writeOverlay } from '../report/overlay.js';
import { evaluateWithReport, reportJson } from '../report/write.js';
import { createProgress, type Progress } from '../core/progress.js';
import { backends, setNumThreads } from '../core/runtime.js';
import { weightsFor } from '../io/weights.js';

export function positiveInt(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, received '${value}'`);
    return n;
  };
}

export function nonNegativeInt(name: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer, received '${value}'`);
    return n;
  };
}

/** --option key=value pairs (numbers and booleans parsed). */
function collectOption(value: string, previous: Record<string, unknown>): Record<string, unknown> {
  const m = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(value);
  if (!m) throw new InvalidArgumentError(`--option must be key=value, received '${value}'`);
  const raw = m[2];
  const v = raw === 'true' ? true : raw === 'false' ? false : raw !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
  return { ...previous, [m[1]]: v };
}

/** Applies --threads and --device (a CUDA request on a CPU-only build is an error). */
export function applyRuntime(o: { threads?: number; device?: string }): void {
  if (o.threads) setNumThreads(o.threads);
  if (o.device === 'cuda' && !backends().some((b) => b.name === 'cuda' && b.available))
    throw new AnomalensError('ERR_UNSUPPORTED', `--device cuda: this build has no usable CUDA backend (backends: ${backends().map((b) => `${b.name}${b.available ? '' : ' (unavailable)'}`).join(', ')}); use --device cpu`);
}

/** A folder in MVTec AD layout (has train/good), or a plain folder of images. */
async function isMvtec(dir: string): Promise<boolean> {
  return (await stat(join(dir, 'train', 'good')).catch(() => undefined))?.isDirectory() ?? false;
}

async function openData(o: { data: string; abnormal?: string; masks?: string }): Promise<Dataset> {
  if (await isMvtec(o.data)) return openMvtec(o.data);
  return openFolders({ normal: o.data, abnormal: o.abnormal, masks: o.masks });
}

/** Images to predict: folders (their images) and files. */
async function resolveImages(args: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const a of args) {
    const s = await stat(a).catch(() => {
      throw new AnomalensError('ERR_IO', `--data: '${a}' does not exist`);
    });
    out.push(...(s.isDirectory() ? await listImages(a) : [a]));
  }
  return out;
}

/**
 * A progress bar per phase, on stderr when it is a TTY. The 'build' phase is per mille of the
 * work after feature extraction: the memory bank, or the training of a training method.
 */
function progressReporter(enabled: boolean, method: string): (e: ProgressEvent) => void {
  const build = TRAINING_METHODS.has(method) ? 'training' : 'memory bank';
  let bar: Progress | undefined;
  let phase = '';
  let last = 0;
  return (e) => {
    if (!enabled) return;
    if (e.phase !== phase) {
      bar?.done();
      phase = e.phase;
      last = 0;
      bar = createProgress(phase === 'build' ? build : phase, e.total, { unit: phase === 'build' ? '‰' : 'img' });
    }
    bar!.tick(e.done - last);
    last = e.done;
    if (e.done >= e.total) bar!.done();
  };
}

/**
 * Detector options from the flags; --arch defaults to DEFAULT_ARCH and --weights to the arch's
 * ImageNet weights on the Hub (downloaded once; a v2 arch without --weights is a usage error).
 */
async function detectorOptions(o: Record<string, unknown>): Promise<DetectorOptions> {
  if (!(METHODS as readonly string[]).includes(String(o.method)))
    throw new InvalidArgumentError(`--method must be one of ${METHODS.join(', ')}, received '${o.method}'`);
  const arch = (o.arch ?? DEFAULT_ARCH) as Arch;
  if (!(ARCHS as readonly string[]).includes(arch))
    throw new InvalidArgumentError(`--arch must be one of ${ARCHS.join(', ')}, received '${arch}'`);
  if (o.epochs !== undefined && !TRAINING_METHODS.has(String(o.method)))
    throw new InvalidArgumentError(`--epochs applies to the training methods (${[...TRAINING_METHODS].join(', ')}), not to '${o.method}'`);
  // --no-progress turns the download bar off; otherwise it shows only on a terminal.
  const progress = o.progress === false ? false : undefined;
  const weights = await weightsFor(arch, o.weights as string | undefined, { progress, flag: '--weights' });
  return {
    method: o.method as MethodName, arch, weights,
    size: o.size as number | undefined, batchSize: o.batch as number | undefined,
    methodOptions: TRAINING_METHODS.has(String(o.method))
      ? { ...trainingHooks(o.progress !== false), ...(o.epochs === undefined ? {} : { epochs: o.epochs }), ...((o.option as Record<string, unknown>) ?? {}) }
      : (o.option as Record<string, unknown>) ?? {},
  };
}

function common(cmd: Command): Command {
  return cmd
    .addOption(new Option('--device <device>', 'compute device').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .option('--threads <n>', 'native threads (default: all cores)', positiveInt('--threads'))
    .option('--batch <n>', 'images per forward pass', positiveInt('--batch'))
    .option('--json', 'print the result as JSON')
    .option('--no-progress', 'no progress bar (it is off anyway when stderr is not a TTY)');
}

function detectorFlags(cmd: Command, required: boolean): Command {
  if (required) cmd.requiredOption('--method <method>', `detector: ${METHODS.join(', ')}`);
  else cmd.option('--method <method>', `detector: ${METHODS.join(', ')}`);
  return cmd
    .option('--arch <arch>', `backbone: ${ARCHS.join(', ')} (default ${DEFAULT_ARCH})`)
    .option('--weights <file|hf:owner/repo/file>',
      'backbone weights (safetensors); hf: specs are downloaded once into a cache; default: the arch\'s ImageNet weights on the Hugging Face Hub (torchvision archs)')
    .option('--size <n>', 'square input size (images are resized without crop)', positiveInt('--size'))
    .option('--epochs <n>', `training epochs of ${[...TRAINING_METHODS].join(' and ')} (default: the method's, 15 and 200)`, nonNegativeInt('--epochs'))
    .option('--option <key=value>', 'method option, repeatable (e.g. coreset=0.01, topK=50, d=100, k=2)', collectOption, {});
}

function printReport(r: EvaluationReport, json: boolean, notes: readonly string[]): void {
  const fmt = (v: number | null) => (v === null ? 'n/a' : v.toFixed(4));
  if (json) {
    console.log(JSON.stringify(reportJson(r, notes)));
    return;
  }
  for (const n of notes) console.log(`note: ${n}`);
  console.log(`${r.method} on ${r.arch}: ${r.images} test images (${r.anomalous} anomalous)`);
  const rows: [string, string][] = [
    ['image AUROC', fmt(r.imageAuroc)], ['pixel AUROC', fmt(r.pixelAuroc)], ['AUPRO (FPR <= 0.3)', fmt(r.aupro)],
    ['image F1 (adaptive)', fmt(r.f1)], ['pixel F1 (adaptive)', fmt(r.pixelF1)],
    ['image threshold', r.thresholds.image === undefined ? 'n/a' : r.thresholds.image.toPrecision(6)],
    ['fit seconds', r.fitSeconds.toFixed(1)], ['predict images/s', r.predictImagesPerSecond.toFixed(1)],
  ];
  for (const [k, v] of rows) console.log(`  ${k.padEnd(22)} ${v}`);
}

export function registerDetectorCommands(program: Command): void {
  const fit = program.command('fit').description('Fit a detector on images of normal parts and save it');
  detectorFlags(common(fit), true)
    .requiredOption('--data <dir>', 'MVTec AD category folder (uses train/good) or a folder of normal images')
    .requiredOption('--out <file>', 'detector file to write (e.g. model.anomalens)')
    .action(async (o) => {
      applyRuntime(o);
      const det = await Detector.create(await detectorOptions(o));
      det.onProgress = progressReporter(o.progress, det.method);
      const train = (await isMvtec(o.data)) ? (await openMvtec(o.data)).train.map((s) => s.path) : await listImages(o.data);
      await det.fit(train);
      await det.save(o.out);
      const result = { out: o.out, method: det.method, arch: det.backbone.arch, trainImages: train.length, fitSeconds: det.fitSeconds, notes: det.notes };
      if (o.json) console.log(JSON.stringify(result));
      else {
        for (const n of det.notes) console.log(`note: ${n}`);
        console.log(`fitted ${det.method} on ${train.length} images in ${det.fitSeconds.toFixed(1)} s; wrote ${o.out}`);
      }
    });

  const predict = program.command('predict').description('Score images with a saved detector; --out writes overlays and scores.csv');
  common(predict)
    .requiredOption('--model <file>', 'detector file written by fit or eval --save')
    .requiredOption('--data <paths...>', 'image folder(s) or files')
    .option('--weights <file>', 'backbone weights, when not at the path recorded in the model')
    .option('--out <dir>', 'write <name>_overlay.png per image and scores.csv here')
    .addOption(new Option('--overlay-scale <scale>', "overlay colours: 'detector' = the detector's pixel scale, threshold at the middle of the colour map (default when the model has thresholds); 'image' = each image's own min and max").choices(['detector', 'image']))
    .action(async (o) => {
      applyRuntime(o);
      const det = await Detector.load(o.model, { weights: o.weights });
      det.onProgress = progressReporter(o.progress, det.method);
      const range = o.overlayScale === 'image' ? undefined : detectorOverlayRange(det.thresholds);
      if (o.overlayScale === 'detector' && !range)
        throw new InvalidArgumentError(`--overlay-scale detector: '${o.model}' has no pixel threshold and normalisation (fit them with eval --save); use --overlay-scale image`);
      if (o.out && !range && !o.overlayScale && !IMAGE_LEVEL_METHODS.includes(det.method))
        console.error(`note: '${o.model}' has no pixel thresholds, so each overlay is scaled to its own min and max (every image looks hot somewhere); eval --save fits them`);
      const paths = await resolveImages(o.data);
      const preds = await det.predict(paths);
      if (o.out) {
        for (const p of preds)
          if (p.anomalyMap)
            await writeOverlay(p.path!, p.anomalyMap, { out: join(o.out, `${basename(p.path!, extname(p.path!))}_overlay.png`), mask: p.predMask, range });
        await writeScoresCsv(join(o.out, 'scores.csv'), preds.map((p) => ({ path: p.path, score: p.predScore, label: p.predLabel ?? '', normalizedScore: p.normalizedScore ?? '' })));
      }
      if (o.json) console.log(JSON.stringify(preds.map((p) => ({ path: p.path, predScore: p.predScore, predLabel: p.predLabel ?? null, normalizedScore: p.normalizedScore ?? null }))));
      else for (const p of preds) console.log(`${p.predScore.toPrecision(6).padStart(12)}  ${p.predLabel === undefined ? '-' : p.predLabel ? 'anomalous' : 'normal   '}  ${p.path}`);
    });

  const evalCmd = program.command('eval').description('Evaluate a detector on a test set: image AUROC, pixel AUROC, AUPRO, F1 (fits first when given --method)');
  detectorFlags(common(evalCmd), false)
    .requiredOption('--data <dir>', 'MVTec AD category folder, or a folder of normal images with --abnormal [--masks]')
    .option('--abnormal <dir>', 'folder layout: anomalous test images')
    .option('--masks <dir>', 'folder layout: masks of the anomalous images')
    .option('--model <file>', 'a saved detector (instead of --method/--arch/--weights)')
    .option('--save <file>', 'save the detector (with the F1-adaptive thresholds) here')
    .option('--report <dir>', 'write an HTML report here: <dir>/index.html (metrics, curves, histogram, gallery), curves as CSV')
    .action(async (o) => {
      applyRuntime(o);
      if (Boolean(o.model) === Boolean(o.method)) throw new InvalidArgumentError('give either --model or --method (with optional --arch and --weights)');
      const det = o.model ? await Detector.load(o.model, { weights: o.weights }) : await Detector.create(await detectorOptions(o));
      det.onProgress = progressReporter(o.progress, det.method);
      const data = await openData(o);
      const report = o.report ? await evaluateWithReport(det, data, o.report, { dataRoot: o.data }) : await det.evaluate(data);
      if (o.save) await det.save(o.save);
      printReport(report, Boolean(o.json), det.notes);
      if (o.report && !o.json) console.log(`wrote ${join(o.report, 'index.html')}`);
    });
}
