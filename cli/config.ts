// The training configuration: one type shared by the CLI flags, recipe files and
// checkpoints' sidecars, validated in one place.
import { readFileSync } from 'node:fs';

export const MODELS = ['resnet8', 'resnet20', 'resnet32', 'resnet44', 'resnet56', 'resnet110', 'resnet9', 'smallcnn'] as const;
export const DATASETS = ['synthetic', 'cifar10', 'cifar100'] as const;
export const SCHEDULES = ['one-cycle', 'step', 'constant', 'clr'] as const;

export type ModelName = (typeof MODELS)[number];
export type DatasetName = (typeof DATASETS)[number];
export type ScheduleName = (typeof SCHEDULES)[number];

export interface TrainConfig {
  model: ModelName;
  dataset: DatasetName;
  /** channels of the model's first stage (model-specific default when absent) */
  width?: number | undefined;
  /** folder or .tar.gz of the dataset (cifar10/cifar100) */
  data?: string | undefined;
  /** synthetic dataset: image side (32; 16 trains four times faster) and sizes */
  imageSize: number;
  syntheticTrain: number;
  syntheticTest: number;
  /** use only the first N training images (quick experiments) */
  trainSubset?: number | undefined;
  testSubset?: number | undefined;
  /** fraction of the training set held out for validation (0: none) */
  valSplit: number;
  batchSize: number;
  /** training length: iterations wins over epochs when both are given */
  epochs?: number | undefined;
  iterations?: number | undefined;
  schedule: ScheduleName;
  /** a number, or 'auto' to run the LR range test first */
  maxLr: number | 'auto';
  /** One Cycle's lower bound (default maxLr / 10); CLR's base LR */
  minLr?: number | undefined;
  /** One Cycle preset: Smith's policy (default) or PyTorch/fastai's */
  preset: 'smith' | 'pytorch' | 'fastai';
  annihilationFraction?: number | undefined;
  /** step schedule: iterations at which the LR is multiplied by gamma */
  milestones: number[];
  gamma: number;
  /** CLR half-cycle in iterations */
  clrStepSize?: number | undefined;
  clrMode: 'triangular' | 'triangular2' | 'exp_range';
  weightDecay: number;
  /** momentum, or the top of One Cycle's momentum cycle */
  momentum: number;
  /** bottom of One Cycle's momentum cycle */
  minMomentum: number;
  cycleMomentum: boolean;
  /** batchnorm running-statistics momentum in PyTorch's convention (Smith's 0.9 = PyTorch's 0.1) */
  bnMomentum: number;
  nesterov: boolean;
  labelSmoothing: number;
  augment: boolean;
  /** cutout square side in pixels (0: off) */
  cutout: number;
  seed: number;
  out: string;
  evalEvery: number;
  checkpointEvery: number;
  logEvery: number;
  /** stop when the smoothed loss exceeds this factor times its minimum */
  divergenceFactor: number;
}

export const DEFAULTS: TrainConfig = {
  model: 'smallcnn',
  dataset: 'synthetic',
  imageSize: 32,
  syntheticTrain: 5000,
  syntheticTest: 1000,
  valSplit: 0,
  batchSize: 128,
  schedule: 'one-cycle',
  maxLr: 0.8,
  preset: 'smith',
  milestones: [],
  gamma: 0.1,
  clrMode: 'triangular',
  weightDecay: 1e-4,
  momentum: 0.95,
  minMomentum: 0.85,
  cycleMomentum: true,
  bnMomentum: 0.1,
  nesterov: false,
  labelSmoothing: 0,
  augment: true,
  cutout: 0,
  seed: 0,
  out: 'runs/latest',
  evalEvery: 0,
  checkpointEvery: 0,
  logEvery: 10,
  divergenceFactor: 4,
};

export const KEYS = new Set<string>(Object.keys(DEFAULTS).concat(['width', 'data', 'trainSubset', 'testSubset', 'epochs', 'iterations', 'minLr', 'annihilationFraction', 'clrStepSize']));

function fail(source: string, msg: string): never {
  throw new Error(`${source}: ${msg}`);
}

