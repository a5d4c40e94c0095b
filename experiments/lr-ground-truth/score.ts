/**
 * The LR choice scored against ground truth (issue 15 item 4): every rule on every setting
 * of test/fixtures/lr-grid, by regret = best grid accuracy − accuracy at the pick
 * (interpolated in log LR; a pick off the grid is read at its end, marked *). Prints the
 * markdown tables of docs/lr-suggestion.md:
 *
 *   node --import tsx experiments/lr-ground-truth/score.ts
 */
import { type LrRule, type RuleScore, type SweepProtocol, scoreRules } from '../../rangetest/regret.ts';
import { suggestLr } from '../../rangetest/suggest.ts';
import { RULES, evalLossSweep, loadRegretSettings, longSweep, oneEpochSweeps } from '../../test/lr-fixtures.ts';

const settings = loadRegretSettings();
// a baseline that reads no curve at all: if it does as well, the settings do not test the method
// and auto as it was before the noise cap (2026-12-05: 1.3 decades below the blow-up), to show what the cap changed
const rules = {
  ...RULES,
  'auto without the noise cap (before 2026-12-06)': (c: Parameters<LrRule>[0]) => suggestLr(c, { blowupDecades: 1.3 }).maxLr,
  'fixed 0.25 (no range test)': () => 0.25,
};
const protocols: [string, SweepProtocol, 'each' | 'median'][] = [
  ['the default protocol: three one-epoch sweeps (seeds 1-3), the median of their picks (`range-test`, `--max-lr auto`)', oneEpochSweeps, 'median'],
  ['one one-epoch sweep (at least 100 steps; `--repeats 1`, as fastai runs it): each seed on its own, regrets averaged', oneEpochSweeps, 'each'],
  ['a 400-step sweep', longSweep, 'each'],
  ['held-out loss (`--eval-loss`)', evalLossSweep, 'each'],
];

/** One protocol's table; under the median protocol the picks listed are the three sweeps', the regret their median's. */
function table(scores: RuleScore[]): string {
  const names = scores[0]?.perSetting.map((p) => p.setting) ?? [];
  const lines = [`| rule | ${names.join(' | ')} | mean | worst of all on |`, `|---|${names.map(() => '---|').join('')}---|---|`];
  for (const s of scores) {
    const cells = s.perSetting.map((p) => `${p.regret.toFixed(1)}${p.offGrid ? '*' : ''} (${p.picks.map((lr) => lr.toPrecision(2)).join(', ')})`);
    lines.push(`| ${s.rule} | ${cells.join(' | ')} | **${s.mean.toFixed(2)}** | ${s.worstOf} |`);
  }
  return lines.join('\n');
}

for (const [label, protocol, combine] of protocols) {
  const scores = scoreRules(settings, rules, protocol, combine);
  if (!scores[0]?.perSetting.length) continue;
  console.log(`\n#### ${label}\n\nregret in points (the picks in brackets)\n\n${table(scores)}`);
}
console.log(`\ngrid best per setting: ${settings.map((s) => `${s.name} ${Math.max(...s.grid.map((g) => g.acc))}% at ${s.grid.reduce((a, b) => (b.acc > a.acc ? b : a)).maxLr}`).join('; ')}`);
