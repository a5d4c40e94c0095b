// What every command that trains shares: the datasets a configuration names,
// the model, GPU batch sources over them, and checkpoints of the whole state
// (weights and batchnorm buffers in safetensors with PyTorch's names; optimizer,
// loader and configuration in the JSON sidecar).
import type { TrainConfig } from '../cli/config.ts';
import type { Device } from '../engine/device.ts';
import { type Checkpoint, latestCheckpointDir, loadCheckpoint, saveCheckpoint } from '../engine/io/checkpoint.ts';
import type { TensorEntry } from '../engine/io/safetensors.ts';
import type { Module } from '../engine/nn/index.ts';
import type { SGD, SgdState } from '../engine/optim.ts';
import { tensor } from '../engine/tensor.ts';
import { Augmenter } from '../data/augment.ts';
import { cifarLayout, loadCifar } from '../data/cifar.ts';
import { type Dataset, datasetSize, splitValidation, subset } from '../data/dataset.ts';
import { BatchLoader, type LoaderState } from '../data/loader.ts';
import { syntheticDataset } from '../data/synthetic.ts';
import { buildModel } from '../models/index.ts';
import type { BatchSource, EvalSource } from './fit.ts';

export interface Datasets {
  train: Dataset;
  /** held out of the training set (valSplit > 0) */
  validation: Dataset | null;
  test: Dataset;
}

export async function loadDatasets(c: TrainConfig): Promise<Datasets> {
  let train: Dataset;
  let test: Dataset;
  if (c.dataset === 'synthetic') {
    ({ train, test } = syntheticDataset({ seed: c.seed, imageSize: c.imageSize, trainSize: c.syntheticTrain, testSize: c.syntheticTest }));
  } else {
    // a subset of the first N images needs only the files that hold them (the first of five for 10,000)
    const perFile = cifarLayout(c.dataset).trainRecordsPerFile;
    const files = c.trainSubset ? Math.min(cifarLayout(c.dataset).trainFiles.length, Math.ceil(c.trainSubset / perFile)) : 0;
    ({ train, test } = await loadCifar(c.dataset, c.data!, files ? { trainFiles: Array.from({ length: files }, (_, i) => i + 1) } : {}));
  }
  if (c.trainSubset) train = subset(train, Math.min(c.trainSubset, datasetSize(train)));
  if (c.testSubset) test = subset(test, Math.min(c.testSubset, datasetSize(test)));
  let validation: Dataset | null = null;
  if (c.valSplit > 0) ({ train, validation } = splitValidation(train, c.valSplit, c.seed));
  return { train, validation, test };
}

export function modelFor(device: Device, c: TrainConfig, data: Dataset): Module {
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

export interface TrainSidecar {
  config: TrainConfig;
  /** the LR the run uses as its maximum (after `--max-lr auto`) */
  maxLr: number;
  totalSteps: number;
  optimizer: { step: number; velocities: (string | null)[] };
  loader: LoaderState;
}

const toBase64 = (a: Float32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
function fromBase64(s: string, what: string): Float32Array {
  const b = Buffer.from(s, 'base64');
  if (b.byteLength % 4 !== 0) throw new Error(`checkpoint: ${what} is not a whole number of f32 values`);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

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

export async function saveTrainingCheckpoint(
  root: string, model: Module, optimizer: SGD, loader: BatchLoader, config: TrainConfig, maxLr: number, totalSteps: number,
): Promise<string> {
  const opt = await optimizer.state();
  const sidecar: TrainSidecar = {
    config,
    maxLr,
    totalSteps,
    optimizer: { step: opt.step, velocities: opt.velocities.map((v) => (v ? toBase64(v) : null)) },
    loader: loader.state(),
  };
  const ckpt: Checkpoint<TrainSidecar> = { tensors: await stateTensors(model), sidecar, step: opt.step };
  const saved = await saveCheckpoint(root, ckpt, { keep: 2, metadata: { model: config.model, step: String(opt.step) } });
  return saved.dir;
}

/** The newest checkpoint under `root`, or null when there is none. */
export async function loadTrainingCheckpoint(root: string): Promise<{ sidecar: TrainSidecar; tensors: Record<string, ArrayLike<number> | BigInt64Array>; dir: string } | null> {
  const dir = await latestCheckpointDir(root);
  if (!dir) return null;
  const ck = await loadCheckpoint<TrainSidecar>(dir);
  const s = ck.sidecar;
  if (!s || typeof s !== 'object' || !s.config || !s.optimizer || !s.loader) {
    throw new Error(`checkpoint ${dir}: the sidecar is not a training state (missing config, optimizer or loader)`);
  }
  const tensors: Record<string, ArrayLike<number> | BigInt64Array> = {};
  for (const [k, t] of Object.entries(ck.tensors)) tensors[k] = t.data as ArrayLike<number> | BigInt64Array;
  return { sidecar: s, tensors, dir };
}

/** Restores the optimizer's state saved in a sidecar. */
export function restoreOptimizer(optimizer: SGD, s: TrainSidecar['optimizer']): void {
  const state: SgdState = { step: s.step, velocities: s.velocities.map((v, i) => (v === null ? null : fromBase64(v, `velocity ${i}`))) };
  optimizer.loadState(state);
}
