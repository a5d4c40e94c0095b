// `tune`: chooses weight decay and batchnorm momentum by successive halving of
// short One Cycle runs (run/tune.ts); writes a table, tune.json, tune.svg and
// tuned-recipe.json, which `train --recipe` takes as it is.
import { parseArgs } from 'node:util';
import { SMITH_BN_MOMENTA, SMITH_WEIGHT_DECAYS, type TrialResult, runTuning } from '../run/tune.ts';
import type { TrainConfig } from '../run/config.ts';
import { parseTrainArgs, trainHelp } from './flags.ts';

const TUNE_FLAGS = {
  budget: { type: 'string' },
  'weight-decays': { type: 'string' },
  'bn-momenta': { type: 'string' },
  eta: { type: 'string' },
  metric: { type: 'string' },
} as const;

const SUMMARY =
  "Chooses weight decay and batchnorm momentum (Smith's disciplined approach): short One Cycle runs at the max LR\n" +
  '(--max-lr N, or auto for a range test first), compared on a validation split (10% of the training set unless\n' +
  '--val-split says otherwise) by successive halving within --budget steps. Interrupted, it continues where it stopped.\n' +
  'Writes tune.json, tune.svg, tune-trials.jsonl and tuned-recipe.json (for train --recipe) into --out.';

const list = (name: string, v: string | undefined, d: number[]): number[] => {
  if (v === undefined) return d;
  const xs = v.split(',').map((s) => Number(s));
  if (xs.length === 0 || xs.some((x) => !Number.isFinite(x) || x < 0)) throw new Error(`--${name}: expected comma-separated numbers ≥ 0, got '${v}'`);
  return xs;
};

function table(trials: TrialResult[]): string {
  const rows = [...trials].sort((a, b) => b.steps - a.steps || a.valLoss - b.valLoss);
  const lines = ['  steps  weight decay  bn momentum (PyTorch / Smith)  val loss  val acc'];
  for (const t of rows) {
    lines.push(
      `  ${String(t.steps).padStart(5)}  ${String(t.weightDecay).padStart(12)}  ${`${t.bnMomentum} / ${(1 - t.bnMomentum).toFixed(2)}`.padStart(28)}  ${t.valLoss.toFixed(4).padStart(8)}  ${(100 * t.valAcc).toFixed(1).padStart(6)}%`,
    );
  }
  return lines.join('\n');
}

export async function tuneCommand(argv: string[]): Promise<number> {
  const own: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i]!.replace(/^--/, '').split('=')[0]!;
    if (name in TUNE_FLAGS) {
      own.push(argv[i]!);
      if (!argv[i]!.includes('=')) own.push(argv[++i] ?? '');
    } else rest.push(argv[i]!);
  }
  const args = parseTrainArgs(rest);
  if (args.help) {
    const extra = [
      '  --budget N                  total training steps over all trials [2000]',
      `  --weight-decays LIST        candidates [${SMITH_WEIGHT_DECAYS.join(',')}]`,
      `  --bn-momenta LIST           candidates, PyTorch's convention [${SMITH_BN_MOMENTA.join(',')}] (Smith's 0.9,0.95,0.97,0.99)`,
      '  --eta N                     successive halving keeps the best 1/eta each rung [3]',
      '  --metric loss|accuracy      validation metric to choose by [loss]',
    ];
    process.stdout.write(`${trainHelp('tune', SUMMARY)}\ntune flags:\n${extra.join('\n')}\n`);
    return 0;
  }
  const { values } = parseArgs({ args: own, options: TUNE_FLAGS, strict: true });
  const budget = Number(values.budget ?? 2000);
  if (!Number.isInteger(budget) || budget < 10) throw new Error(`--budget: expected an integer ≥ 10, got '${values.budget}'`);
  const eta = Number(values.eta ?? 3);
  if (!(eta >= 2)) throw new Error(`--eta: expected a number ≥ 2, got '${values.eta}'`);
  const metric = (values.metric ?? 'loss') as string;
  if (metric !== 'loss' && metric !== 'accuracy') throw new Error(`--metric: expected loss or accuracy, got '${metric}'`);
  // (an image folder's valSplit may be its test fraction: runTuning holds a validation slice out of its training images itself)
  const config: TrainConfig = { ...args.config, valSplit: args.config.dataset === 'folder' ? args.config.valSplit : args.config.valSplit || 0.1 };
  const log = (line: string): void => void (args.quiet || process.stderr.write(`${line}\n`));
  let stop = false;
  const onSigint = (): void => {
    if (stop) process.exit(130);
    stop = true;
    log('interrupt: stopping after this trial (finished trials are kept; run again to continue)');
  };
  process.on('SIGINT', onSigint);
  try {
    const { result: r, best, recipePath } = await runTuning(config, {
      weightDecays: list('weight-decays', values['weight-decays'], SMITH_WEIGHT_DECAYS),
      bnMomenta: list('bn-momenta', values['bn-momenta'], SMITH_BN_MOMENTA),
      budget,
      eta,
      metric,
      log,
      shouldStop: () => stop,
    });
    process.stdout.write(`${table(r.trials)}\n`);
    const tail = r.interrupted ? ' (interrupted: run the same command again to continue)' : '';
    process.stdout.write(
      `chosen: weight decay ${best.weightDecay}, batchnorm momentum ${best.bnMomentum} (PyTorch; Smith's ${(1 - best.bnMomentum).toFixed(2)})${tail}\n` +
        `train with: npm start -- train --recipe ${recipePath}\n`,
    );
    return r.interrupted ? 130 : 0;
  } finally {
    process.off('SIGINT', onSigint);
  }
}
