/**
 * `tune` scored against ground truth (issue 15 item 5): for each setting here, each
 * seed's tuned (weight decay, batchnorm momentum) pair read off the grid of full runs
 * (its arm's mean final test accuracy over the grid's seeds), against the grid's best
 * pair and the training defaults (weight decay 1e-4, batchnorm momentum 0.1); regret =
 * grid best − accuracy of the pick, in points; the search's cost in training steps
 * against the grid's. Reads the committed copies in results/NAME/ (run.ts's outputs,
 * copied by `score.ts --collect`), prints the markdown table of RESULTS.md:
 *
 *   node --import tsx experiments/tune-ground-truth/score.ts [--collect]
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const HERE = new URL('.', import.meta.url).pathname;
const ROOT = join(HERE, '..', '..');

interface Arm { arm: string; settings: { weightDecay: number; bnMomentum: number }; finalAcc: { n: number; mean: number; std: number }; steps: number }
interface Tune { best: { weightDecay: number; bnMomentum: number; steps: number; valAcc: number }; budget: number; budgetUsed: number }

const settings = readdirSync(HERE).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
const collect = process.argv.includes('--collect');
const rows: string[] = [];
for (const name of settings) {
  const e = JSON.parse(readFileSync(join(HERE, `${name}.json`), 'utf8')) as { out: string; seeds: number[] };
  const saved = join(HERE, 'results', name);
  if (collect) {
    const run = join(ROOT, e.out);
    if (!existsSync(join(run, 'results.json'))) {
      console.error(`${name}: no grid results in ${run} yet`);
      continue;
    }
    mkdirSync(saved, { recursive: true });
    for (const f of ['results.json', 'results.md', 'test-accuracy.svg', 'final-accuracy.svg']) if (existsSync(join(run, f))) copyFileSync(join(run, f), join(saved, f));
    for (const seed of [1, 2]) {
      for (const [f, to] of [['tune.json', '.json'], ['tune.svg', '.svg'], ['tuned-recipe.json', '-recipe.json']] as const) {
        const src = join(run, `tune-s${seed}`, f);
        if (existsSync(src)) copyFileSync(src, join(saved, `tune-s${seed}${to}`));
      }
    }
  }
  if (!existsSync(join(saved, 'results.json'))) continue;
  const arms = (JSON.parse(readFileSync(join(saved, 'results.json'), 'utf8')) as { arms: Arm[] }).arms.filter((a) => a.finalAcc.n > 0);
  const accOf = (wd: number, bn: number): Arm | undefined => arms.find((a) => a.settings.weightDecay === wd && a.settings.bnMomentum === bn);
  const best = arms.reduce((a, b) => (b.finalAcc.mean > a.finalAcc.mean ? b : a));
  const pct = (x: number): string => (100 * x).toFixed(2);
  const gridSteps = arms.reduce((s, a) => s + a.steps * a.finalAcc.n, 0);
  const def = accOf(1e-4, 0.1);
  for (const seed of [1, 2]) {
    const f = join(saved, `tune-s${seed}.json`);
    if (!existsSync(f)) continue;
    const t = JSON.parse(readFileSync(f, 'utf8')) as Tune;
    const pick = accOf(t.best.weightDecay, t.best.bnMomentum);
    const acc = pick ? pct(pick.finalAcc.mean) : 'off the grid';
    const regret = pick ? (100 * (best.finalAcc.mean - pick.finalAcc.mean)).toFixed(2) : '—';
    rows.push(
      `| ${name} | ${seed} | wd ${t.best.weightDecay}, bn ${t.best.bnMomentum} | ${acc} | ${best.arm.replace('-', ', ')}: ${pct(best.finalAcc.mean)} ± ${pct(best.finalAcc.std)} | **${regret}** | ` +
        `${def ? (100 * (best.finalAcc.mean - def.finalAcc.mean)).toFixed(2) : '—'} | ${t.budgetUsed} of ${t.budget} | ${gridSteps} |`,
    );
  }
}
console.log('| setting | tune seed | tuned pair | its grid accuracy % | grid best % (mean ± std, 2 seeds) | regret (points) | regret of the defaults (wd 1e-4, bn 0.1) | tune steps | grid steps |');
console.log('|---|---|---|---|---|---|---|---|---|');
console.log(rows.join('\n'));
