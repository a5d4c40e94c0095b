/**
 * Issue 15 item 4, ground truth for the LR choice on small settings that run on lavapipe:
 * for each experiment file here, the range tests as users run them (the default sweep:
 * one epoch, at least 100 steps; 3 seeds), a longer sweep (400 steps) and one on held-out
 * loss (`--eval-loss`), then the experiment itself (One Cycle at 7 max LRs × 2 seeds).
 * Resumable: a finished range test is skipped and `experiment` resumes its runs. Then
 * `collect` writes the curves and grids as test fixtures (test/fixtures/range-tests/,
 * test/fixtures/lr-grid/):
 *
 *   node --import tsx experiments/lr-ground-truth/run.ts [SETTING...]
 *   node --import tsx experiments/lr-ground-truth/run.ts --seeds 3,4 [SETTING...]
 *   node --import tsx experiments/lr-ground-truth/run.ts collect
 *
 * `--seeds` trains only those seeds of the grid (no range tests): how seeds 3 and 4 were
 * added after seeds 1 and 2 had run on another day. `collect` takes every run it finds,
 * in the run folders (runs/lr-ground-truth/NAME) and in the committed reports
 * (experiments/lr-ground-truth/results/NAME/results.json and its seeds-* subfolders), one
 * result per run name, and copies a fresh report of the run folders into the committed
 * results (results/NAME/seeds-A-B when the folder holds only some seeds).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const HERE = new URL('.', import.meta.url).pathname;
const ROOT = join(HERE, '..', '..');
const CLI = join(ROOT, 'cli', 'main.ts');
const FIXTURES = join(ROOT, 'test', 'fixtures');

interface Experiment {
  name: string;
  description: string;
  base: Record<string, string | number | boolean>;
  seeds: number[];
  out: string;
}

const settings = readdirSync(HERE).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
const read = (name: string): Experiment => JSON.parse(readFileSync(join(HERE, `${name}.json`), 'utf8')) as Experiment;

/** The experiment's base settings as the CLI's flags (camelCase → --kebab-case; false → --no-x). */
function flags(base: Experiment['base']): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(base)) {
    if (k === 'epochs') continue; // a range test's length is its own
    const flag = `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    if (v === false) out.push(`--no-${flag.slice(2)}`);
    else if (v === true) out.push(flag);
    else out.push(flag, String(v));
  }
  return out;
}

/** The range tests of one setting: name → extra flags. */
const SWEEPS: Record<string, string[]> = {
  'rt-s1': ['--seed', '1', '--repeats', '1'],
  'rt-s2': ['--seed', '2', '--repeats', '1'],
  'rt-s3': ['--seed', '3', '--repeats', '1'],
  'rt-long-s1': ['--seed', '1', '--steps', '400', '--repeats', '1'],
  'rt-evalloss-s1': ['--seed', '1', '--eval-loss', '--repeats', '1'],
};

function run(args: string[]): void {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: exit ${r.status}`);
}

function runSetting(name: string, seeds: string | null): void {
  const e = read(name);
  if (seeds) {
    run(['experiment', join(HERE, `${name}.json`), '--seeds', seeds, '--quiet']);
    return;
  }
  for (const [sweep, extra] of Object.entries(SWEEPS)) {
    const out = join(ROOT, e.out, sweep);
    if (existsSync(join(out, 'range-test.json'))) continue;
    run(['range-test', ...flags(e.base), ...extra, '--out', out, '--quiet']);
  }
  run(['experiment', join(HERE, `${name}.json`), '--quiet']);
}

interface RunResult {
  name: string;
  arm: string;
  seed: number;
  state: string;
  finalAcc: number | null;
}
interface Report {
  runs: RunResult[];
}

const readReport = (path: string): Report | null => (existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Report) : null);

/** Mean and sample std (n − 1) of xs. */
function stats(xs: number[]): { n: number; mean: number; std: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std = xs.length > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { n: xs.length, mean, std };
}

