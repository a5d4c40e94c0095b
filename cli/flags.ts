// Command-line flags of `train` (and the commands that share its configuration),
// parsed with node:util's parseArgs and mapped onto TrainConfig fields.
import { parseArgs } from 'node:util';
import { isModelFile, resolveModelFile } from '../models/custom.ts';
import { DATASETS, DEFAULTS, LIMITS, MODELS, RESUME_CHANGEABLE_KEYS, SCHEDULES, type TrainConfig, flagOf, readRecipe, resolveConfig } from '../run/config.ts';

interface FlagSpec {
  key: keyof TrainConfig;
  type: 'string' | 'number' | 'int' | 'boolean' | 'list' | 'lr';
  help: string;
}

export const TRAIN_FLAGS: Record<string, FlagSpec> = {
  model: { key: 'model', type: 'string', help: `network: ${MODELS.join(', ')}, or your own model file (./my-net.ts; README "Your own model")` },
  width: { key: 'width', type: 'int', help: "channels of the model's first stage (resnets 16, resnet9 64, smallcnn 16)" },
  dataset: { key: 'dataset', type: 'string', help: `${DATASETS.join(', ')} (synthetic is built in)` },
  data: { key: 'data', type: 'string', help: 'dataset folder or official .tar.gz (cifar10/cifar100); folder: ROOT of ROOT/CLASS/*.jpg or ROOT/train|val/CLASS' },
  'image-size': { key: 'imageSize', type: 'int', help: 'image side in pixels (synthetic; folder: resize + centre crop, or --resize pad)' },
  resize: { key: 'resize', type: 'string', help: 'folder: crop (resize the shorter side, cut the centre) or pad (fit, letterbox) [crop]' },
  strict: { key: 'strict', type: 'boolean', help: 'folder: refuse an unreadable image (default: name it and skip it)' },
  cache: { key: 'cache', type: 'string', help: 'folder: cache folder of decoded images [ROOT/.onecycle-cache]' },
  'synthetic-train': { key: 'syntheticTrain', type: 'int', help: 'synthetic dataset: training images' },
  'synthetic-test': { key: 'syntheticTest', type: 'int', help: 'synthetic dataset: test images' },
  'train-subset': { key: 'trainSubset', type: 'int', help: 'use only the first N training images' },
  'test-subset': { key: 'testSubset', type: 'int', help: 'use only the first N test images' },
  'val-split': { key: 'valSplit', type: 'number', help: 'fraction of training images held out for validation (one-tree folder: the test fraction, 0 → 0.2)' },
  'batch-size': { key: 'batchSize', type: 'int', help: 'images per step' },
  epochs: { key: 'epochs', type: 'int', help: 'training length in epochs' },
  iterations: { key: 'iterations', type: 'int', help: 'training length in steps (wins over --epochs)' },
  schedule: { key: 'schedule', type: 'string', help: `${SCHEDULES.join(', ')}` },
  'max-lr': { key: 'maxLr', type: 'lr', help: "peak LR, or 'auto' to run the LR range test first" },
  'min-lr': { key: 'minLr', type: 'number', help: 'One Cycle start/end LR (default max/10); CLR base' },
  preset: { key: 'preset', type: 'string', help: 'one-cycle flavour: smith (default), pytorch, fastai' },
  'annihilation-fraction': { key: 'annihilationFraction', type: 'number', help: "fraction of steps in One Cycle's final phase" },
  milestones: { key: 'milestones', type: 'list', help: 'step schedule: comma-separated iterations' },
  gamma: { key: 'gamma', type: 'number', help: 'step schedule: LR factor at each milestone' },
  'clr-step-size': { key: 'clrStepSize', type: 'int', help: 'CLR half-cycle in iterations' },
  'clr-mode': { key: 'clrMode', type: 'string', help: 'triangular, triangular2, exp_range' },
  'weight-decay': { key: 'weightDecay', type: 'number', help: 'L2 weight decay' },
  momentum: { key: 'momentum', type: 'number', help: "momentum (One Cycle: the cycle's top)" },
  'min-momentum': { key: 'minMomentum', type: 'number', help: "One Cycle momentum cycle's bottom" },
  'no-cycle-momentum': { key: 'cycleMomentum', type: 'boolean', help: 'keep momentum constant' },
  'bn-momentum': { key: 'bnMomentum', type: 'number', help: "batchnorm running-stats momentum, PyTorch's convention (0.1)" },
  nesterov: { key: 'nesterov', type: 'boolean', help: 'Nesterov momentum' },
  'label-smoothing': { key: 'labelSmoothing', type: 'number', help: 'label smoothing ε' },
  'loss-scale': { key: 'lossScale', type: 'number', help: 'with --precision f16: the initial loss scale (default 65536, as PyTorch)' },
  precision: { key: 'precision', type: 'string', help: 'f32 (default) or f16: half-precision activations and gradients with dynamic loss scaling (needs shader-f16)' },
  'no-augment': { key: 'augment', type: 'boolean', help: 'disable random crop and flip' },
  cutout: { key: 'cutout', type: 'int', help: 'cutout square side in pixels (0: off)' },
  seed: { key: 'seed', type: 'int', help: 'random seed' },
  out: { key: 'out', type: 'string', help: 'output folder' },
  'eval-every': { key: 'evalEvery', type: 'int', help: 'evaluate every N steps (0: at the end)' },
  'checkpoint-every': { key: 'checkpointEvery', type: 'int', help: 'checkpoint every N steps (0: at the end)' },
  'log-every': { key: 'logEvery', type: 'int', help: 'read metrics back every N steps' },
  'divergence-factor': { key: 'divergenceFactor', type: 'number', help: 'stop when smoothed loss > factor × its minimum' },
  'target-accuracy': { key: 'targetAccuracy', type: 'number', help: 'time to accuracy: stop at the first evaluation at or above this test accuracy (a fraction, 0.94); the summary says when' },
};

