/**
 * Issue 15 item 5, `tune` against ground truth: for each experiment file here, `tune` as a
 * user runs it on the same setting (its default candidates, --budget 2000 steps, seeds 1 and
 * 2), then the grid of every weight decay × batchnorm momentum pair as full runs (the
 * experiment). Resumable (tune continues where it stopped; experiment skips finished runs).
 * Compare the tuned pair's full-run accuracy (its arm in the grid) with the grid's best, and
 * the search's cost (tune's steps) with the grid's.
 *
 *   node --import tsx experiments/tune-ground-truth/run.ts [SETTING...]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const HERE = new URL('.', import.meta.url).pathname;
const ROOT = join(HERE, '..', '..');
const CLI = join(ROOT, 'cli', 'main.ts');

interface Experiment {
  base: Record<string, string | number | boolean>;
  out: string;
}

const flags = (base: Experiment['base']): string[] =>
  Object.entries(base).flatMap(([k, v]) => {
    const flag = `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    return v === false ? [`--no-${flag.slice(2)}`] : v === true ? [flag] : [flag, String(v)];
  });

function run(args: string[]): void {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: exit ${r.status}`);
}

const settings = readdirSync(HERE).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
for (const name of process.argv.length > 2 ? process.argv.slice(2) : settings) {
  const e = JSON.parse(readFileSync(join(HERE, `${name}.json`), 'utf8')) as Experiment;
  for (const seed of [1, 2]) {
    const out = join(ROOT, e.out, `tune-s${seed}`);
    if (existsSync(join(out, 'tune.json'))) continue;
    run(['tune', ...flags(e.base), '--seed', String(seed), '--budget', '2000', '--out', out, '--quiet']);
  }
  run(['experiment', join(HERE, `${name}.json`), '--quiet']);
}