/** Checks every field; `source` names the recipe file or 'command line' in messages. */
export function validateConfig(c: TrainConfig, source: string): TrainConfig {
  const positiveInt = (k: keyof TrainConfig, v: unknown, allowZero = false): void => {
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < (allowZero ? 0 : 1)) fail(source, `${k} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${JSON.stringify(v)}`);
  };
  const finite = (k: keyof TrainConfig, v: unknown, lo: number, hi: number): void => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi) fail(source, `${k} must be a number in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
  };
  if (!MODELS.includes(c.model)) fail(source, `unknown model '${c.model}' (one of ${MODELS.join(', ')})`);
  if (!DATASETS.includes(c.dataset)) fail(source, `unknown dataset '${c.dataset}' (one of ${DATASETS.join(', ')})`);
  if (!SCHEDULES.includes(c.schedule)) fail(source, `unknown schedule '${c.schedule}' (one of ${SCHEDULES.join(', ')})`);
  if (c.dataset !== 'synthetic' && !c.data) fail(source, `dataset '${c.dataset}' needs --data (a folder or the official .tar.gz)`);
  positiveInt('batchSize', c.batchSize);
  positiveInt('width', c.width);
  positiveInt('imageSize', c.imageSize);
  positiveInt('syntheticTrain', c.syntheticTrain);
  positiveInt('syntheticTest', c.syntheticTest);
  positiveInt('epochs', c.epochs);
  positiveInt('iterations', c.iterations);
  positiveInt('trainSubset', c.trainSubset);
  positiveInt('testSubset', c.testSubset);
  positiveInt('evalEvery', c.evalEvery, true);
  positiveInt('checkpointEvery', c.checkpointEvery, true);
  positiveInt('logEvery', c.logEvery);
  positiveInt('cutout', c.cutout, true);
  positiveInt('clrStepSize', c.clrStepSize);
  if (c.maxLr !== 'auto') finite('maxLr', c.maxLr, Number.MIN_VALUE, 1e3);
  if (c.minLr !== undefined) finite('minLr', c.minLr, 0, 1e3);
  finite('valSplit', c.valSplit, 0, 0.9);
  finite('gamma', c.gamma, 0, 1);
  finite('weightDecay', c.weightDecay, 0, 1);
  finite('momentum', c.momentum, 0, 1);
  finite('minMomentum', c.minMomentum, 0, 1);
  finite('bnMomentum', c.bnMomentum, 0, 1);
  finite('labelSmoothing', c.labelSmoothing, 0, 1);
  finite('divergenceFactor', c.divergenceFactor, 1, 1e9);
  if (c.annihilationFraction !== undefined) finite('annihilationFraction', c.annihilationFraction, 0, 1);
  if (!Array.isArray(c.milestones) || c.milestones.some((m) => !Number.isInteger(m) || m < 0)) fail(source, `milestones must be non-negative integers, got ${JSON.stringify(c.milestones)}`);
  if (!['triangular', 'triangular2', 'exp_range'].includes(c.clrMode)) fail(source, `unknown clrMode '${c.clrMode}'`);
  if (!['smith', 'pytorch', 'fastai'].includes(c.preset)) fail(source, `unknown preset '${c.preset}'`);
  if (c.minMomentum > c.momentum) fail(source, `minMomentum (${c.minMomentum}) exceeds momentum (${c.momentum})`);
  return c;
}

/** Reads a recipe: a JSON object of TrainConfig fields (unknown keys refused). */
export function readRecipe(path: string): Partial<TrainConfig> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    fail(path, `cannot read recipe: ${(e as Error).message}`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    fail(path, `recipe is not valid JSON: ${(e as Error).message}`);
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) fail(path, 'recipe must be a JSON object');
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (k.startsWith('//') || k === 'description') continue; // comments
    if (!KEYS.has(k)) fail(path, `unknown recipe key '${k}'`);
    out[k] = v;
  }
  return out as Partial<TrainConfig>;
}

/** Defaults, then the recipe, then explicit flags. */
export function resolveConfig(recipe: Partial<TrainConfig> | undefined, flags: Partial<TrainConfig>, source: string): TrainConfig {
  const c = { ...DEFAULTS, ...(recipe ?? {}), ...flags } as TrainConfig;
  return validateConfig(c, source);
}

/** Iterations the run takes, from `iterations` or `epochs`. */
export function totalIterations(c: TrainConfig, trainSize: number): number {
  if (c.iterations) return c.iterations;
  const perEpoch = Math.max(1, Math.floor(trainSize / c.batchSize));
  return perEpoch * (c.epochs ?? 1);
}
