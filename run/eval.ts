// Evaluates a trained checkpoint on its test set (the eval command). The model is rebuilt
// from the configuration saved in the checkpoint's sidecar, loaded with the
// saved weights and batchnorm running statistics, and run in eval mode; loss,
// accuracy, per-class accuracy and the confusion matrix go to the terminal and
// to eval.json. With the run's own settings the accuracy is the one its
// summary.json reports (same test images, same batch size, same kernels).
import { join } from 'node:path';
import { type Device, createDevice } from '../gpu/device.ts';
import { writeFileAtomic } from '../engine/io/atomic.ts';
import { withPathAsync } from '../engine/io/fsErrors.ts';
import { argmax, softmaxCrossEntropy } from '../engine/ops/loss.ts';
import { type Tensor, keep, noGrad, tidy } from '../engine/tensor.ts';
import { type CifarVariant, loadCifar } from '../data/cifar.ts';
import { type Dataset, datasetSize, subset } from '../data/dataset.ts';
import { syntheticDataset } from '../data/synthetic.ts';
import { parameterCount } from '../models/index.ts';
import { augmenterFor, evalSource, loadDatasets } from './session.ts';
import { openTrainedCheckpoint, restoreTrainedModel } from './trained.ts';
import { type DatasetName, type TrainConfig, validateConfig } from './config.ts';

export interface EvalOptions {
  /** a run folder (its checkpoints/), a checkpoints folder (its `latest`), or one ckpt-NNNNNN folder */
  checkpoint: string;
  dataset?: DatasetName | undefined;
  data?: string | undefined;
  /** first N test images; 0: the whole test set; absent: as the run was trained */
  testSubset?: number | undefined;
  /** images per evaluation batch (default: as the run evaluated) */
  batchSize?: number | undefined;
  /** eval.json's path (default: in the run folder, else in the folder given) */
  out?: string | undefined;
}

export interface ClassResult {
  name: string;
  correct: number;
  total: number;
  /** correct / total; null for a class with no test image */
  accuracy: number | null;
}

export interface EvalReport {
  checkpoint: string;
  step: number | null;
  totalSteps: number;
  model: string;
  parameters: number;
  dataset: string;
  images: number;
  batchSize: number;
  /** mean cross-entropy, with the run's label smoothing (as in its metrics.jsonl) */
  loss: number;
  labelSmoothing: number;
  accuracy: number;
  correct: number;
  perClass: ClassResult[];
  /** confusion[true][predicted] image counts */
  confusion: number[][];
  adapter: string;
  evaluatedAt: string;
  /** where eval.json was written */
  path: string;
}

/** The test set a configuration names, with its subset (the training set is not kept). */
export async function loadTestSet(c: TrainConfig, log: (s: string) => void = () => {}): Promise<Dataset> {
  let test: Dataset;
  if (c.dataset === 'folder') {
    try {
      // the training tree is read too: a one-tree folder's test set is a split of it (both come from the cache after the first run)
      return (await loadDatasets(c, { log })).test;
    } catch (e) {
      throw new Error(`${(e as Error).message} (the folder comes from the checkpoint's settings unless --data gives another)`);
    }
  }
  if (c.dataset === 'synthetic') {
    // the test set's normalisation comes from the training set, so both are generated
    test = syntheticDataset({ seed: c.seed, imageSize: c.imageSize, trainSize: c.syntheticTrain, testSize: c.syntheticTest }).test;
  } else {
    try {
      // one training file is read only because loadCifar reads them with the test file
      test = (await loadCifar(c.dataset as CifarVariant, c.data!, { trainFiles: [1] })).test;
    } catch (e) {
      throw new Error(`${(e as Error).message} (the data path comes from the checkpoint's settings unless --data gives another)`);
    }
  }
  return c.testSubset ? subset(test, Math.min(c.testSubset, datasetSize(test))) : test;
}

