// A training run: trains a model with its schedules, writing metrics, plots and
// checkpoints into the output folder; a resume continues bit-exactly; Ctrl-C (or
// SIGTERM) saves a checkpoint and stops; a diverging run stops and keeps the last
// good checkpoint; one training at a time per output folder (a lock). Used by the
// train command (cli/train.ts) and experiments (run/experiment.ts).
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { type Device, createDevice } from '../gpu/device.ts';
import { autotuneSession } from './autotune.ts';
import { SGD } from '../engine/optim.ts';
import { GradScaler } from '../engine/gradScaler.ts';
import { datasetSize } from '../data/dataset.ts';
import { BatchLoader } from '../data/loader.ts';
import { parameterCount } from '../models/index.ts';
import { LIMITS, RESUME_CHANGEABLE_KEYS, type TrainConfig, flagOf, totalIterations, validateConfig } from './config.ts';
import { checkModelFileOnResume, withModelFileHash } from './modelFile.ts';
import { RunLock } from '../train/runLock.ts';
import { type FitResult, evaluate, fit } from '../train/fit.ts';
import { RunOutputs } from '../train/outputs.ts';
import { TrainingProgress } from '../train/progress.ts';
import { buildSchedules } from './schedules.ts';
import {
  applyCheckpoint, augmenterFor, describeData, evalSource, keepCheckpointsBefore, loadDatasets, loadTrainingCheckpoint, modelFor, saveTrainingCheckpoint, trainSource,
} from './session.ts';

export interface TrainRunResult {
  result: FitResult;
  outDir: string;
  testAccuracy: number | null;
  /** the signal that stopped the run (result.end is then 'interrupted') */
  signal?: StopSignal | null;
}

/** Resolves `--max-lr auto` by a range test (rangetest/), or returns the configured number. */
export type MaxLrResolver = (device: Device, config: TrainConfig) => Promise<number>;

/** Why a run stopped early on a signal: Ctrl-C, or `kill`/`docker stop`/a scheduler. */
export type StopSignal = 'SIGINT' | 'SIGTERM';

/** Exit codes of a run stopped by each signal after its checkpoint (128 + the signal's number, as shells report). */
export const SIGNAL_EXIT: Record<StopSignal, number> = { SIGINT: 130, SIGTERM: 143 };

const RESUME_CHANGEABLE = new Set<string>(RESUME_CHANGEABLE_KEYS);

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/**
 * The checkpoint's settings with the changes a resume may make; refuses, naming
 * each, the changes it may not (they would make the resumed run another experiment).
 */
function resumeSettings(saved: TrainConfig, changes: Partial<TrainConfig>, changesAs: Record<string, string>, stepsDone: number, log: (s: string) => void): TrainConfig {
  const config: TrainConfig = { ...saved };
  const refused: string[] = [];
  const changed: string[] = [];
  for (const [key, value] of Object.entries(changes)) {
    if (key === 'out' || same(value, (saved as unknown as Record<string, unknown>)[key])) continue;
    const name = changesAs[key] ?? key;
    if (!RESUME_CHANGEABLE.has(key)) {
      refused.push(`${name} (the run has ${JSON.stringify((saved as unknown as Record<string, unknown>)[key]) ?? 'none'}, given ${JSON.stringify(value)})`);
      continue;
    }
    (config as unknown as Record<string, unknown>)[key] = value;
    changed.push(`--resume: ${name} changed from ${JSON.stringify((saved as unknown as Record<string, unknown>)[key]) ?? 'none'} to ${JSON.stringify(value)}`);
  }
  if (refused.length) {
    throw new Error(
      `--resume continues a run with the settings saved in its checkpoint; these differ and cannot change: ${refused.join('; ')}. ` +
        `Only ${RESUME_CHANGEABLE_KEYS.map(flagOf).join(', ')} may; start a new run (another --out, or --overwrite) to change the others`,
    );
  }
  if (config.iterations !== undefined && config.iterations < stepsDone) {
    throw new Error(`--resume: ${changesAs.iterations ?? 'iterations'} ${config.iterations} is below the ${stepsDone} steps the run has already taken`);
  }
  validateConfig(config, (k) => changesAs[k] ?? `checkpoint setting ${k}`);
  for (const line of changed) log(line);
  return config;
}

