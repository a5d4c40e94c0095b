// The training configuration: one type shared by the CLI flags, recipe files and
// checkpoints' sidecars, validated in one place.
import { readFileSync } from 'node:fs';
import { isModelFile } from '../models/custom.ts';
import { RESIZE_MODES, type ResizeMode } from '../data/imageFolder.ts';

export const MODELS = ['resnet8', 'resnet20', 'resnet32', 'resnet44', 'resnet56', 'resnet110', 'resnet9', 'smallcnn'] as const;
export const DATASETS = ['synthetic', 'cifar10', 'cifar100', 'folder'] as const;

export const SCHEDULES = ['one-cycle', 'step', 'constant', 'clr'] as const;

export type ModelName = (typeof MODELS)[number];
export type DatasetName = (typeof DATASETS)[number];
export type ScheduleName = (typeof SCHEDULES)[number];

export interface TrainConfig {
  /** a built-in model, or the absolute path of a model file (`--model ./my-net.ts`, models/custom.ts) */
  model: ModelName | string;
  /** SHA-256 of the model file the run was started with (set by train; absent for built-in models) */
  modelSha256?: string | undefined;
  dataset: DatasetName;
  /** channels of the model's first stage (model-specific default when absent) */
  width?: number | undefined;
  /** folder or .tar.gz of the dataset (cifar10/cifar100); the image folder's root (folder) */
  data?: string | undefined;
  /** image folder: how images are brought to imageSize (default crop) */
  resize?: ResizeMode | undefined;
  /** image folder: refuse an unreadable image instead of skipping it */
  strict?: boolean | undefined;
  /** image folder: where the decoded images are cached (default ROOT/.onecycle-cache) */
  cache?: string | undefined;
  /** synthetic dataset and image folders: image side (32; 16 trains four times faster); synthetic sizes */
  imageSize: number;
  syntheticTrain: number;
  syntheticTest: number;
  /** use only the first N training images (quick experiments) */
  trainSubset?: number | undefined;
  testSubset?: number | undefined;
  /** fraction of the training set held out for validation (0: none); a one-tree image folder: the test fraction (0: 0.2) */
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
  /**
   * 'f16': half-precision training (shader-f16): f16 activations and gradients, f16
   * operands with f32 accumulation in the convolutions, f32 weights, momentum and
   * batchnorm statistics, dynamic loss scaling (engine/gradScaler.ts). Absent: 'f32'.
   */
  precision?: 'f32' | 'f16' | undefined;
  /** half precision: the loss scaler's initial scale (PyTorch's GradScaler init_scale; default 2^16) */
  lossScale?: number | undefined;
  /**
   * Time to accuracy: stop at the first evaluation (every evalEvery steps, and the
   * final one) at or above this test accuracy, a fraction; the summary's `target`
   * says at which step and after how many seconds. Absent: train every step.
   */
  targetAccuracy?: number | undefined;
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

export const KEYS = new Set<string>(Object.keys(DEFAULTS).concat(['width', 'data', 'trainSubset', 'testSubset', 'epochs', 'iterations', 'minLr', 'annihilationFraction', 'clrStepSize', 'modelSha256', 'resize', 'strict', 'cache', 'precision', 'lossScale', 'targetAccuracy']));

function fail(source: string, msg: string): never {
  throw new Error(`${source}: ${msg}`);
}

/**
 * Upper bounds no real run meets; they catch typos (`--iterations 1e12`) and
 * tampered files before they cost memory or hours. Shown in `train --help`.
 */
export const LIMITS = {
  batchSize: 65536,
  width: 4096,
  imageSize: 512,
  syntheticTrain: 1_000_000,
  syntheticTest: 1_000_000,
  /** images × pixels × channels of the generated dataset, in bytes (it is held in memory) */
  syntheticBytes: 2 ** 31,
  epochs: 100_000,
  iterations: 100_000_000,
  trainSubset: 100_000_000,
  testSubset: 100_000_000,
  evalEvery: 100_000_000,
  checkpointEvery: 100_000_000,
  logEvery: 100_000,
  clrStepSize: 100_000_000,
  milestone: 100_000_000,
  /** the RNGs take 32-bit seeds; larger ones would silently collide */
  seed: 2 ** 32 - 1,
} as const;

/**
 * Where a setting came from, for messages: a string names one source for every
 * key ("runs/r/checkpoints/ckpt-000003/state.json: iterations"); a function
 * names each key's own ("command line: --iterations", "r.json: seed").
 */
export type SettingSource = string | ((key: string) => string);

/** Checks every field's type and range; every message names where the setting came from. */
export function validateConfig(c: TrainConfig, source: SettingSource): TrainConfig {
  const at = (k: string): string => (typeof source === 'string' ? `${source}: ${k}` : source(k));
  const fail = (k: string, msg: string): never => {
    throw new Error(`${at(k)} ${msg}`);
  };
  const show = (v: unknown): string => (v === undefined ? 'nothing' : JSON.stringify(v) ?? String(v));
  const int = (k: keyof TrainConfig, lo: number, hi: number, optional = true): void => {
    const v = c[k];
    if (v === undefined && optional) return;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
      const what = lo === 0 ? 'a non-negative integer' : lo === 1 ? 'a positive integer' : `an integer`;
      fail(k, `must be ${what}${hi < Infinity ? ` at most ${hi}` : ''}, got ${show(v)}`);
    }
  };
  const finite = (k: keyof TrainConfig, lo: number, hi: number): void => {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi) fail(k, `must be a number in [${lo}, ${hi}], got ${show(v)}`);
  };
  const oneOf = (k: keyof TrainConfig, allowed: readonly string[], what: string): void => {
    const v = c[k];
    if (typeof v !== 'string' || !allowed.includes(v)) throw new Error(`${at(k)}: unknown ${what} ${typeof v === 'string' ? `'${v}'` : show(v)} (one of ${allowed.join(', ')})`);
  };
  const bool = (k: keyof TrainConfig): void => {
    if (typeof c[k] !== 'boolean') fail(k, `must be true or false, got ${show(c[k])}`);
  };
  const path = (k: keyof TrainConfig, optional: boolean): void => {
    const v = c[k];
    if (v === undefined && optional) return;
    if (typeof v !== 'string' || v.trim() === '' || v.includes('\0')) fail(k, `must be a non-empty path, got ${show(v)}`);
  };
  if (typeof c !== 'object' || c === null || Array.isArray(c)) throw new Error(`${typeof source === 'string' ? source : 'settings'}: the settings must be a JSON object, got ${show(c)}`);
  if (typeof c.model === 'string' && isModelFile(c.model)) {
    if (c.model.includes('\0')) fail('model', `must be a path, got ${show(c.model)}`);
    if (c.width !== undefined) fail('width', `applies to the built-in models; a model file (${c.model}) sets its own widths`);
  } else if (typeof c.model !== 'string' || !(MODELS as readonly string[]).includes(c.model)) {
    throw new Error(`${at('model')}: unknown model ${typeof c.model === 'string' ? `'${c.model}'` : show(c.model)} (one of ${MODELS.join(', ')}, or a model file's path: ./my-net.ts)`);
  }
  if (c.modelSha256 !== undefined && (typeof c.modelSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(c.modelSha256))) {
    fail('modelSha256', `must be 64 hexadecimal digits, got ${show(c.modelSha256)}`);
  }
  oneOf('dataset', DATASETS, 'dataset');
  oneOf('schedule', SCHEDULES, 'schedule');
  oneOf('clrMode', ['triangular', 'triangular2', 'exp_range'], 'clrMode');
  oneOf('preset', ['smith', 'pytorch', 'fastai'], 'preset');
  if (c.precision !== undefined) oneOf('precision', ['f32', 'f16'], 'precision');
  if (c.lossScale !== undefined) {
    finite('lossScale', 2 ** -24, 2 ** 64);
    if (c.precision !== 'f16') fail('lossScale', 'applies to --precision f16 only');
  }
  path('out', false);
  path('data', true);
  path('cache', true);
  if (c.dataset !== 'synthetic' && !c.data) fail('data', `is missing: dataset '${c.dataset}' needs --data (${c.dataset === 'folder' ? 'the root of the image folder: ROOT/CLASS/*.jpg or ROOT/train/CLASS + ROOT/val/CLASS' : 'a folder or the official .tar.gz'})`);
  if (c.resize !== undefined) oneOf('resize', RESIZE_MODES, 'resize mode');
  if (c.strict !== undefined) bool('strict');
  int('batchSize', 1, LIMITS.batchSize, false);
  int('width', 1, LIMITS.width);
  int('imageSize', 1, LIMITS.imageSize, false);
  int('syntheticTrain', 1, LIMITS.syntheticTrain, false);
  int('syntheticTest', 1, LIMITS.syntheticTest, false);
  int('epochs', 1, LIMITS.epochs);
  int('iterations', 1, LIMITS.iterations);
  int('trainSubset', 1, LIMITS.trainSubset);
  int('testSubset', 1, LIMITS.testSubset);
  int('evalEvery', 0, LIMITS.evalEvery, false);
  int('checkpointEvery', 0, LIMITS.checkpointEvery, false);
  int('logEvery', 1, LIMITS.logEvery, false);
  int('cutout', 0, LIMITS.imageSize, false);
  int('clrStepSize', 1, LIMITS.clrStepSize);
  int('seed', 0, LIMITS.seed, false);
  if (c.maxLr !== 'auto') {
    if (typeof c.maxLr !== 'number' || !Number.isFinite(c.maxLr) || c.maxLr <= 0 || c.maxLr > 1e3) {
      fail('maxLr', `must be 'auto' or a number in (0, 1000], got ${show(c.maxLr)}`);
    }
  }
  if (c.minLr !== undefined) finite('minLr', 0, 1e3);
  finite('valSplit', 0, 0.9);
  finite('gamma', 0, 1);
  finite('weightDecay', 0, 1);
  finite('momentum', 0, 1);
  finite('minMomentum', 0, 1);
  finite('bnMomentum', 0, 1);
  finite('labelSmoothing', 0, 1);
  finite('divergenceFactor', 1, 1e9);
  if (c.annihilationFraction !== undefined) finite('annihilationFraction', 0, 1);
  if (c.targetAccuracy !== undefined) {
    const v = c.targetAccuracy;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > 1) fail('targetAccuracy', `must be a fraction in (0, 1] (0.94 for 94%), got ${show(v)}`);
  }
  bool('cycleMomentum');
  bool('nesterov');
  bool('augment');
  if (!Array.isArray(c.milestones) || c.milestones.some((m) => typeof m !== 'number' || !Number.isInteger(m) || m < 0 || m > LIMITS.milestone)) {
    fail('milestones', `must be a list of integers in [0, ${LIMITS.milestone}], got ${show(c.milestones)}`);
  }
  // relations between fields
  if (c.minMomentum > c.momentum) fail('minMomentum', `(${c.minMomentum}) exceeds momentum (${c.momentum})`);
  if (c.minLr !== undefined && typeof c.maxLr === 'number' && (c.schedule === 'one-cycle' || c.schedule === 'clr') && !(c.minLr < c.maxLr)) {
    fail('minLr', `(${c.minLr}) must be below maxLr (${c.maxLr})`);
  }
  const side = c.dataset === 'synthetic' || c.dataset === 'folder' ? c.imageSize : 32;
  if (c.cutout > side) fail('cutout', `(${c.cutout}) exceeds the image side (${side} pixels)`);
  if (c.dataset === 'synthetic') {
    const bytes = (c.syntheticTrain + c.syntheticTest) * 3 * c.imageSize * c.imageSize;
    if (bytes > LIMITS.syntheticBytes) {
      fail('syntheticTrain', `+ syntheticTest: the generated dataset (${c.syntheticTrain + c.syntheticTest} images of ${c.imageSize}×${c.imageSize}) would take ${(bytes / 2 ** 30).toFixed(1)} GiB; the limit is ${LIMITS.syntheticBytes / 2 ** 30} GiB`);
    }
  }
  return c;
}

/** Reads a recipe: a JSON object of TrainConfig fields (unknown keys refused). */
export function readRecipe(path: string): Partial<TrainConfig> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    fail(path, `cannot read recipe: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a folder, not a file' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`);
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
export function resolveConfig(recipe: Partial<TrainConfig> | undefined, flags: Partial<TrainConfig>, source: SettingSource): TrainConfig {
  const c = { ...DEFAULTS, ...(recipe ?? {}), ...flags } as TrainConfig;
  return validateConfig(c, source);
}

/** Iterations the run takes, from `iterations` or `epochs`. */
export function totalIterations(c: TrainConfig, trainSize: number): number {
  if (c.iterations) return c.iterations;
  const perEpoch = Math.max(1, Math.floor(trainSize / c.batchSize));
  return perEpoch * (c.epochs ?? 1);
}

/** The settings a resume may change (extending a run, how often it evaluates, checkpoints, logs; the data's path). */
export const RESUME_CHANGEABLE_KEYS = ['iterations', 'evalEvery', 'checkpointEvery', 'logEvery', 'divergenceFactor', 'data', 'cache'] as const;

/** The command-line flag of a configuration key (evalEvery → --eval-every), for messages. */
export function flagOf(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}
