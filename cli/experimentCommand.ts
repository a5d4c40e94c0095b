// `experiment FILE`: runs an experiment file (arms × seeds, resumable; run/experiment.ts);
// `experiment FILE --dry-run`: its plan with a time estimate; `experiment report FOLDER`:
// results.json, results.md and SVG charts for any folder of run folders (run/experimentReport.ts).
// This file only parses flags.
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Device, createDevice } from '../gpu/device.ts';
import { formatPlan, onlyArms, onlySeeds, planExperiment, probeSpeed, readExperiment, runExperiment } from '../run/experiment.ts';
import { resultsTable, writeReport } from '../run/experimentReport.ts';

export const EXPERIMENT_USAGE = `usage: npm start -- experiment FILE [flags]
       npm start -- experiment report FOLDER [--out DIR] [--arms A,B,...]

Runs an experiment file (experiments/*.json): every arm (a base configuration plus
overrides) at every seed, one run after another, each in OUT/ARM-sSEED, through the
same code as \`train\`. Run it again to continue: completed runs are skipped, an
interrupted one resumes from its checkpoint. Ctrl-C stops after the current run has
saved a checkpoint. At the end OUT gets results.json, results.md, test-accuracy.svg
and final-accuracy.svg.

  { "name": "cmp", "base": { "recipe": "recipes/x.json", "epochs": 8 },
    "arms": [ { "name": "onecycle", "overrides": { "maxLr": 0.8 } },
              { "name": "step", "overrides": { "schedule": "step", "maxLr": 0.1 } } ],
    "seeds": [1, 2, 3], "out": "runs/experiments/cmp" }

\`report FOLDER\` aggregates any folder of run folders (NAME-sN = seed N of arm NAME;
a FOLDER with a runs/ subfolder reads that and writes next to it).

flags:
  --dry-run            print the plan (each run's status and steps) and a time estimate; train nothing
  --probe              with --dry-run: measure a few steps where no finished run gives the speed
  --out DIR            the experiment's output folder (default: the file's "out", else runs/experiments/NAME);
                       for report: where to write (default: FOLDER)
  --arms A,B,...       only these of the file's arms (to run an arm added later, or one alone);
                       for report: only these arms, in this order (a focused chart)
  --data PATH          the dataset folder for every run, instead of the file's base "data"
  --seeds 3,4          only these of the file's seeds (to add seeds later or split the runs across machines;
                       the report then covers the runs in OUT)
  --quiet              no progress bars
  --help               this text`;

export async function experimentCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      'dry-run': { type: 'boolean' },
      probe: { type: 'boolean' },
      out: { type: 'string' },
      arms: { type: 'string' },
      data: { type: 'string' },
      seeds: { type: 'string' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${EXPERIMENT_USAGE}\n`);
    return 0;
  }
  if (positionals[0] === 'report') {
    if (positionals.length !== 2) throw new Error(`experiment report: expected one FOLDER, got ${positionals.length - 1}\n${EXPERIMENT_USAGE}`);
    const folder = positionals[1]!;
    const runsDir = existsSync(join(folder, 'runs')) && statSync(join(folder, 'runs')).isDirectory() ? join(folder, 'runs') : folder;
    const arms = values.arms?.split(',').map((a) => a.trim()).filter((a) => a);
    if (values.out) mkdirSync(values.out, { recursive: true });
    const { results, files } = await writeReport(runsDir, { outDir: values.out ?? folder, title: `Results: ${folder}`, ...(arms ? { arms } : {}) });
    process.stdout.write(`${resultsTable(results)}\n\nwrote ${files.join(', ')}\n`);
    return 0;
  }
  if (positionals.length !== 1) throw new Error(`experiment: expected one experiment FILE, got ${positionals.length}\n${EXPERIMENT_USAGE}`);
  if (values.probe && !values['dry-run']) throw new Error('experiment: --probe goes with --dry-run');
  const read = readExperiment(positionals[0]!, values.out, values.data);
  const seeded = values.seeds === undefined ? read : onlySeeds(read, values.seeds.split(',').map((s) => s.trim()).filter((s) => s).map((s) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0) throw new Error(`experiment: --seeds expects integers separated by commas, got '${values.seeds}'`);
    return n;
  }));
  const exp = values.arms === undefined ? seeded : onlyArms(seeded, values.arms.split(',').map((a) => a.trim()).filter((a) => a));
  if (values['dry-run']) {
    const device = values.probe ? await createDevice() : null;
    try {
      const plan = await planExperiment(exp, device ? { probe: (c) => probeSpeed(c, { device }) } : {});
      process.stdout.write(`${formatPlan(plan)}\n`);
    } finally {
      device?.destroy();
    }
    return 0;
  }
  const { resolveMaxLrByRangeTest } = await import('../run/rangeTest.ts');
  // one device for all runs, made when the first run starts (none when every run is done)
  const made: { device: Promise<Device> | null } = { device: null };
  const device = (): Promise<Device> => (made.device ??= createDevice());
  try {
    const r = await runExperiment(exp, { device, quiet: Boolean(values.quiet), resolveMaxLr: resolveMaxLrByRangeTest });
    process.stdout.write(`${resultsTable(r.results)}\n\nreport: ${r.reportFiles.join(', ')}\n`);
    if (r.end === 'interrupted') {
      process.stdout.write(`experiment '${exp.name}' stopped; run the same command again to continue\n`);
      return 130;
    }
    process.stdout.write(`experiment '${exp.name}' complete (${r.trained.length} trained now, ${r.skipped.length} already done)\n`);
    return 0;
  } finally {
    if (made.device) (await made.device).destroy();
  }
}
