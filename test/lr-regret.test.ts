// The LR choice against ground truth (issue 15 item 4): range-test curves this engine
// recorded on real settings and the One Cycle grid of each (test/lr-fixtures.ts reads
// them). Checks the regret arithmetic and scoring, and holds `auto` to what it reaches
// today on the sweeps as users run them, so a change that makes it worse fails. The
// issue's bar (mean regret ≤ 0.5 point over ≥ 6 settings) is tracked in
// docs/lr-suggestion.md (`node --import tsx experiments/lr-ground-truth/score.ts`).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { type GridPoint, gridScoreAt, pickRegret, regret, scoreRules } from '../rangetest/regret.ts';
import { RULES, loadRegretSettings, oneEpochSweeps } from './lr-fixtures.ts';

const settings = loadRegretSettings();
const grid: GridPoint[] = settings.find((s) => s.name === 'cifar10-10k-resnet20')!.grid as GridPoint[];

it('regret: 0 at the grid best, interpolated in log lr between points, null outside the grid', () => {
  assert.equal(regret(grid, 0.19), 0);
  assert.ok(Math.abs(gridScoreAt(grid, Math.sqrt(0.03 * 0.075))! - (57.14 + 62.27) / 2) < 1e-9);
  assert.ok(Math.abs(regret(grid, 0.47)! - (64.17 - 63.09)) < 1e-9);
  assert.equal(regret(grid, 0.01), null);
  assert.equal(regret(grid, 5), null);
  // scoring reads a pick off the grid at the grid's end, and says so
  assert.deepEqual(pickRegret(grid, 0.01), { regret: 64.17 - 57.14, offGrid: 'below' });
  assert.deepEqual(pickRegret(grid, 0.19), { regret: 0, offGrid: null });
});

it('scoreRules: per-setting mean regret over the protocol’s curves, the worst rule counted per setting', () => {
  const fake = [
    { name: 'a', grid: [{ maxLr: 0.1, acc: 50 }, { maxLr: 1, acc: 60 }], curves: [{ name: 'rt-s1', lrs: [1], losses: [1] }, { name: 'rt-s2', lrs: [1], losses: [1] }] },
  ];
  let i = 0;
  const scores = scoreRules(fake, { best: () => 1, alternating: () => (i++ % 2 ? 1 : 0.1) }, (s) => s.curves);
  assert.deepEqual(scores.map((s) => [s.rule, s.mean, s.worstOf]), [['best', 0, 0], ['alternating', 5, 1]]);
});

it('auto on the one-epoch sweeps: every setting has curves; never the worst rule; mean regret held where it is', () => {
  const used = settings.filter((s) => oneEpochSweeps(s).length > 0);
  assert.ok(used.length >= 2, `settings with curves: ${used.map((s) => s.name).join(', ')}`);
  const scores = scoreRules(used, RULES, oneEpochSweeps);
  const auto = scores.find((s) => s.rule === 'auto')!;
  console.log(scores.map((s) => `${s.rule}: mean ${s.mean.toFixed(2)} (${s.perSetting.map((p) => `${p.setting} ${p.regret.toFixed(1)}`).join(', ')})`).join('\n'));
  assert.equal(auto.worstOf, 0, 'auto is the worst rule on some setting');
  // 0.69 points over seven settings (2026-12-05); the issue asks ≤ 0.5 over ≥ 6
  assert.ok(auto.mean <= 0.8, `auto's mean regret ${auto.mean.toFixed(2)} points`);
});
