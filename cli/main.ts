// The headless command line: `node --import tsx cli/main.ts COMMAND [flags]`
// (`npm start -- COMMAND [flags]`; `npm start` alone trains on the built-in dataset).
import { rangeTestCommand } from './rangeTestCommand.ts';
import { trainCommand } from './train.ts';
import { tuneCommand } from './tuneCommand.ts';

const COMMANDS: Record<string, { summary: string; run: (argv: string[]) => Promise<number> }> = {
  train: { summary: 'train a model (One Cycle by default) with metrics, plots, checkpoints and resume', run: trainCommand },
  'range-test': { summary: 'LR range test: loss curve, plot and suggested max/min LR', run: rangeTestCommand },
  eval: { summary: "evaluate a run's newest checkpoint on the test set (loss, accuracy, per class)", run: async (argv) => (await import('./evalCommand.ts')).evalCommand(argv) },
  predict: { summary: 'classify image files or folders with a trained checkpoint: top-k classes with probabilities', run: async (argv) => (await import('./predictCommand.ts')).predictCommand(argv) },
  download: { summary: 'download CIFAR-10/100 (MD5-checked, atomic) and print the path for train --data', run: async (argv) => (await import('./downloadCommand.ts')).downloadCommand(argv) },
  tune: { summary: 'choose weight decay and batchnorm momentum by successive halving of short One Cycle runs', run: tuneCommand },
  experiment: { summary: 'run an experiment file (arms × seeds, resumable), plan it (--dry-run), or report a folder of runs', run: async (argv) => (await import('./experimentCommand.ts')).experimentCommand(argv) },
  export: { summary: 'export a trained checkpoint as ONNX (checked by onnxruntime) or safetensors', run: async (argv) => (await import('./exportCommand.ts')).exportCommand(argv) },
  bench: { summary: 'kernel and training-step benchmarks against TensorFlow.js on the same adapter (BENCHMARKS.md)', run: async (argv) => (await import('./benchCommand.ts')).benchCommand(argv) },
};

function usage(): string {
  const lines = [
    'usage: npm start -- COMMAND [flags]    (COMMAND --help for its flags)',
    '       npm start                       trains the quick-start model (recipes/quickstart.json)',
    '',
    'commands:',
  ];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(12)} ${c.summary}`);
  return lines.join('\n');
}

/** `npm start` with no command: the main job on the built-in default. */
// (its folder is the project's own: a second `npm start` replaces the first run)
const QUICKSTART = ['train', '--recipe', new URL('../recipes/quickstart.json', import.meta.url).pathname, '--overwrite'];

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv.length ? argv : QUICKSTART;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  const c = COMMANDS[command];
  if (!c) {
    process.stderr.write(`unknown command '${command}'\n${usage()}\n`);
    return 2;
  }
  return c.run(rest);
}

/**
 * Sets the exit code and, should anything still hold the process open once
 * the command is over (a native handle), exits after a grace period: an error
 * must end in its message and exit 1, never a hang.
 */
function finish(code: number): void {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 10_000).unref();
}

const fail = (e: unknown): void => {
  process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
  finish(1);
};
// an error thrown outside the command's promise chain (a callback, a stray rejection) ends the same way
process.on('uncaughtException', (e) => {
  fail(e);
  process.exit(1);
});
process.on('unhandledRejection', (e) => {
  fail(e);
  process.exit(1);
});
main(process.argv.slice(2)).then(finish, fail);