/**
 * Flags `--resume` accepts with a value other than the run's: they change
 * neither the model nor the data nor the steps already taken. A changed
 * `--iterations` moves the end of the run (the schedule is rebuilt over the new
 * length); anything else would silently make the resumed run another experiment.
 */
/** The flags of the settings a resume may change (run/config.ts RESUME_CHANGEABLE_KEYS), without their dashes. */
export const RESUME_CHANGEABLE_FLAGS = RESUME_CHANGEABLE_KEYS.map((k) => flagOf(k).slice(2));

export interface ParsedTrainArgs {
  config: TrainConfig;
  recipe?: string | undefined;
  resume: boolean;
  /** --overwrite: clear a previous run in --out first */
  overwrite: boolean;
  /** --allow-model-change: resume although the model file's hash changed */
  allowModelChange: boolean;
  quiet: boolean;
  help: boolean;
  /** the settings the recipe and flags gave explicitly (what `--resume` checks against the checkpoint's) */
  given: Partial<TrainConfig>;
  /** each given key's source, as messages name it ('command line: --iterations', 'r.json: seed') */
  givenAs: Record<string, string>;
}

export function trainHelp(command: string, summary: string): string {
  const lines = [`usage: npm start -- ${command} [flags]`, '', summary, '', 'flags:'];
  lines.push('  --recipe FILE'.padEnd(30) + 'JSON recipe of these settings (flags override it)');
  if (command === 'train') {
    lines.push('  --resume'.padEnd(30) + `continue the run in --out with its saved settings (may change: ${RESUME_CHANGEABLE_FLAGS.map((f) => `--${f}`).join(', ')})`);
    lines.push('  --overwrite'.padEnd(30) + 'replace the previous run in --out (its outputs are deleted first)');
    lines.push('  --allow-model-change'.padEnd(30) + "with --resume: continue although the run's model file changed since (its SHA-256 differs)");
  }
  lines.push('  --quiet'.padEnd(30) + 'no progress bar');
  for (const [name, f] of Object.entries(TRAIN_FLAGS)) {
    const def = DEFAULTS[f.key];
    const shown = f.type === 'boolean' ? '' : ` ${f.type === 'list' ? 'LIST' : f.type === 'string' ? 'NAME' : 'N'}`;
    lines.push(`  --${name}${shown}`.padEnd(30) + f.help + (def !== undefined && f.type !== 'boolean' ? ` [${Array.isArray(def) ? def.join(',') || 'none' : def}]` : ''));
  }
  lines.push('  --help'.padEnd(30) + 'this text');
  lines.push(
    '',
    `limits (no real run meets them; they catch typos and damaged files): --iterations ≤ ${LIMITS.iterations.toExponential()}, --epochs ≤ ${LIMITS.epochs.toExponential()},`,
    `  --batch-size ≤ ${LIMITS.batchSize}, --width ≤ ${LIMITS.width}, --image-size ≤ ${LIMITS.imageSize}, --synthetic-train/-test ≤ ${LIMITS.syntheticTrain.toExponential()}`,
    `  (and ≤ ${LIMITS.syntheticBytes / 2 ** 30} GiB of generated images), --cutout ≤ the image side, --seed in [0, 2^32-1], --log-every ≤ ${LIMITS.logEvery.toExponential()},`,
    `  --eval-every/--checkpoint-every/--clr-step-size/--milestones ≤ ${LIMITS.iterations.toExponential()}, --max-lr ≤ 1000, --min-lr below --max-lr.`,
  );
  if (command === 'train') {
    lines.push(
      '',
      'exit status: 0 completed; 1 error (the file or flag is named with the reason) or the run diverged;',
      '  2 unknown command; 130 stopped by Ctrl-C (SIGINT), 143 by SIGTERM, after writing a checkpoint (continue with --resume).',
    );
  }
  return lines.join('\n');
}

