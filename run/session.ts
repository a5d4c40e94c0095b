// What every command that trains shares: the datasets a configuration names,
// the model, GPU batch sources over them, and checkpoints of the whole state
// (weights and batchnorm buffers in safetensors with PyTorch's names; optimizer,
// loader and configuration in the JSON sidecar).
import { LIMITS, type TrainConfig, validateConfig } from './config.ts';
import type { Device } from '../gpu/device.ts';
import { readFile, rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { tempPathFor, writeFileAtomic } from '../engine/io/atomic.ts';
import {
  type Checkpoint, CheckpointError, LATEST_FILE, type LoadedCheckpoint, STATE_FILE, WEIGHTS_FILE, latestCheckpointDir, listCheckpoints, loadCheckpoint, saveCheckpoint,
} from '../engine/io/checkpoint.ts';
import type { StoredTensor, TensorEntry } from '../engine/io/safetensors.ts';
import type { Module } from '../engine/nn/index.ts';
import type { SGD, SgdState } from '../engine/optim.ts';
import type { GradScaler, GradScalerState } from '../engine/gradScaler.ts';
import { tensor } from '../engine/tensor.ts';
import { Augmenter } from '../data/augment.ts';
import { cifarLayout, loadCifar } from '../data/cifar.ts';
import { type Dataset, type Normalization, datasetSize, splitValidation, subset } from '../data/dataset.ts';
import { loadImageFolder } from '../data/imageFolder.ts';
import { BatchLoader, type LoaderState } from '../data/loader.ts';
import { syntheticDataset } from '../data/synthetic.ts';
import { buildModel, setBatchNormMomentum } from '../models/index.ts';
import { buildModelFromFile, isModelFile } from '../models/custom.ts';
import type { BatchSource, EvalSource } from '../train/fit.ts';

export interface Datasets {
  train: Dataset;
  /** held out of the training set (valSplit > 0) */
  validation: Dataset | null;
  test: Dataset;
}

export interface LoadDatasetsOptions {
  /** hold this fraction of the training set out for validation when the configuration gives no validation set (tune on a one-tree folder) */
  validation?: number;
  /** an image folder's messages (skipped, converted, ignored files; the cache); default stderr */
  log?: (line: string) => void;
}

export async function loadDatasets(c: TrainConfig, o: LoadDatasetsOptions = {}): Promise<Datasets> {
  let train: Dataset;
  let test: Dataset;
  // a one-tree image folder is split into train and test by valSplit, which then makes no validation set
  let valSplitUsed = false;
  if (c.dataset === 'synthetic') {
    ({ train, test } = syntheticDataset({ seed: c.seed, imageSize: c.imageSize, trainSize: c.syntheticTrain, testSize: c.syntheticTest }));
  } else if (c.dataset === 'folder') {
    const f = await loadImageFolder({
      root: c.data!,
      imageSize: c.imageSize,
      resize: c.resize ?? 'crop',
      testFraction: c.valSplit || 0.2,
      // one split for every --seed, as a dataset's fixed test set: runs over seeds
      // (experiments, tune) are compared on the same test images
      seed: 0,
      strict: c.strict ?? false,
      ...(c.cache ? { cacheDir: c.cache } : {}),
      log: o.log ?? ((s) => process.stderr.write(`${s}\n`)),
    });
    ({ train, test } = f);
    valSplitUsed = f.report.layout === 'one tree';
  } else {
    // a subset of the first N images needs only the files that hold them (the first of five for 10,000)
    const perFile = cifarLayout(c.dataset).trainRecordsPerFile;
    const files = c.trainSubset ? Math.min(cifarLayout(c.dataset).trainFiles.length, Math.ceil(c.trainSubset / perFile)) : 0;
    ({ train, test } = await loadCifar(c.dataset, c.data!, files ? { trainFiles: Array.from({ length: files }, (_, i) => i + 1) } : {}));
  }
  if (c.trainSubset) train = subset(train, Math.min(c.trainSubset, datasetSize(train)));
  if (c.testSubset) test = subset(test, Math.min(c.testSubset, datasetSize(test)));
  let validation: Dataset | null = null;
  if (c.valSplit > 0 && !valSplitUsed) ({ train, validation } = splitValidation(train, c.valSplit, c.seed));
  else if (o.validation) ({ train, validation } = splitValidation(train, o.validation, c.seed));
  return { train, validation, test };
}

/**
 * The model a configuration names, for a dataset's classes and channels.
 * Async because a user's own model (`--model ./net.ts`) is a module to import.
 */
export async function modelFor(device: Device, c: TrainConfig, data: Dataset): Promise<Module> {
  if (isModelFile(c.model)) {
    const [channels, height, width] = data.shape;
    const model = await buildModelFromFile(c.model, device, { classes: data.numClasses, channels, height, width, seed: c.seed });
    setBatchNormMomentum(model, c.bnMomentum);
    return model;
  }
  return buildModel(c.model, device, {
    numClasses: data.numClasses,
    inChannels: data.shape[0],
    seed: c.seed,
    bnMomentum: c.bnMomentum,
    ...(c.width ? { width: c.width } : {}),
  });
}

export function augmenterFor(device: Device, c: TrainConfig, data: Dataset): Augmenter {
  return new Augmenter(device, data.shape, {
    normalization: data.normalization,
    padding: c.augment ? 4 : 0,
    flip: c.augment,
    cutout: c.cutout,
  });
}

/** Shuffled, augmented training batches (the last short batch of an epoch dropped). */
export function trainSource(device: Device, loader: BatchLoader, augmenter: Augmenter, augment: boolean): BatchSource {
  return {
    batchSize: loader.batchSize,
    batchesPerEpoch: loader.batchesPerEpoch,
    next() {
      const b = loader.next();
      const x = augment ? augmenter.train(b.images, b.rng) : augmenter.eval(b.images);
      const y = tensor(device, b.labels, [b.labels.length], 'i32');
      return { x, y };
    },
  };
}

/** A dataset in order, normalised, in batches of `batchSize`. */
export function evalSource(device: Device, data: Dataset, augmenter: Augmenter, batchSize: number): EvalSource {
  const n = datasetSize(data);
  const per = data.shape[0] * data.shape[1] * data.shape[2];
  return {
    size: n,
    *batches() {
      for (let i = 0; i < n; i += batchSize) {
        const end = Math.min(n, i + batchSize);
        const x = augmenter.eval(data.images.subarray(i * per, end * per));
        const y = tensor(device, data.labels.subarray(i, end), [end - i], 'i32');
        yield { x, y };
      }
    },
  };
}

// ------------------------------------------------------------------ checkpoints

/** What a trained network's input and output mean: saved with each checkpoint for eval and predict. */
export interface DataDescription {
  /** the training set's name */
  name: string;
  /** the output classes, in order */
  classNames: string[];
  /** the constants the input was normalised with */
  normalization: Normalization;
  /** [C, H, W] of one input image */
  shape: [number, number, number];
}

export const describeData = (ds: Dataset): DataDescription => ({
  name: ds.name,
  classNames: [...ds.classNames],
  normalization: { mean: [...ds.normalization.mean], std: [...ds.normalization.std] },
  shape: [ds.shape[0], ds.shape[1], ds.shape[2]],
});

export interface TrainSidecar {
  config: TrainConfig;
  /** the data the network was trained on (absent in checkpoints written before image folders) */
  data?: DataDescription;
  /** the LR the run uses as its maximum (after `--max-lr auto`) */
  maxLr: number;
  totalSteps: number;
  optimizer: { step: number; velocities: (string | null)[] };
  loader: LoaderState;
  /** half-precision training: the loss scaler's state (absent at f32) */
  scaler?: GradScalerState;
}

const toBase64 = (a: Float32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

/** Reads the model's state dict back as safetensors entries (num_batches_tracked as I64, like PyTorch). */
export async function stateTensors(model: Module): Promise<Record<string, TensorEntry>> {
  const out: Record<string, TensorEntry> = {};
  for (const [name, t] of Object.entries(model.stateDict())) {
    if (t.dtype === 'i32') {
      const ints = await t.toInt32Array();
      out[name] = name.endsWith('num_batches_tracked')
        ? { shape: t.shape, data: BigInt64Array.from(ints, (v) => BigInt(v)), dtype: 'I64' }
        : { shape: t.shape, data: ints, dtype: 'I32' };
    } else {
      out[name] = { shape: t.shape, data: await t.toArray(), dtype: 'F32' };
    }
  }
  return out;
}

/** The first non-finite value among the tensors, as "tensor 'x' holds NaN", or null. */
function firstNonFinite(tensors: Record<string, TensorEntry>, velocities: (Float32Array | null)[], names: string[]): string | null {
  for (const [name, t] of Object.entries(tensors)) {
    if (!(t.data instanceof Float32Array)) continue;
    const i = t.data.findIndex((v) => !Number.isFinite(v));
    if (i >= 0) return `weight '${name}' became ${t.data[i]} (index ${i})`;
  }
  for (let j = 0; j < velocities.length; j++) {
    const v = velocities[j];
    const i = v ? v.findIndex((x) => !Number.isFinite(x)) : -1;
    if (i >= 0) return `the momentum of '${names[j]}' became ${v![i]} (index ${i})`;
  }
  return null;
}

/**
 * Saves the whole training state as a checkpoint and returns its folder; or,
 * when a weight, buffer or velocity is not finite, saves nothing and returns
 * why ({notSaved}): a checkpoint must be a state worth resuming from.
 */
export async function saveTrainingCheckpoint(
  root: string, model: Module, optimizer: SGD, loader: BatchLoader, config: TrainConfig, maxLr: number, totalSteps: number,
  retain: string[] = [], data?: DataDescription, scaler?: GradScaler,
): Promise<{ dir: string } | { notSaved: string }> {
  const opt = await optimizer.state();
  const scalerState = scaler ? await scaler.state() : undefined;
  const tensors = await stateTensors(model);
  const bad = firstNonFinite(tensors, opt.velocities, optimizer.names);
  if (bad) return { notSaved: `${bad} by step ${opt.step}` };
  const sidecar: TrainSidecar = {
    config,
    maxLr,
    totalSteps,
    optimizer: { step: opt.step, velocities: opt.velocities.map((v) => (v ? toBase64(v) : null)) },
    loader: loader.state(),
    ...(data ? { data } : {}),
    ...(scalerState ? { scaler: scalerState } : {}),
  };
  const ckpt: Checkpoint<TrainSidecar> = { tensors, sidecar, step: opt.step };
  const saved = await saveCheckpoint(root, ckpt, { keep: 2, retain, metadata: { model: config.model, step: String(opt.step) } });
  return { dir: saved.dir };
}

export interface TrainingCheckpoint {
  sidecar: TrainSidecar;
  tensors: Record<string, StoredTensor>;
  /** the checkpoint's folder, its state.json and its weights file (for messages) */
  dir: string;
  statePath: string;
  weightsPath: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Checks everything a checkpoint's sidecar holds as strictly as the command line
 * checks flags (a tampered `optimizer.step` of 1e9 must not "complete" a run):
 * the configuration, the maximum LR, the run's length, the optimizer's step and
 * velocities, the loader's position. Errors name state.json and the field.
 */
export function validateTrainingCheckpoint(ck: LoadedCheckpoint<unknown>): TrainingCheckpoint {
  const statePath = join(ck.dir, STATE_FILE);
  const bad = (field: string, why: string): never => {
    throw new CheckpointError(statePath, `${field} ${why}`);
  };
  const s = ck.sidecar;
  if (!isObject(s) || !isObject(s.config) || !isObject(s.optimizer) || !isObject(s.loader)) {
    bad('sidecar', 'is not a training state (missing config, optimizer or loader; not written by train?)');
  }
  const sc = s as unknown as TrainSidecar;
  try {
    validateConfig({ ...(sc.config as TrainConfig) }, (k) => `${statePath}: config.${k}`);
  } catch (e) {
    throw new CheckpointError(statePath, (e as Error).message.slice(statePath.length + 2));
  }
  const int = (v: unknown, lo: number, hi: number): boolean => typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
  if (typeof sc.maxLr !== 'number' || !Number.isFinite(sc.maxLr) || sc.maxLr <= 0 || sc.maxLr > 1e3) bad('maxLr', `must be a number in (0, 1000], got ${JSON.stringify(sc.maxLr)}`);
  if (!int(sc.totalSteps, 1, LIMITS.iterations)) bad('totalSteps', `must be an integer in [1, ${LIMITS.iterations}], got ${JSON.stringify(sc.totalSteps)}`);
  if (!int(sc.optimizer.step, 0, sc.totalSteps)) bad('optimizer.step', `must be an integer in [0, totalSteps = ${sc.totalSteps}], got ${JSON.stringify(sc.optimizer.step)}`);
  if (ck.step !== null && ck.step !== sc.optimizer.step) bad('step', `(${ck.step}) differs from optimizer.step (${sc.optimizer.step})`);
  if (!Array.isArray(sc.optimizer.velocities) || sc.optimizer.velocities.some((v) => v !== null && typeof v !== 'string')) {
    bad('optimizer.velocities', 'must be a list of base64 strings or nulls');
  }
  const l = sc.loader;
  for (const k of ['seed', 'epoch', 'position', 'size', 'batchSize'] as const) {
    if (!int(l[k], 0, 2 ** 53 - 1)) bad(`loader.${k}`, `must be a non-negative integer, got ${JSON.stringify(l[k])}`);
  }
  for (const k of ['shuffle', 'dropLast'] as const) if (typeof l[k] !== 'boolean') bad(`loader.${k}`, `must be true or false, got ${JSON.stringify(l[k])}`);
  if (sc.data !== undefined) checkDataDescription(sc.data, bad);
  if (sc.scaler !== undefined) {
    const k = sc.scaler as unknown;
    if (!isObject(k)) bad('scaler', `must be an object (scale, growthTracker, skipped), got ${JSON.stringify(k)}`);
    const x = k as Record<string, unknown>;
    if (typeof x.scale !== 'number' || !Number.isFinite(x.scale) || x.scale <= 0) bad('scaler.scale', `must be a positive finite number, got ${JSON.stringify(x.scale)}`);
    for (const f of ['growthTracker', 'skipped'] as const) if (!int(x[f], 0, 2 ** 32 - 1)) bad(`scaler.${f}`, `must be a non-negative integer, got ${JSON.stringify(x[f])}`);
  }
  return { sidecar: sc, tensors: ck.tensors, dir: ck.dir, statePath, weightsPath: join(ck.dir, WEIGHTS_FILE) };
}

function checkDataDescription(d: unknown, bad: (field: string, why: string) => never): void {
  if (!isObject(d)) bad('data', 'must be an object (classNames, normalization, shape)');
  const x = d as Record<string, unknown>;
  const shape = x.shape;
  if (!Array.isArray(shape) || shape.length !== 3 || shape.some((v) => typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > LIMITS.imageSize)) {
    bad('data.shape', `must be [C, H, W] of positive integers up to ${LIMITS.imageSize}, got ${JSON.stringify(shape)}`);
  }
  const names = x.classNames;
  if (!Array.isArray(names) || names.length < 1 || names.some((n) => typeof n !== 'string')) bad('data.classNames', `must be a non-empty list of strings, got ${JSON.stringify(names)}`);
  const norm = x.normalization as Record<string, unknown> | undefined;
  const c = (shape as number[])[0]!;
  for (const k of ['mean', 'std'] as const) {
    const v = isObject(norm) ? norm[k] : undefined;
    if (!Array.isArray(v) || v.length !== c || v.some((e) => typeof e !== 'number' || !Number.isFinite(e) || (k === 'std' && e <= 0))) {
      bad(`data.normalization.${k}`, `must be ${c} finite numbers${k === 'std' ? ' above 0' : ''}, got ${JSON.stringify(v)}`);
    }
  }
  if (typeof x.name !== 'string') bad('data.name', `must be a string, got ${JSON.stringify(x.name)}`);
}

/**
 * After a divergence: deletes the checkpoints of `from` steps or more (their
 * weights gave diverging losses), points `latest` at the newest one left, and
 * returns it (null when none is left; `latest` is then removed).
 */
export async function keepCheckpointsBefore(root: string, from: number): Promise<{ dir: string; step: number } | null> {
  let kept: { dir: string; step: number } | null = null;
  for (const c of await listCheckpoints(root)) {
    const dir = join(root, c.name);
    let step: number | null = null;
    try {
      step = (JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as { step?: unknown }).step as number;
    } catch {
      step = null;
    }
    if (typeof step === 'number' && step < from) {
      kept = { dir, step };
      continue;
    }
    const doomed = tempPathFor(dir);
    await rename(dir, doomed);
    await rm(doomed, { recursive: true, force: true });
  }
  if (kept) await writeFileAtomic(join(root, LATEST_FILE), `${basename(kept.dir)}\n`);
  else await rm(join(root, LATEST_FILE), { force: true });
  return kept;
}

/** The newest checkpoint under `root`, validated; null when there is none. */
export async function loadTrainingCheckpoint(root: string): Promise<TrainingCheckpoint | null> {
  const dir = await latestCheckpointDir(root);
  if (!dir) return null;
  return validateTrainingCheckpoint(await loadCheckpoint(dir));
}

/** What a model's state dict holds: each tensor's shape and dtype, by name. */
export type StateSpec = Record<string, { shape: readonly number[]; dtype: 'f32' | 'i32' }>;

export function stateSpec(model: Module): StateSpec {
  const out: StateSpec = {};
  for (const [k, t] of Object.entries(model.stateDict())) out[k] = { shape: t.shape, dtype: t.dtype === 'i32' ? 'i32' : 'f32' };
  return out;
}

const shapeText = (s: readonly number[]): string => `[${s.join(', ')}]`;

/**
 * Refuses weights that do not fit the model exactly: a missing or extra tensor,
 * another dtype (I32 bits where F32 is expected would load as garbage), another
 * shape even with the same element count (a permuted weight), or a NaN/Inf
 * value. `model` names the model in messages ("resnet8 (width 8)").
 */
export function checkStateTensors(spec: StateSpec, tensors: Record<string, StoredTensor>, weightsPath: string, model: string): void {
  const bad = (why: string): never => {
    throw new CheckpointError(weightsPath, why);
  };
  for (const name of Object.keys(tensors)) if (!(name in spec)) bad(`tensor '${name}' is not part of ${model}`);
  for (const [name, want] of Object.entries(spec)) {
    const t = tensors[name];
    if (!t) bad(`tensor '${name}' of ${model} is missing`);
    const okDtype = want.dtype === 'f32' ? t!.dtype === 'F32' : t!.dtype === 'I64' || t!.dtype === 'I32';
    if (!okDtype) bad(`tensor '${name}' is ${t!.dtype}; ${model} expects ${want.dtype === 'f32' ? 'F32' : 'I64'}`);
    if (t!.shape.length !== want.shape.length || t!.shape.some((d, i) => d !== want.shape[i])) {
      bad(`tensor '${name}' has shape ${shapeText(t!.shape)}; ${model} expects ${shapeText(want.shape)}`);
    }
    if (want.dtype === 'f32') {
      const data = t!.data as Float32Array;
      for (let i = 0; i < data.length; i++) {
        if (!Number.isFinite(data[i]!)) bad(`tensor '${name}' holds ${data[i]} at index ${i} (weights must be finite; the run diverged before this checkpoint?)`);
      }
    } else {
      const data = t!.data as ArrayLike<number | bigint>;
      for (let i = 0; i < data.length; i++) if (data[i]! < 0) bad(`tensor '${name}' holds a negative count ${String(data[i])}`);
    }
  }
}

/** Describes a model for messages: "resnet8 (width 8)". */
export const modelName = (c: TrainConfig): string => `${c.model}${c.width ? ` (width ${c.width})` : ''}`;

/** Loads checked tensors into the model (call checkStateTensors first). */
export function loadStateTensors(model: Module, tensors: Record<string, StoredTensor>): void {
  const state: Record<string, ArrayLike<number> | BigInt64Array> = {};
  for (const [k, t] of Object.entries(tensors)) state[k] = t.data as ArrayLike<number> | BigInt64Array;
  model.loadStateDict(state);
}

/** The optimizer's saved velocities, decoded; each must fit its parameter and be finite. */
function checkVelocities(optimizer: SGD, s: TrainSidecar['optimizer'], statePath: string): (Float32Array | null)[] {
  const bad = (why: string): never => {
    throw new CheckpointError(statePath, why);
  };
  if (s.velocities.length !== optimizer.params.length) bad(`optimizer.velocities has ${s.velocities.length} entries; the model has ${optimizer.params.length} parameters`);
  const velocities = s.velocities.map((v, i) => {
    if (v === null) return null;
    const name = optimizer.names[i];
    const b = Buffer.from(v, 'base64');
    if (b.byteLength !== optimizer.params[i]!.size * 4) bad(`optimizer.velocities[${i}] (${name}) holds ${b.byteLength} bytes; the parameter has ${optimizer.params[i]!.size} f32 values`);
    const data = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    for (let j = 0; j < data.length; j++) if (!Number.isFinite(data[j]!)) bad(`optimizer.velocities[${i}] (${name}) holds ${data[j]} at index ${j} (must be finite)`);
    return data;
  });
  return velocities;
}

/** Restores the optimizer's state saved in a sidecar (checked as checkVelocities does). */
export function restoreOptimizer(optimizer: SGD, s: TrainSidecar['optimizer'], statePath = 'state.json'): void {
  const state: SgdState = { step: s.step, velocities: checkVelocities(optimizer, s, statePath) };
  optimizer.loadState(state);
}

/**
 * Puts a checked checkpoint's state into a fresh model, optimizer and loader,
 * refusing (naming the file and the tensor or field) anything that does not
 * fit: what `train --resume` does, and what test/reliability.test.ts fuzzes.
 */
export function applyCheckpoint(ck: TrainingCheckpoint, model: Module, optimizer: SGD, loader: BatchLoader, config: TrainConfig, scaler?: GradScaler): void {
  checkStateTensors(stateSpec(model), ck.tensors, ck.weightsPath, modelName(config));
  // optimizer and loader first: they throw before anything is written to the GPU
  const velocities = checkVelocities(optimizer, ck.sidecar.optimizer, ck.statePath);
  try {
    loader.restore(ck.sidecar.loader);
  } catch (e) {
    throw new CheckpointError(ck.statePath, `loader: ${(e as Error).message.replace('BatchLoader.restore: ', '')}`);
  }
  loadStateTensors(model, ck.tensors);
  optimizer.loadState({ step: ck.sidecar.optimizer.step, velocities });
  // a half-precision run resumes with its scale (a checkpoint from f32 training starts the scaler afresh)
  if (scaler && ck.sidecar.scaler) scaler.loadState(ck.sidecar.scaler);
}
