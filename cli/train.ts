// `train`: flags (or a recipe) → the run's configuration → run/train.ts. See
// run/train.ts for what a run does (outputs, resume, signals, divergence, the lock).
import { SIGNAL_EXIT, runTraining } from '../run/train.ts';
import { parseTrainArgs, trainHelp } from './flags.ts';

export const TRAIN_SUMMARY =
  'Trains a classifier with SGD whose LR and momentum follow the chosen schedule (One Cycle by default).\n' +
  'Writes metrics.jsonl, summary.json, loss/accuracy/lr/momentum SVG plots and checkpoints/ (safetensors with\n' +
  "PyTorch's state_dict names + state.json) into --out. --resume continues the run in --out with its saved settings.";

export async function trainCommand(argv: string[]): Promise<number> {
  const args = parseTrainArgs(argv);
  if (args.help) {
    process.stdout.write(`${trainHelp('train', TRAIN_SUMMARY)}\n`);
    return 0;
  }
  const { resolveMaxLrByRangeTest } = await import('../run/rangeTest.ts');
  if (args.resume && args.overwrite) throw new Error('--resume and --overwrite contradict each other (continue the run in --out, or replace it)');
  const { result, testAccuracy, signal } = await runTraining(args.config, {
    resume: args.resume,
    overwrite: args.overwrite,
    allowModelChange: args.allowModelChange,
    changes: args.given,
    changesAs: args.givenAs,
    quiet: args.quiet,
    resolveMaxLr: resolveMaxLrByRangeTest,
  });
  if (result.end === 'completed') {
    const acc = testAccuracy !== null ? `${(100 * testAccuracy).toFixed(2)}%` : 'n/a';
    if (result.target) process.stdout.write(`${result.message}\n`);
    else if (args.config.targetAccuracy !== undefined) process.stdout.write(`target accuracy ${(100 * args.config.targetAccuracy).toFixed(2)}% not reached\n`);
    process.stdout.write(`final test accuracy ${acc} after ${result.steps} steps in ${result.seconds.toFixed(1)} s; outputs in ${args.config.out}\n`);
    return 0;
  }
  process.stdout.write(`${result.message}\n`);
  return result.end === 'interrupted' ? SIGNAL_EXIT[signal ?? 'SIGINT'] : 1;
}