function parseNumber(name: string, v: string, int: boolean): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || (int && !Number.isInteger(n))) {
    throw new Error(`--${name}: expected ${int ? 'an integer' : 'a number'}, got '${v}'`);
  }
  return n;
}

export function parseTrainArgs(argv: string[]): ParsedTrainArgs {
  const options: Record<string, { type: 'string' | 'boolean' }> = {
    recipe: { type: 'string' },
    resume: { type: 'boolean' },
    overwrite: { type: 'boolean' },
    'allow-model-change': { type: 'boolean' },
    quiet: { type: 'boolean' },
    help: { type: 'boolean' },
  };
  for (const [name, f] of Object.entries(TRAIN_FLAGS)) options[name] = { type: f.type === 'boolean' ? 'boolean' : 'string' };
  const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  if (positionals.length) throw new Error(`unexpected argument '${positionals[0]}' (flags start with --)`);
  const flags: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(TRAIN_FLAGS)) {
    const v = values[name];
    if (v === undefined) continue;
    switch (f.type) {
      case 'boolean':
        // --no-x flags set the field false; others set it true
        flags[f.key] = !name.startsWith('no-');
        break;
      case 'number':
      case 'int':
        flags[f.key] = parseNumber(name, v as string, f.type === 'int');
        break;
      case 'lr':
        flags[f.key] = v === 'auto' ? 'auto' : parseNumber(name, v as string, false);
        break;
      case 'list':
        flags[f.key] = (v as string).split(',').filter((s) => s.trim()).map((s) => parseNumber(name, s, true));
        break;
      default:
        flags[f.key] = v;
    }
  }
  const recipePath = values.recipe as string | undefined;
  const recipe = recipePath ? readRecipe(recipePath) : undefined;
  // a model file is kept by its absolute path: eval and resume may run from another folder
  for (const o of [flags, recipe ?? {}] as Record<string, unknown>[]) {
    if (typeof o.model === 'string' && isModelFile(o.model)) o.model = resolveModelFile(o.model);
  }
  const help = Boolean(values.help);
  const flagOf = new Map(Object.entries(TRAIN_FLAGS).map(([name, f]) => [f.key as string, name]));
  // each message names where its setting came from: the flag, the recipe file, or the default
  const source = (key: string): string =>
    key in flags ? `command line: --${flagOf.get(key) ?? key}` : recipe && key in recipe ? `${recipePath}: ${key}` : `(default) ${key}`;
  const config = help ? { ...DEFAULTS } : resolveConfig(recipe, flags as Partial<TrainConfig>, source);
  const given: Partial<TrainConfig> = { ...(recipe ?? {}), ...(flags as Partial<TrainConfig>) };
  const givenAs: Record<string, string> = {};
  for (const k of Object.keys(given)) givenAs[k] = source(k);
  return {
    config, recipe: recipePath, resume: Boolean(values.resume), overwrite: Boolean(values.overwrite), allowModelChange: Boolean(values['allow-model-change']), quiet: Boolean(values.quiet), help, given, givenAs,
  };
}