function collect(): void {
  for (const name of settings) {
    const e = read(name);
    const folder = join(ROOT, e.out);
    const committed = join(HERE, 'results', name);
    // the run folders' own report, copied into the committed results (seeds-A-B when it holds only some seeds)
    const fresh = readReport(join(folder, 'results.json'));
    if (fresh) {
      const seeds = [...new Set(fresh.runs.map((r) => r.seed))].sort((a, b) => a - b);
      const dest = seeds.length === e.seeds.length ? committed : join(committed, `seeds-${seeds.join('-')}`);
      mkdirSync(dest, { recursive: true });
      for (const f of ['results.json', 'results.md', 'test-accuracy.svg', 'final-accuracy.svg']) if (existsSync(join(folder, f))) copyFileSync(join(folder, f), join(dest, f));
    }
    const reports = [join(committed, 'results.json'), ...(existsSync(committed) ? readdirSync(committed).filter((d) => d.startsWith('seeds-')).map((d) => join(committed, d, 'results.json')) : [])];
    const byName = new Map<string, RunResult>();
    for (const path of reports) for (const run of readReport(path)?.runs ?? []) if ((run.state === 'completed' && run.finalAcc !== null) || run.state === 'diverged') byName.set(run.name, run);
    if (byName.size === 0) {
      console.log(`${name}: no results yet`);
      continue;
    }
    // a diverged run counts at chance accuracy (CIFAR-10: 10%): what a user who picked that LR got
    const CHANCE = 0.1;
    const arms = new Map<string, { accs: number[]; diverged: number }>();
    for (const run of byName.values()) {
      const a = arms.get(run.arm) ?? { accs: [], diverged: 0 };
      a.accs.push(run.state === 'diverged' ? CHANCE : run.finalAcc!);
      if (run.state === 'diverged') a.diverged++;
      arms.set(run.arm, a);
    }
    const grid = [...arms]
      .map(([arm, { accs, diverged }]) => {
        const st = stats(accs);
        return { maxLr: Number(arm.replace(/^lr/, '')), acc: Number((100 * st.mean).toFixed(2)), std: Number((100 * st.std).toFixed(2)), seeds: st.n, ...(diverged ? { diverged } : {}) };
      })
      .sort((a, b) => a.maxLr - b.maxLr);
    const description = `Ground truth for the LR choice (issue 15 item 4): ${e.description.replace(/^Issue 15 item 4, ground truth for the LR choice: /, '')} Final test accuracy (%), mean and sample std over seeds (a diverged run counted at chance, 10%; 'diverged' says how many), recorded on lavapipe by experiments/lr-ground-truth/run.ts.`;
    writeFileSync(join(FIXTURES, 'lr-grid', `${name}.json`), `${JSON.stringify({ description, grid }, null, 1)}\n`);
    for (const sweep of Object.keys(SWEEPS)) {
      const path = join(folder, sweep, 'range-test.json');
      if (!existsSync(path)) continue;
      // its plot beside the grid's report
      if (existsSync(join(folder, sweep, 'range-test.svg'))) copyFileSync(join(folder, sweep, 'range-test.svg'), join(committed, `${sweep}.svg`));
      const rt = JSON.parse(readFileSync(path, 'utf8')) as { lrs?: number[]; losses?: number[]; curve?: { lrs: number[]; losses: number[] }; stopReason?: string; mode?: string };
      const curve = rt.curve ?? { lrs: rt.lrs!, losses: rt.losses! };
      const fixture = {
        description: `Recorded by this engine (range-test, ${SWEEPS[sweep]!.join(' ')}) on lavapipe: ${e.description.replace(/^.*?; /, '')} Ground truth: test/fixtures/lr-grid/${name}.json`,
        model: e.base.model,
        dataset: e.base.dataset,
        batchSize: e.base.batchSize,
        mode: rt.mode ?? 'exp',
        stopReason: rt.stopReason ?? null,
        lrs: curve.lrs,
        losses: curve.losses,
      };
      writeFileSync(join(FIXTURES, 'range-tests', `${name}-${sweep}.json`), `${JSON.stringify(fixture)}\n`);
    }
    console.log(`${name}: grid of ${grid.length} LRs, best ${Math.max(...grid.map((g) => g.acc))}%`);
  }
}

const args = process.argv.slice(2);
const seedsAt = args.indexOf('--seeds');
const seeds = seedsAt >= 0 ? (args.splice(seedsAt, 2)[1] ?? null) : null;
if (seedsAt >= 0 && !seeds) throw new Error('--seeds needs a list such as 3,4');
if (args[0] === 'collect') collect();
else for (const name of args.length ? args : settings) runSetting(name, seeds);
