/**
 * `anomalens fisher`: the empirical diagonal Fisher of PANDA's trainable parameters (lib/train/
 * fisher.ts) from a labelled image folder (one subfolder per class), written as safetensors
 * keyed by parameter name for PANDA's EWC variant. Registered on the program by lib/cli/cli.ts.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { AnomalensError } from '../core/errors.js';
import { createProgress, type Progress } from '../core/progress.js';
import { setNumThreads } from '../core/runtime.js';
import { listImages, loadBatch, squareResize } from '../image/images.js';
import { readSafetensors, type SafetensorsContent } from '../io/safetensors.js';
import { weightsFor } from '../io/weights.js';
import { computeFisher, writeFisher } from '../train/fisher.js';
import { TRAINABLE_ARCHS, TrainResnet, type ResnetTap, type TrainableArch } from '../train/resnet.js';
import { positiveInt } from './detect.js';

/** The class folders of `dir` (sorted by name) and their images (sorted, the first `perClass`). */
async function labelledFolder(dir: string, perClass: number | undefined): Promise<{ classes: string[]; paths: string[]; labels: number[] }> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw new AnomalensError('ERR_IO', `--data: cannot list '${dir}': ${(err as Error).message}`, { cause: err });
  }
  const classes = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (classes.length < 2)
    throw new InvalidArgumentError(`--data must hold one subfolder of images per class (at least 2), received ${classes.length} subfolder(s) in '${dir}'`);
  const paths: string[] = [];
  const labels: number[] = [];
  for (const [label, name] of classes.entries()) {
    const images = (await listImages(join(dir, name))).slice(0, perClass);
    paths.push(...images);
    labels.push(...images.map(() => label));
  }
  return { classes, paths, labels };
}

/** The trainable network up to the deepest stage the weights hold completely, loaded with them. */
function networkFor(arch: TrainableArch, file: SafetensorsContent, path: string): TrainResnet {
  const stages = arch.endsWith('_v2') ? ['stage4', 'stage3', 'stage2', 'stage1'] : ['layer4', 'layer3', 'layer2', 'layer1'];
  let missing: string[] = [];
  for (const tap of stages) {
    const net = new TrainResnet(arch, { lastTap: tap as ResnetTap });
    missing = net.tensorNames().filter((n) => !file.tensors[n]?.data);
    if (missing.length) continue;
    for (const n of net.tensorNames()) net.setTensor(n, file.tensors[n].data!);
    return net;
  }
  throw new AnomalensError('ERR_WEIGHTS_MISMATCH', `${path} does not hold ${arch} up to its first stage: missing ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`);
}

/** torchvision's classifier (fc.weight [k, d], fc.bias [k]) when the weights have one that fits the network. */
function classifierOf(net: TrainResnet, file: SafetensorsContent): { weight: Float32Array; bias: Float32Array; k: number } | null {
  const w = file.tensors['fc.weight'];
  const b = file.tensors['fc.bias'];
  if (net.arch.endsWith('_v2') || net.lastTap !== 'layer4' || !w?.data || !b?.data) return null;
  const d = net.tapShape('layer4', 1, 1, 1)[1];
  if (w.shape.length !== 2 || w.shape[1] !== d || b.shape.join() !== String(w.shape[0])) return null;
  return { weight: w.data, bias: b.data, k: w.shape[0] };
}

/** Class folders named by classifier index ('0' .. 'k-1'), or the first name that is not one. */
function classifierLabels(classes: string[], k: number): { labels: number[] } | { bad: string } {
  const labels: number[] = [];
  for (const c of classes) {
    if (!/^\d+$/.test(c) || Number(c) >= k) return { bad: c };
    labels.push(Number(c));
  }
  return { labels };
}

