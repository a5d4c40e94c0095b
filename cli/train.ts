// `train`: trains a model with its schedules, writing metrics, plots and
// checkpoints into the output folder; `--resume` continues bit-exactly; Ctrl-C
// saves a checkpoint and exits; a diverging run stops and keeps the last good one.
import { join } from 'node:path';
import { type Device, createDevice } from '../engine/device.ts';
import { SGD } from '../engine/optim.ts';
import { datasetSize } from '../data/dataset.ts';
import { BatchLoader } from '../data/loader.ts';
import { parameterCount } from '../models/index.ts';
import type { TrainConfig } from './config.ts';
import { totalIterations } from './config.ts';
import { parseTrainArgs, trainHelp } from './flags.ts';
import { type FitResult, evaluate, fit } from '../train/fit.ts';
import { RunOutputs } from '../train/outputs.ts';
import { TrainingProgress } from '../train/progress.ts';
import { buildSchedules } from '../train/schedules.ts';
import {
  augmenterFor, evalSource, loadDatasets, loadTrainingCheckpoint, modelFor, restoreOptimizer, saveTrainingCheckpoint, trainSource,
} from '../train/session.ts';

export const TRAIN_SUMMARY =
  'Trains a classifier with SGD whose LR and momentum follow the chosen schedule (One Cycle by default).\n' +
  'Writes metrics.jsonl, summary.json, loss/accuracy/lr/momentum SVG plots and checkpoints/ (safetensors with\n' +
  "PyTorch's state_dict names + state.json) into --out. --resume continues the run in --out with its saved settings.";

export interface TrainRunResult {
  result: FitResult;
  outDir: string;
  testAccuracy: number | null;
}

/** Resolves `--max-lr auto` by a range test (rangetest/), or returns the configured number. */
export type MaxLrResolver = (device: Device, config: TrainConfig) => Promise<number>;

