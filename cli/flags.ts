// Command-line flags of `train` (and the commands that share its configuration),
// parsed with node:util's parseArgs and mapped onto TrainConfig fields.
import { parseArgs } from 'node:util';
import { DATASETS, DEFAULTS, MODELS, SCHEDULES, type TrainConfig, readRecipe, resolveConfig } from './config.ts';

interface FlagSpec {
  key: keyof TrainConfig;
  type: 'string' | 'number' | 'int' | 'boolean' | 'list' | 'lr';
  help: string;
}

export const TRAIN_FLAGS: Record<string, FlagSpec> = {
  model: { key: 'model', type: 'string', help: `network: ${MODELS.join(', ')}` },
  width: { key: 'width', type: 'int', help: "channels of the model's first stage (resnets 16, resnet9 64, smallcnn 16)" },
  dataset: { key: 'dataset', type: 'string', help: `${DATASETS.join(', ')} (synthetic is built in)` },
  data: { key: 'data', type: 'string', help: 'dataset folder or official .tar.gz (cifar10/cifar100)' },
  'image-size': { key: 'imageSize', type: 'int', help: 'synthetic dataset: image side in pixels' },
  'synthetic-train': { key: 'syntheticTrain', type: 'int', help: 'synthetic dataset: training images' },
  'synthetic-test': { key: 'syntheticTest', type: 'int', help: 'synthetic dataset: test images' },
  'train-subset': { key: 'trainSubset', type: 'int', help: 'use only the first N training images' },
  'test-subset': { key: 'testSubset', type: 'int', help: 'use only the first N test images' },
  'val-split': { key: 'valSplit', type: 'number', help: 'fraction of training images held out for validation' },
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
  'no-augment': { key: 'augment', type: 'boolean', help: 'disable random crop and flip' },
  cutout: { key: 'cutout', type: 'int', help: 'cutout square side in pixels (0: off)' },
  seed: { key: 'seed', type: 'int', help: 'random seed' },
  out: { key: 'out', type: 'string', help: 'output folder' },
  'eval-every': { key: 'evalEvery', type: 'int', help: 'evaluate every N steps (0: at the end)' },
  'checkpoint-every': { key: 'checkpointEvery', type: 'int', help: 'checkpoint every N steps (0: at the end)' },
  'log-every': { key: 'logEvery', type: 'int', help: 'read metrics back every N steps' },
  'divergence-factor': { key: 'divergenceFactor', type: 'number', help: 'stop when smoothed loss > factor × its minimum' },
};

export interface ParsedTrainArgs {
  config: TrainConfig;
  recipe?: string | undefined;
  resume: boolean;
  quiet: boolean;
  help: boolean;
}

export function trainHelp(command: string, summary: string): string {
  const lines = [`usage: npm start -- ${command} [flags]`, '', summary, '', 'flags:'];
  lines.push('  --recipe FILE'.padEnd(30) + 'JSON recipe of these settings (flags override it)');
  if (command === 'train') lines.push('  --resume'.padEnd(30) + 'continue from the checkpoint in --out');
  lines.push('  --quiet'.padEnd(30) + 'no progress bar');
  for (const [name, f] of Object.entries(TRAIN_FLAGS)) {
    const def = DEFAULTS[f.key];
    const shown = f.type === 'boolean' ? '' : ` ${f.type === 'list' ? 'LIST' : f.type === 'string' ? 'NAME' : 'N'}`;
    lines.push(`  --${name}${shown}`.padEnd(30) + f.help + (def !== undefined && f.type !== 'boolean' ? ` [${Array.isArray(def) ? def.join(',') || 'none' : def}]` : ''));
  }
  lines.push('  --help'.padEnd(30) + 'this text');
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
  const help = Boolean(values.help);
  const config = help ? { ...DEFAULTS } : resolveConfig(recipe, flags as Partial<TrainConfig>, recipePath ? `${recipePath} + command line` : 'command line');
  return { config, recipe: recipePath, resume: Boolean(values.resume), quiet: Boolean(values.quiet), help };
}