function bars(enabled: boolean): { report: (done: number, total: number, phase: string) => void; close: () => void } {
  let bar: Progress | undefined;
  let phase = '';
  let last = 0;
  const close = () => {
    bar?.done();
    bar = undefined;
  };
  return {
    report: (done, total, p) => {
      if (!enabled) return;
      if (p !== phase) {
        close();
        phase = p;
        last = 0;
        bar = createProgress(p, total, { unit: 'img' });
      }
      bar!.tick(done - last);
      last = done;
    },
    close,
  };
}

export function registerFisherCommand(program: Command): void {
  program
    .command('fisher')
    .description("Compute the empirical diagonal Fisher of PANDA's trainable parameters from a labelled image folder, for PANDA's EWC variant")
    .requiredOption('--arch <arch>', `backbone: ${TRAINABLE_ARCHS.join(', ')}`)
    .option('--weights <file|hf:owner/repo/file>', "backbone weights (safetensors); default: the arch's ImageNet weights on the Hugging Face Hub (torchvision archs)")
    .requiredOption('--data <dir>', 'a folder with one subfolder of images per class')
    .requiredOption('--out <file>', 'the Fisher to write (safetensors keyed by parameter name)')
    .option('--size <n>', 'square input size (images are resized without crop, as the Detector does); use the size PANDA is fitted at', positiveInt('--size'), 224)
    .option('--per-class <n>', 'the first N images (by name) of each class', positiveInt('--per-class'))
    .addOption(new Option('--head <head>', "the classifier of log p(y | x): 'classifier' = the weights' fc (class folders named by its index, 0..999); 'fit' = a softmax regression fitted on the pooled features (default when the weights have no classifier or the folders are not its indices)").choices(['classifier', 'fit']))
    .option('--folds <n>', "--head fit: cross-fitting folds (image i of the sorted list goes through the head fitted without fold i % n); 1 = one head fitted on every image", positiveInt('--folds'), 2)
    .option('--batch <n>', 'images per batched forward of the frozen prefix', positiveInt('--batch'), 32)
    .option('--threads <n>', 'native threads (default: all cores)', positiveInt('--threads'))
    .option('--json', 'print the summary as JSON')
    .option('--no-progress', 'no progress bar (it is off anyway when stderr is not a TTY)')
    .action(async (o) => {
      if (!(TRAINABLE_ARCHS as readonly string[]).includes(o.arch))
        throw new InvalidArgumentError(`--arch must be one of ${TRAINABLE_ARCHS.join(', ')}, received '${o.arch}'`);
      if (o.threads) setNumThreads(o.threads);
      const arch = o.arch as TrainableArch;
      const { classes, paths, labels: folderLabels } = await labelledFolder(o.data, o.perClass);
      const weightsPath = await weightsFor(arch, o.weights, { progress: o.progress === false ? false : undefined, flag: '--weights' });
      const file = await readSafetensors(weightsPath);
      const net = networkFor(arch, file, weightsPath);
      const classifier = classifierOf(net, file);
      const notes: string[] = [];
      let head: 'classifier' | 'fit' = o.head ?? 'fit';
      let labels = folderLabels;
      const mapped = classifier ? classifierLabels(classes, classifier.k) : null;
      if (o.head === 'classifier') {
        if (!classifier)
          throw new InvalidArgumentError(
            `--head classifier needs torchvision's fc.weight / fc.bias in the weights, over the full network to layer4; '${weightsPath}' ` +
              (arch.endsWith('_v2') ? `is a v2 arch (its classifier follows a final BN + ReLU the trainable network does not have)` : `has none (or stops at ${net.lastTap})`) +
              ': use --head fit',
          );
        if ('bad' in mapped!)
          throw new InvalidArgumentError(`--head classifier: class folders must be named by the classifier's class index (0..${classifier.k - 1}), received '${mapped!.bad}'; use --head fit for other labels`);
      }
      if (o.head === undefined) {
        head = classifier && mapped && 'labels' in mapped ? 'classifier' : 'fit';
        notes.push(head === 'classifier'
          ? "head: the weights' classifier (the class folders are its indices)"
          : `head: a softmax regression fitted on the pooled ${net.lastTap} features (${classifier ? 'the class folders are not the classifier\'s indices' : 'the weights have no classifier'})`);
      }
      if (head === 'classifier') labels = paths.map((_, i) => (mapped as { labels: number[] }).labels[folderLabels[i]]);

      const ac = new AbortController();
      const onSigint = () => {
        process.stderr.write('\ninterrupted: stopping; nothing is written\n');
        ac.abort(new Error('interrupted (SIGINT)'));
      };
      process.once('SIGINT', onSigint);
      const progress = bars(o.progress !== false);
      try {
        const size = o.size as number;
        const n = paths.length;
        const images = new Float32Array(n * 3 * size * size);
        for (let b = 0; b < n; b += o.batch) {
          if (ac.signal.aborted) throw new AnomalensError('ERR_ABORTED', 'computing the Fisher was aborted');
          const batch = await loadBatch(paths.slice(b, b + o.batch), squareResize(size));
          images.set(batch.data, b * 3 * size * size);
          progress.report(Math.min(b + o.batch, n), n, 'load');
        }
        const r = await computeFisher(net, images, [n, 3, size, size], labels, {
          head: head === 'classifier' ? { weight: classifier!.weight, bias: classifier!.bias } : undefined,
          folds: head === 'fit' ? o.folds : 1, batchSize: o.batch, signal: ac.signal, onProgress: progress.report,
        });
        progress.close();
        const totals = Object.entries(r.fisher).map(([name, f]) => {
          let sum = 0;
          let max = 0;
          for (const v of f) (sum += v), (max = Math.max(max, v));
          return { name, values: f.length, sum, mean: sum / f.length, max };
        }).sort((a, b) => b.sum - a.sum);
        await writeFisher(o.out, net, r.fisher, {
          lastTap: net.lastTap, head, classes: JSON.stringify(classes), samples: String(n), size: String(size),
          weights: weightsPath, accuracy: String(r.accuracy), meanLoss: String(r.meanLoss),
          ...(r.head.fitted ? { folds: String(r.head.folds), fitAccuracy: String(r.head.fitAccuracy) } : {}),
        });
        const summary = {
          out: o.out, arch, lastTap: net.lastTap, head, classes: classes.length, samples: n, size, startTap: r.startTap,
          tensors: totals.length, parameters: r.parameters, accuracy: r.accuracy, meanLoss: r.meanLoss,
          folds: r.head.folds, fitAccuracy: r.head.fitted ? r.head.fitAccuracy : null,
          seconds: r.seconds, imagesPerSecond: n / r.seconds, largest: totals.slice(0, 3), notes,
        };
        if (o.json) console.log(JSON.stringify(summary));
        else {
          for (const note of notes) console.log(`note: ${note}`);
          console.log(`wrote ${o.out}: the Fisher of ${totals.length} tensors (${r.parameters} values) of ${arch} to ${net.lastTap}, from ${n} images of ${classes.length} classes at ${size}x${size} in ${r.seconds.toFixed(1)} s (${(n / r.seconds).toFixed(2)} images/s)`);
          console.log(`  head ${head}${r.head.fitted ? `, cross-fitted over ${r.head.folds} fold(s) (accuracy on their own training samples ${r.head.fitAccuracy!.toFixed(3)})` : ''}: accuracy ${r.accuracy.toFixed(3)}${r.head.folds > 1 ? ' out of fold' : ''}, mean cross-entropy ${r.meanLoss.toFixed(4)}`);
          for (const t of summary.largest) console.log(`  ${t.name}: sum ${t.sum.toPrecision(4)}, mean ${t.mean.toPrecision(4)}, max ${t.max.toPrecision(4)}`);
        }
      } finally {
        progress.close();
        process.removeListener('SIGINT', onSigint);
      }
    });
}