export async function runTraining(
  config: TrainConfig,
  o: {
    resume?: boolean;
    quiet?: boolean;
    device?: Device;
    resolveMaxLr?: MaxLrResolver;
    log?: (s: string) => void;
    /** behave as if Ctrl-C came once this many steps are done (tests, and "train N more steps") */
    stopAtStep?: number;
  } = {},
): Promise<TrainRunResult> {
  const log = o.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const outputs = new RunOutputs(config.out);
  let checkpoint = o.resume ? await loadTrainingCheckpoint(outputs.checkpointDir) : null;
  if (o.resume && !checkpoint) throw new Error(`--resume: no checkpoint in ${outputs.checkpointDir}`);
  // the run continues with the settings it was started with, in the folder given now
  if (checkpoint) config = { ...checkpoint.sidecar.config, out: config.out };
  const device = o.device ?? (await createDevice());
  try {
    const data = await loadDatasets(config);
    const model = modelFor(device, config, data.train);
    const total = checkpoint ? checkpoint.sidecar.totalSteps : totalIterations(config, datasetSize(data.train));
    let maxLr: number;
    if (checkpoint) maxLr = checkpoint.sidecar.maxLr;
    else if (config.maxLr === 'auto') {
      if (!o.resolveMaxLr) throw new Error("--max-lr auto needs the LR range test, which this entry point was not given");
      maxLr = await o.resolveMaxLr(device, config);
    } else maxLr = config.maxLr;
    const schedules = buildSchedules(config, total, maxLr);
    const optimizer = new SGD({
      params: model.namedParameters(),
      lr: schedules.lr,
      momentum: schedules.momentum,
      weightDecay: config.weightDecay,
      nesterov: config.nesterov,
    });
    const loader = new BatchLoader(data.train, { batchSize: config.batchSize, seed: config.seed, shuffle: true, dropLast: true });
    const augmenter = augmenterFor(device, config, data.train);
    if (checkpoint) {
      model.loadStateDict(checkpoint.tensors);
      restoreOptimizer(optimizer, checkpoint.sidecar.optimizer);
      loader.restore(checkpoint.sidecar.loader);
      outputs.truncateAfter(optimizer.stepCount);
      log(`resuming ${checkpoint.dir} at step ${optimizer.stepCount}/${total}`);
      checkpoint = null; // let the tensors go
    } else {
      outputs.startFresh();
    }
    const evalSet = data.validation ?? data.test;
    const evalName = data.validation ? 'validation' : 'test';
    log(
      `${config.model} (${parameterCount(model).toLocaleString('en')} parameters) on ${data.train.name} ` +
        `(${datasetSize(data.train)} train, ${datasetSize(evalSet)} ${evalName}) · ${total} steps of ${config.batchSize} · ${schedules.describe} · ${device.label}`,
    );
    const progress = new TrainingProgress(total, 'train', process.stderr, o.quiet ?? false);
    let stopRequested = false;
    const onSigint = (): void => {
      if (stopRequested) process.exit(130); // a second Ctrl-C: leave now
      stopRequested = true;
      progress.log('interrupt: finishing this step and saving a checkpoint (Ctrl-C again to quit at once)');
    };
    process.on('SIGINT', onSigint);
    const save = async (): Promise<string> =>
      saveTrainingCheckpoint(outputs.checkpointDir, model, optimizer, loader, config, maxLr, total);
    progress.start(optimizer.stepCount);
    let result: FitResult;
    try {
      result = await fit({
        device,
        model,
        optimizer,
        train: trainSource(device, loader, augmenter, config.augment),
        eval: evalSource(device, evalSet, augmenter, Math.max(config.batchSize, 256)),
        totalSteps: total,
        labelSmoothing: config.labelSmoothing,
        logEvery: config.logEvery,
        evalEvery: config.evalEvery,
        checkpointEvery: config.checkpointEvery,
        divergenceFactor: config.divergenceFactor,
        callbacks: {
          onSteps: (records, ips) => {
            outputs.appendSteps(records, ips);
            const last = records[records.length - 1]!;
            progress.update(last.step + 1, { loss: last.loss, acc: last.acc, lr: last.lr, momentum: last.momentum, imagesPerSec: ips });
          },
          onEval: (r) => {
            outputs.appendEval(r, evalName);
            progress.log(`step ${r.step}: ${evalName} loss ${r.loss.toFixed(4)}, accuracy ${(100 * r.acc).toFixed(2)}%`);
          },
          onCheckpoint: async () => void (await save()),
          shouldStop: () => stopRequested || (o.stopAtStep !== undefined && optimizer.stepCount >= o.stopAtStep),
        },
      });
    } finally {
      progress.stop();
      process.off('SIGINT', onSigint);
    }
    if (result.end !== 'diverged') {
      const dir = await save();
      log(result.end === 'interrupted' ? `${result.message}; checkpoint ${dir} (continue with --resume --out ${config.out})` : `checkpoint ${dir}`);
    } else {
      log(result.message);
    }
    let testAccuracy: number | null = null;
    if (result.end === 'completed' && data.validation) {
      // report the held-out test set too, once, at the end
      const r = await evaluate(device, model, evalSource(device, data.test, augmenter, 256), result.steps, config.labelSmoothing);
      outputs.appendEval(r, 'test');
      testAccuracy = r.acc;
    } else if (result.finalEval && !data.validation) {
      testAccuracy = result.finalEval.acc;
    }
    await outputs.writeSummary({
      end: result.end,
      message: result.message,
      steps: result.steps,
      totalSteps: total,
      seconds: Math.round(result.seconds * 10) / 10,
      maxLr,
      schedule: schedules.describe,
      finalEval: result.finalEval,
      testAccuracy,
      parameters: parameterCount(model),
      adapter: device.label,
      config,
    });
    const plots = await outputs.writePlots();
    log(`metrics ${outputs.metricsPath} · plots ${plots.map((p) => p.slice(config.out.length + 1)).join(', ')} in ${config.out} · summary ${join(config.out, 'summary.json')}`);
    augmenter.dispose();
    optimizer.dispose();
    model.dispose();
    return { result, outDir: config.out, testAccuracy };
  } finally {
    if (!o.device) device.destroy();
  }
}

export async function trainCommand(argv: string[]): Promise<number> {
  const args = parseTrainArgs(argv);
  if (args.help) {
    process.stdout.write(`${trainHelp('train', TRAIN_SUMMARY)}\n`);
    return 0;
  }
  const { resolveMaxLrByRangeTest } = await import('./rangeTestCommand.ts');
  const { result, testAccuracy } = await runTraining(args.config, { resume: args.resume, quiet: args.quiet, resolveMaxLr: resolveMaxLrByRangeTest });
  if (result.end === 'completed') {
    const acc = testAccuracy !== null ? `${(100 * testAccuracy).toFixed(2)}%` : 'n/a';
    process.stdout.write(`final test accuracy ${acc} after ${result.steps} steps in ${result.seconds.toFixed(1)} s; outputs in ${args.config.out}\n`);
    return 0;
  }
  process.stdout.write(`${result.message}\n`);
  return result.end === 'interrupted' ? 130 : 1;
}
