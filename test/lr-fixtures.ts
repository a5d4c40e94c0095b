// The LR choice's ground truth as test fixtures (issue 15 item 4): each setting is a grid
// of One Cycle runs (test/fixtures/lr-grid/NAME.json: final test accuracy against max LR)
// with the range-test curves recorded on the same setting
// (test/fixtures/range-tests/NAME-rt-*.json). Read by test/lr-regret.test.ts and by
// experiments/lr-ground-truth/score.ts (the table in docs/lr-suggestion.md).
import { readFileSync, readdirSync } from 'node:fs';
import type { GridPoint, LrRule, RegretSetting, SweepProtocol } from '../rangetest/regret.ts';
import { CROSS_ENTROPY_NOISE_LR_SCALE, suggestLr } from '../rangetest/suggest.ts';

const GRIDS = new URL('./fixtures/lr-grid/', import.meta.url);
const CURVES = new URL('./fixtures/range-tests/', import.meta.url);

export function loadRegretSettings(): RegretSetting[] {
  const curveFiles = readdirSync(CURVES).filter((f) => f.endsWith('.json'));
  return readdirSync(GRIDS)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => {
      const name = f.slice(0, -5);
      const grid = (JSON.parse(readFileSync(new URL(f, GRIDS), 'utf8')) as { grid: GridPoint[] }).grid;
      const curves = curveFiles
        .filter((c) => c.startsWith(`${name}-rt-`))
        .sort()
        .map((c) => {
          const j = JSON.parse(readFileSync(new URL(c, CURVES), 'utf8')) as { lrs: number[]; losses: number[] };
          return { name: c.slice(name.length + 1, -5), lrs: j.lrs, losses: j.losses };
        });
      return { name, grid, curves };
    });
}

/** The sweeps as users run them: the default length (one epoch, at least 100 steps), each seed on its own. */
export const oneEpochSweeps: SweepProtocol = (s) => s.curves.filter((c) => /^rt-s\d+$/.test(c.name));
/** A 400-step sweep. */
export const longSweep: SweepProtocol = (s) => s.curves.filter((c) => /^rt-long-s\d+$/.test(c.name));
/** The loss on held-out images (`--eval-loss`). */
export const evalLossSweep: SweepProtocol = (s) => s.curves.filter((c) => /^rt-evalloss-s\d+$/.test(c.name));

/** The methods of suggestLr (auto as the range test runs it: with the cross-entropy noise cap), and "a tenth of the LR at the raw loss minimum". */
export const RULES: Record<string, LrRule> = {
  auto: (c) => suggestLr(c, { method: 'auto', noiseLrScale: CROSS_ENTROPY_NOISE_LR_SCALE }).maxLr,
  valley: (c) => suggestLr(c, { method: 'valley' }).maxLr,
  steepest: (c) => suggestLr(c, { method: 'steepest' }).maxLr,
  minimum: (c) => suggestLr(c, { method: 'minimum' }).maxLr,
  'min/10': (c) => {
    let best = 0;
    for (let i = 1; i < c.losses.length; i++) if (c.losses[i]! < c.losses[best]!) best = i;
    return c.lrs[best]! / 10;
  },
};
