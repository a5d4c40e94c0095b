// `range-test`: flags → the LR range test of the configured model and data
// (run/rangeTest.ts), with its curve, plot and suggested LRs.
import { parseArgs } from 'node:util';
import { createDevice } from '../gpu/device.ts';
import { rangeTestSummary } from '../rangetest/report.ts';
import type { SuggestMethod } from '../rangetest/suggest.ts';
import { EVAL_LOSS_IMAGES, RANGE_DEFAULTS, type RangeTestSettings, rangeTestForConfig, repeatsSummary } from '../run/rangeTest.ts';
import { parseTrainArgs, trainHelp } from './flags.ts';

const RANGE_FLAGS = {
  'start-lr': { type: 'string' },
  'end-lr': { type: 'string' },
  steps: { type: 'string' },
  mode: { type: 'string' },
  method: { type: 'string' },
  'eval-loss': { type: 'boolean' },
  repeats: { type: 'string' },
} as const;

export async function rangeTestCommand(argv: string[]): Promise<number> {
  // split the range-test flags from the training ones
  const own: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i]!.replace(/^--/, '').split('=')[0]!;
    if (name in RANGE_FLAGS) {
      own.push(argv[i]!);
      if (RANGE_FLAGS[name as keyof typeof RANGE_FLAGS].type === 'string' && !argv[i]!.includes('=')) own.push(argv[++i] ?? '');
    } else rest.push(argv[i]!);
  }
  const args = parseTrainArgs(rest);
  if (args.help) {
    const extra = [
      '  --start-lr N                first LR of the sweep [1e-4]',
      '  --end-lr N                  last LR of the sweep [10]',
      '  --steps N                   sweep length (default: one epoch, at least 100, at most 500 steps)',
      '  --mode exp|linear           LR spacing [exp]',
      '  --method auto|steepest|minimum|valley   how the max LR is read off the curve [auto]',
      `  --eval-loss                 record the mean loss on held-out data (its first ${EVAL_LOSS_IMAGES} images) instead of the training loss`,
      `  --repeats N                 sweeps, from seeds seed, seed+1, ...; the answer is the median of their suggestions [${RANGE_DEFAULTS.repeats}]`,
    ];
    const summary = 'LR range test: sweeps the LR up while training, stops on divergence, restores the weights, and\nwrites range-test.json/.csv/.svg with the suggested max and min LR into --out.';
    process.stdout.write(`${trainHelp('range-test', summary)}\nrange-test flags:\n${extra.join('\n')}\n`);
    return 0;
  }
  const { values } = parseArgs({ args: own, options: RANGE_FLAGS, strict: true });
  const num = (name: string, v: string | undefined, d: number): number => {
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new Error(`--${name}: expected a number, got '${v}'`);
    return n;
  };
  const mode = (values.mode ?? 'exp') as string;
  if (mode !== 'exp' && mode !== 'linear') throw new Error(`--mode: expected exp or linear, got '${mode}'`);
  const method = (values.method ?? 'auto') as string;
  if (!['auto', 'steepest', 'minimum', 'valley'].includes(method)) throw new Error(`--method: expected auto, steepest, minimum or valley, got '${method}'`);
  const settings: RangeTestSettings = {
    startLr: num('start-lr', values['start-lr'], RANGE_DEFAULTS.startLr),
    endLr: num('end-lr', values['end-lr'], RANGE_DEFAULTS.endLr),
    steps: num('steps', values.steps, 0),
    mode,
    method: method as SuggestMethod,
    evalLoss: Boolean(values['eval-loss']),
    repeats: num('repeats', values.repeats, RANGE_DEFAULTS.repeats),
  };
  if (!Number.isInteger(settings.repeats) || settings.repeats < 1) throw new Error(`--repeats: expected an integer ≥ 1, got '${values.repeats}'`);
  const device = await createDevice();
  try {
    const log = (line: string): void => void (args.quiet || process.stderr.write(`${line}\n`));
    const o = await rangeTestForConfig(device, args.config, settings, log);
    const summary = repeatsSummary(o);
    const repeats = summary ? `\n${summary}; each sweep's report in sweep-1 … sweep-${o.sweeps.length}` : '';
    process.stdout.write(`${rangeTestSummary(o.median)}${repeats}\noutputs: range-test.json, range-test.csv, range-test.svg in ${args.config.out}\n`);
    return o.median.suggestion ? 0 : 1;
  } finally {
    await device.close();
  }
}
