// `eval`: flags → the evaluation of a trained checkpoint on its test set
// (run/eval.ts): loss, accuracy, per-class accuracy and the confusion matrix on the
// terminal and in eval.json.
import { parseArgs } from 'node:util';
import { DATASETS, type DatasetName } from '../run/config.ts';
import { type EvalOptions, evaluateCheckpoint, formatEvalReport } from '../run/eval.ts';

export const EVAL_HELP = `usage: npm start -- eval --checkpoint PATH [flags]

Evaluates a trained checkpoint on the test set: rebuilds the model from the settings saved with the
checkpoint, loads its weights and batchnorm running statistics, runs it in eval mode, and prints the
loss, the accuracy and the accuracy of each class; writes them (and the confusion matrix) to eval.json.

flags:
  --checkpoint PATH             a run folder (its newest checkpoint), its checkpoints/ folder, or one
                                checkpoints/ckpt-NNNNNN folder (required)
  --dataset NAME                evaluate on another dataset: ${DATASETS.join(', ')} [the run's]
  --data PATH                   dataset folder, official .tar.gz, or image folder ROOT [the run's]
  --test-subset N               only the first N test images; 0: the whole test set [the run's]
  --batch-size N                images per evaluation batch [the run's, at least 256]
  --out FILE                    where to write eval.json [RUN/eval.json, or in the folder given]
  --quiet                       no progress lines on stderr
  --help                        this text

exit status: 0 evaluated; 1 error (a missing or corrupt checkpoint is named with the reason).`;

const EVAL_FLAGS = {
  checkpoint: { type: 'string' },
  dataset: { type: 'string' },
  data: { type: 'string' },
  'test-subset': { type: 'string' },
  'batch-size': { type: 'string' },
  out: { type: 'string' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean' },
} as const;

function intFlag(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < min) {
    throw new Error(`--${name}: expected ${min === 0 ? 'a non-negative' : 'a positive'} integer, got '${v}'`);
  }
  return n;
}

/** Parses eval's flags; null for --help. */
export function parseEvalArgs(argv: string[]): (EvalOptions & { quiet: boolean }) | null {
  const { values, positionals } = parseArgs({ args: argv, options: EVAL_FLAGS, allowPositionals: true, strict: true });
  if (values.help) return null;
  if (positionals.length) throw new Error(`unexpected argument '${positionals[0]}' (flags start with --; the checkpoint goes after --checkpoint)`);
  if (!values.checkpoint) throw new Error('--checkpoint PATH is required (a run folder, its checkpoints/ folder or a ckpt-NNNNNN folder)');
  const dataset = values.dataset;
  if (dataset !== undefined && !(DATASETS as readonly string[]).includes(dataset)) {
    throw new Error(`--dataset: unknown dataset '${dataset}' (one of ${DATASETS.join(', ')})`);
  }
  return {
    checkpoint: values.checkpoint,
    dataset: dataset as DatasetName | undefined,
    data: values.data,
    testSubset: intFlag('test-subset', values['test-subset'], 0),
    batchSize: intFlag('batch-size', values['batch-size'], 1),
    out: values.out,
    quiet: Boolean(values.quiet),
  };
}

export async function evalCommand(argv: string[]): Promise<number> {
  const o = parseEvalArgs(argv);
  if (!o) {
    process.stdout.write(`${EVAL_HELP}\n`);
    return 0;
  }
  const report = await evaluateCheckpoint(o, { log: (s) => void (o.quiet || process.stderr.write(`${s}\n`)) });
  process.stdout.write(`${formatEvalReport(report)}\n`);
  return 0;
}