export async function runTraining(
  config: TrainConfig,
  o: {
    resume?: boolean;
    /** a fresh run into a non-empty --out deletes the previous run's outputs first (else it is refused) */
    overwrite?: boolean;
    /** resume although the run's model file changed (its hash is then updated) */
    allowModelChange?: boolean;
    /**
     * With `resume`: settings given now (flags, recipe), checked against the
     * checkpoint's; RESUME_CHANGEABLE_KEYS' may differ. `config` is otherwise
     * ignored on resume (only its `out` is used).
     */
    changes?: Partial<TrainConfig>;
    /** how messages name each key of `changes` ('command line: --iterations') */
    changesAs?: Record<string, string>;
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
  const lock = RunLock.acquire(config.out, log);
  try {
    return await trainLocked(config, outputs, log, o);
  } finally {
    lock.release();
  }
}

async function trainLocked(
  config: TrainConfig,
  outputs: RunOutputs,
  log: (s: string) => void,
  o: Parameters<typeof runTraining>[1] & object,
): Promise<TrainRunResult> {
  // from the start, so a signal during set-up also ends in a checkpoint after the first step
  let stopSignal: StopSignal | null = null;
  let say = log;
  const onSignal = (signal: StopSignal): void => {
    if (stopSignal) process.exit(SIGNAL_EXIT[signal]); // a second signal: leave now (the last checkpoint stays)
    stopSignal = signal;
    say(`${signal === 'SIGINT' ? 'interrupt' : 'SIGTERM'}: finishing this step and saving a checkpoint (${signal === 'SIGINT' ? 'Ctrl-C' : 'a second signal'} again to quit at once)`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await trainWithSignals(config, outputs, log, o, () => stopSignal, (f) => (say = f ?? log));
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

async function trainWithSignals(
  config: TrainConfig,
  outputs: RunOutputs,
  log: (s: string) => void,
  o: Parameters<typeof runTraining>[1] & object,
  signalled: () => StopSignal | null,
  setSay: (f: ((s: string) => void) | null) => void,
): Promise<TrainRunResult> {
  let checkpoint = o.resume ? await loadTrainingCheckpoint(outputs.checkpointDir) : null;
  if (o.resume && !checkpoint) throw new Error(`--resume: no checkpoint in ${outputs.checkpointDir}`);
  let total = 0;
  if (checkpoint) {
    // the run continues with the settings it was started with, in the folder given now
    const saved = { ...checkpoint.sidecar.config, out: config.out };
    config = resumeSettings(saved, o.changes ?? {}, o.changesAs ?? {}, checkpoint.sidecar.optimizer.step, log);
    config = checkModelFileOnResume(config, o.allowModelChange ?? false, log);
    total = config.iterations !== saved.iterations ? config.iterations! : checkpoint.sidecar.totalSteps;
  } else {
    outputs.startFresh(o.overwrite ?? false, log);
    config = withModelFileHash(config);
  }
  const device = o.device ?? (await createDevice());
  try {
    const data = await loadDatasets(config, { log });
    const model = await modelFor(device, config, data.train);
    if (!checkpoint) total = totalIterations(config, datasetSize(data.train));
    if (total > LIMITS.iterations) throw new Error(`the run would take ${total} steps (epochs × batches per epoch); the limit is ${LIMITS.iterations}`);
    let maxLr: number;
    if (checkpoint) maxLr = checkpoint.sidecar.maxLr;
    else if (config.maxLr === 'auto') {
      if (!o.resolveMaxLr) throw new Error("--max-lr auto needs the LR range test, which this entry point was not given");
      maxLr = await o.resolveMaxLr(device, config);
    } else maxLr = config.maxLr;
    let schedules: ReturnType<typeof buildSchedules>;
    try {
      schedules = buildSchedules(config, total, maxLr);
    } catch (e) {
      throw new Error(`the settings give no valid ${config.schedule} schedule over ${total} steps: ${(e as Error).message}`);
    }
    const optimizer = new SGD({
      params: model.namedParameters(),
      lr: schedules.lr,
      momentum: schedules.momentum,
      weightDecay: config.weightDecay,
      nesterov: config.nesterov,
    });
    const half = config.precision === 'f16';
    if (half && !device.hasShaderF16) throw new Error(`--precision f16: the adapter '${device.label}' has no shader-f16 (half-precision arithmetic); train with --precision f32`);
    const scaler = half ? new GradScaler(device, config.lossScale === undefined ? {} : { initScale: config.lossScale }) : undefined;
    const loader = new BatchLoader(data.train, { batchSize: config.batchSize, seed: config.seed, shuffle: true, dropLast: true });
    const augmenter = augmenterFor(device, config, data.train);
    // kernel tuning: the cache read into the policy; on GPUs the model's shapes timed first (kernels/autotune.ts)
    await autotuneSession(device, model, [config.batchSize, ...data.train.shape], log);
    let kept: string | null = null;
    if (checkpoint) {
      applyCheckpoint(checkpoint, model, optimizer, loader, config, scaler);
      // a finished run's final evaluation is done again (identically), so it must not stay twice
      outputs.truncateAfter(optimizer.stepCount, optimizer.stepCount === checkpoint.sidecar.totalSteps ? optimizer.stepCount : null, log);
      log(`resuming ${checkpoint.dir} at step ${optimizer.stepCount}/${total}`);
      kept = basename(checkpoint.dir);
      if (total !== checkpoint.sidecar.totalSteps) {
        log(`--resume: the run now ends at step ${total} (was ${checkpoint.sidecar.totalSteps}); the ${config.schedule} schedule is rebuilt over ${total} steps`);
      }
      checkpoint = null; // let the tensors go
    }
    const evalSet = data.validation ?? data.test;
    const evalName = data.validation ? 'validation' : 'test';
    log(
      `${config.model} (${parameterCount(model).toLocaleString('en')} parameters) on ${data.train.name} ` +
        `(${datasetSize(data.train)} train, ${datasetSize(evalSet)} ${evalName}) · ${total} steps of ${config.batchSize} · ${schedules.describe}${half ? ' · f16 activations, loss scaling' : ''} · ${device.label}`,
    );
    const progress = new TrainingProgress(total, 'train', process.stderr, o.quiet ?? false);
    // the newest checkpoint whose weights gave a sound loss is never pruned: a
    // divergence that builds up over several checkpoints can always fall back on it
    let verified: string | null = kept;
    const savedAt = new Map<number, string>();
    /** Saves a checkpoint, or returns why the state is not good enough to keep. */
    const save = async (): Promise<string | { dir: string }> => {
      const r = await saveTrainingCheckpoint(outputs.checkpointDir, model, optimizer, loader, config, maxLr, total, verified ? [verified] : [], describeData(data.train), scaler);
      if ('notSaved' in r) return r.notSaved;
      savedAt.set(optimizer.stepCount, basename(r.dir));
      return r;
    };
    setSay((line) => progress.log(line));
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
        lossFloor: Math.log(data.train.numClasses),
        ...(scaler ? { scaler } : {}),
        ...(config.targetAccuracy !== undefined ? { targetAccuracy: config.targetAccuracy } : {}),
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
          onCheckpoint: async () => {
            const r = await save();
            return typeof r === 'string' ? r : undefined;
          },
          onCheckpointVerified: (step) => {
            verified = savedAt.get(step) ?? verified;
          },
          shouldStop: () => signalled() !== null || (o.stopAtStep !== undefined && optimizer.stepCount >= o.stopAtStep),
        },
      });
    } finally {
      progress.stop();
      setSay(null);
    }
    if (result.end !== 'diverged') {
      const saved = await save();
      if (typeof saved === 'string') {
        result = { ...result, end: 'diverged', message: `training diverged: ${saved}`, finalEval: null };
      } else {
        const how = signalled() === 'SIGTERM' ? `stopped by SIGTERM at step ${result.steps}` : result.message;
        if (result.end === 'interrupted') result = { ...result, message: `${how}` };
        log(result.end === 'interrupted' ? `${how}; checkpoint ${saved.dir} (continue with --resume --out ${config.out})` : `checkpoint ${saved.dir}`);
      }
    }
    if (result.end === 'diverged') {
      // checkpoints whose weights already gave diverging losses are not good states
      const from = result.divergedFrom ?? result.steps;
      const k = existsSync(outputs.checkpointDir) ? await keepCheckpointsBefore(outputs.checkpointDir, from) : null;
      result = {
        ...result,
        message:
          `${result.message}; stopped. ` +
          (k
            ? `Kept: the last good checkpoint, ${k.dir} (step ${k.step}); the losses were diverging from step ${from} on, later checkpoints were deleted`
            : `No checkpoint is kept: none was written before the losses began to diverge at step ${from} (--checkpoint-every N writes one every N steps)`),
      };
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
    const scaling = scaler ? await scaler.state() : null;
    if (scaling) log(`loss scaling: final scale ${scaling.scale}, ${scaling.skipped} step${scaling.skipped === 1 ? '' : 's'} skipped for non-finite gradients`);
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
      ...(scaling ? { precision: 'f16', lossScaling: scaling } : { precision: 'f32' }),
      ...(config.targetAccuracy !== undefined ? { target: result.target ?? { target: config.targetAccuracy, reached: false } } : {}),
      config,
    });
    const plots = await outputs.writePlots();
    log(`metrics ${outputs.metricsPath} · plots ${plots.map((p) => p.slice(config.out.length + 1)).join(', ')} in ${config.out} · summary ${join(config.out, 'summary.json')}`);
    augmenter.dispose();
    scaler?.dispose();
    optimizer.dispose();
    model.dispose();
    return { result, outDir: config.out, testAccuracy, signal: signalled() };
  } finally {
    if (!o.device) await device.close();
  }
}

