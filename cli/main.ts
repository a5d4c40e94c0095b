// The headless command line: `node --import tsx cli/main.ts COMMAND [flags]`
// (`npm start -- COMMAND [flags]`; `npm start` alone trains on the built-in dataset).
import { rangeTestCommand } from './rangeTestCommand.ts';
import { trainCommand } from './train.ts';

const COMMANDS: Record<string, { summary: string; run: (argv: string[]) => Promise<number> }> = {
  train: { summary: 'train a model (One Cycle by default) with metrics, plots, checkpoints and resume', run: trainCommand },
  'range-test': { summary: 'LR range test: loss curve, plot and suggested max/min LR', run: rangeTestCommand },
};

function usage(): string {
  const lines = ['usage: npm start -- COMMAND [flags]    (COMMAND --help for its flags)', '', 'commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(12)} ${c.summary}`);
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${usage()}\n`);
    return command ? 0 : 1;
  }
  const c = COMMANDS[command];
  if (!c) {
    process.stderr.write(`unknown command '${command}'\n${usage()}\n`);
    return 2;
  }
  return c.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