/** Evaluates the checkpoint `o.checkpoint` names and writes eval.json. */
export async function evaluateCheckpoint(o: EvalOptions, opts: { device?: Device; log?: (s: string) => void } = {}): Promise<EvalReport> {
  const log = opts.log ?? (() => {});
  const trained = await openTrainedCheckpoint(o.checkpoint);
  const { runDir } = trained;
  const ckpt = trained.checkpoint;
  const s = ckpt.sidecar;
  const saved = s.config;
  const config = validateConfig(
    {
      ...saved,
      ...(o.dataset ? { dataset: o.dataset } : {}),
      ...(o.data ? { data: o.data } : {}),
      ...(o.testSubset !== undefined ? { testSubset: o.testSubset || undefined } : {}),
    },
    `${ckpt.dir} + command line`,
  );
  // the batch size the run evaluated its test set with (train's evalSource; a
  // validation run's final test pass used 256)
  const batchSize = o.batchSize ?? (saved.valSplit > 0 ? 256 : Math.max(saved.batchSize, 256));
  let test = await loadTestSet(config, log);
  if (config.dataset === 'folder' && s.data) {
    // the network's classes and input normalisation are the ones it was trained with
    if (JSON.stringify(test.classNames) !== JSON.stringify(s.data.classNames)) {
      throw new Error(`${config.data}: its classes (${test.classNames.join(', ')}) are not the ones ${ckpt.dir} was trained on (${s.data.classNames.join(', ')})`);
    }
    test = { ...test, normalization: s.data.normalization };
  }
  const n = datasetSize(test);
  const device = opts.device ?? (await createDevice());
  try {
    const model = await restoreTrainedModel(device, config, test, trained, opts.log);
    const augmenter = augmenterFor(device, config, test);
    try {
      log(`evaluating ${ckpt.dir} (step ${ckpt.step ?? '?'} of ${s.totalSteps}): ${config.model} on ${n} ${test.name} images, batches of ${batchSize}`);
      const counted = await countPredictions(model, evalSource(device, test, augmenter, batchSize), test, config.labelSmoothing);
      const perClass = counted.confusion.map((row, c): ClassResult => {
        const total = row.reduce((a, b) => a + b, 0);
        return { name: test.classNames[c] ?? String(c), correct: row[c]!, total, accuracy: total ? row[c]! / total : null };
      });
      const correct = perClass.reduce((a, p) => a + p.correct, 0);
      const path = o.out ?? join(runDir ?? o.checkpoint, 'eval.json');
      const report: EvalReport = {
        checkpoint: ckpt.dir,
        step: ckpt.step,
        totalSteps: s.totalSteps,
        model: config.model,
        parameters: parameterCount(model),
        dataset: test.name,
        images: n,
        batchSize,
        loss: counted.loss,
        labelSmoothing: config.labelSmoothing,
        accuracy: correct / Math.max(1, n),
        correct,
        perClass,
        confusion: counted.confusion,
        adapter: device.label,
        evaluatedAt: new Date().toISOString(),
        path,
      };
      await withPathAsync(path, 'write', () => writeFileAtomic(path, `${JSON.stringify(report, null, 2)}\n`));
      return report;
    } finally {
      augmenter.dispose();
      model.dispose();
    }
  } finally {
    if (!opts.device) await device.close();
  }
}

/**
 * One pass in eval mode: the loss on the GPU (the kernel train/fit.ts's
 * evaluate uses), and each image's predicted class (argmax, first index on
 * ties, as the accuracy kernel) read back for the per-class counts. Like
 * evaluate, every batch is queued first and read back at the end.
 */
async function countPredictions(
  model: { forward(x: Tensor): Tensor; eval(): unknown; train(mode?: boolean): unknown },
  source: ReturnType<typeof evalSource>,
  data: Dataset,
  labelSmoothing: number,
): Promise<{ loss: number; confusion: number[][] }> {
  model.eval();
  const parts: { loss: Tensor; predicted: Tensor; size: number }[] = [];
  noGrad(() => {
    for (const { x, y } of source.batches()) {
      const [loss, predicted] = tidy(() => {
        const logits = model.forward(x);
        return [softmaxCrossEntropy(logits, y, { labelSmoothing }), argmax(logits)];
      });
      parts.push({ loss: keep(loss!), predicted: keep(predicted!), size: y.shape[0]! });
      x.dispose();
      y.dispose();
    }
  });
  const k = data.numClasses;
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  let loss = 0;
  let at = 0;
  for (const p of parts) {
    loss += (await p.loss.toArray())[0]! * p.size;
    const predicted = await p.predicted.toInt32Array();
    for (let i = 0; i < p.size; i++) confusion[data.labels[at + i]!]![predicted[i]!]!++;
    at += p.size;
    p.loss.dispose();
    p.predicted.dispose();
  }
  model.train();
  return { loss: loss / Math.max(1, at), confusion };
}

const pct = (v: number | null): string => (v === null ? '   n/a' : `${(100 * v).toFixed(2).padStart(6)}%`);

/** The terminal report. */
export function formatEvalReport(r: EvalReport): string {
  const width = Math.max(...r.perClass.map((p) => p.name.length), 5);
  const lines = [
    `${r.checkpoint}: ${r.model} at step ${r.step ?? '?'}/${r.totalSteps}, ${r.images} ${r.dataset} images`,
    `loss ${r.loss.toFixed(4)}${r.labelSmoothing ? ` (label smoothing ${r.labelSmoothing})` : ''}, accuracy ${(100 * r.accuracy).toFixed(2)}% (${r.correct}/${r.images})`,
    'per class:',
  ];
  // at most 20 classes on the terminal; all of them are in eval.json
  const shown = r.perClass.length > 20 ? [...r.perClass].sort((a, b) => (a.accuracy ?? 2) - (b.accuracy ?? 2)) : r.perClass;
  for (const p of shown.slice(0, 20)) lines.push(`  ${p.name.padEnd(width)} ${pct(p.accuracy)}  (${p.correct}/${p.total})`);
  if (r.perClass.length > 20) lines.push(`  … the 20 worst of ${r.perClass.length} classes shown`);
  else lines.push(...formatConfusion(r.perClass.map((p) => p.name), r.confusion));
  lines.push(`wrote ${r.path}`);
  return lines.join('\n');
}

/** The confusion matrix as a table: a row per true class, a column per predicted class (numbered, names in the rows). */
export function formatConfusion(names: readonly string[], confusion: readonly (readonly number[])[]): string[] {
  const width = Math.max(...names.map((n) => n.length), 4) + 4;
  const cell = Math.max(3, ...confusion.flat().map((v) => String(v).length)) + 1;
  const lines = ['confusion matrix (rows: true class, columns: predicted):'];
  lines.push(' '.repeat(width + 2) + names.map((_, j) => String(j).padStart(cell)).join(''));
  confusion.forEach((row, i) => lines.push(`  ${`${i} ${names[i]}`.padEnd(width)}${row.map((v) => String(v).padStart(cell)).join('')}`));
  return lines;
}
